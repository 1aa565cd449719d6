"""Checkpoint loading and saving: round trips with transformers, formats, prefixes, hub ids,
and every way a checkpoint can be broken (each a clear Python exception naming the problem)."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
import transformers

import sqbert_fast as sqf
from sqbert_fast.backends.cpu import bf16_supported
from hf_utils import (CLASS_NAMES, SMALL_CONFIGS, hf_config, make_hf, max_diff_real, padded_batch, save_default_config,
                      save_hf)

CFG = SMALL_CONFIGS["h64_d16_mixed"]


def _ids(cfg, seed=0):
    return padded_batch(2, 9, cfg.vocab_size, "right", seed)


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_save_pretrained_loads_in_transformers(tmp_path, class_name):
    cfg = hf_config(**CFG, num_labels=2)
    hf = make_hf(class_name, cfg, seed=1)
    ours = sqf.from_transformers(hf)
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    back = getattr(transformers, class_name).from_pretrained(tmp_path).eval()
    ids, mask = _ids(cfg)
    if class_name == "SqueezeBertForMultipleChoice":
        ids, mask = ids[None], mask[None]
    with torch.no_grad():
        a, b = hf(ids, attention_mask=mask), back(ids, attention_mask=mask)
    for key in a.keys():  # bit-identical weights; torch's fp32 kernels may still sum in another order for
        # another copy (AMD EPYC Zen 4: the last bit of a multiple-choice logit differs)
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6, msg=key)
    again = getattr(sqf, class_name).from_pretrained(tmp_path)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_from_transformers_live_model(class_name):
    cfg = hf_config(**CFG, num_labels=2)
    hf = make_hf(class_name, cfg, seed=2)
    ours = sqf.from_transformers(hf, backend="cpu")
    assert type(ours).__name__ == class_name
    ids, mask = _ids(cfg)
    if class_name == "SqueezeBertForMultipleChoice":
        ids, mask = ids[None], mask[None]
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask)
    out = ours(ids, attention_mask=mask)
    key = list(theirs.keys())[0]
    if out[key].shape[:2] == mask.shape:
        assert max_diff_real(out[key], theirs[key], mask) <= 1e-4
    else:
        assert float((out[key] - theirs[key]).abs().max()) <= 1e-4


def test_from_transformers_rejects_other_models():
    with pytest.raises(TypeError, match="SqueezeBertModel"):
        sqf.from_transformers(torch.nn.Linear(2, 2))


def test_mlm_decoder_is_tied_to_word_embeddings(tmp_path):
    cfg = hf_config(**CFG)
    save_hf("SqueezeBertForMaskedLM", cfg, tmp_path)
    m = sqf.SqueezeBertForMaskedLM.from_pretrained(tmp_path)
    assert m.cls.predictions.decoder.weight is m.transformer.embeddings.word_embeddings.weight
    assert m.cls.predictions.decoder.bias is m.cls.predictions.bias


def test_pytorch_bin_and_sharded_safetensors(tmp_path):
    cfg = hf_config(**CFG)
    hf = make_hf("SqueezeBertModel", cfg, seed=3)
    (tmp_path / "bin").mkdir()
    hf.config.save_pretrained(tmp_path / "bin")  # transformers 5 no longer writes .bin: write it as 4.x did
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ids, mask = _ids(cfg)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
    for sub in ("bin", "sharded"):
        m = sqf.SqueezeBertModel.from_pretrained(tmp_path / sub)
        assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4


def test_base_checkpoint_into_head_model_reports_new_weights(tmp_path, caplog):
    cfg = hf_config(**CFG)
    save_hf("SqueezeBertModel", cfg, tmp_path)
    with caplog.at_level(logging.WARNING, logger="sqbert_fast"):
        m, info = sqf.SqueezeBertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert info["unexpected_keys"] == []
    assert "newly initialized" in caplog.text and "classifier.weight" in caplog.text
    base = sqf.SqueezeBertModel.from_pretrained(tmp_path)
    assert torch.equal(m.transformer.encoder.layers[0].attention.query.weight,
                       base.encoder.layers[0].attention.query.weight)


def test_head_checkpoint_into_base_model_reports_unused(tmp_path, caplog):
    save_hf("SqueezeBertForMaskedLM", hf_config(**CFG), tmp_path)
    with caplog.at_level(logging.WARNING, logger="sqbert_fast"):
        _, info = sqf.SqueezeBertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == []
    assert any(k.startswith("cls.predictions.transform") for k in info["unexpected_keys"])
    assert "were not used" in caplog.text


def _broken_checkpoint(tmp_path, mutate):
    from safetensors.torch import load_file, save_file

    save_hf("SqueezeBertModel", hf_config(**CFG), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    mutate(state)
    save_file(state, tmp_path / "model.safetensors")
    return tmp_path


def test_missing_tensor_is_an_error_naming_it(tmp_path):
    path = _broken_checkpoint(tmp_path, lambda s: s.pop("encoder.layers.1.attention.key.weight"))
    with pytest.raises(ValueError, match=r"missing .*encoder\.layers\.1\.attention\.key\.weight"):
        sqf.SqueezeBertModel.from_pretrained(path)


def test_misshapen_tensor_is_an_error_naming_it(tmp_path):
    def mutate(s):
        s["encoder.layers.0.intermediate.conv1d.weight"] = torch.zeros(3, 3, 1)

    path = _broken_checkpoint(tmp_path, mutate)
    with pytest.raises(ValueError, match=r"encoder\.layers\.0\.intermediate\.conv1d\.weight.*shape \(3, 3, 1\)"):
        sqf.SqueezeBertModel.from_pretrained(path)


def test_truncated_safetensors(tmp_path):
    save_hf("SqueezeBertModel", hf_config(**CFG), tmp_path)
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match="safetensors"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hf_config(**CFG).save_pretrained(tmp_path)
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"embeddings.word_embeddings.weight": _Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match="could not be loaded safely"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_no_weights_and_no_dir(tmp_path):
    hf_config(**CFG).save_pretrained(tmp_path)
    with pytest.raises(OSError, match="model.safetensors"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="does not exist"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path / "nope" / "deeper" / "x")


@pytest.mark.parametrize("field,value,match", [
    ("q_groups", 5, "q_groups=5 must divide"),
    ("intermediate_groups", 7, "intermediate_groups=7"),
    ("num_attention_heads", 5, "num_attention_heads"),
    ("hidden_act", "swishy", "hidden_act"),
    ("hidden_size", "64", "hidden_size must be an integer"),
    ("embedding_size", 32, "embedding_size"),
])
def test_bad_config_names_the_field(tmp_path, field, value, match):
    save_hf("SqueezeBertModel", hf_config(**CFG), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[field] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=match):
        sqf.SqueezeBertModel.from_pretrained(tmp_path)


def test_config_round_trip_with_transformers(tmp_path):
    theirs = hf_config(**CFG, num_labels=2, id2label={0: "neg", 1: "pos"})
    theirs.save_pretrained(tmp_path)
    ours = sqf.SqueezeBertConfig.from_pretrained(tmp_path)
    assert ours.q_groups == 2 and ours.num_labels == 2 and ours.id2label == {0: "neg", 1: "pos"}
    ours.save_pretrained(tmp_path / "again")
    back = transformers.SqueezeBertConfig.from_pretrained(tmp_path / "again")
    for k in ("hidden_size", "q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups",
              "output_groups", "vocab_size", "layer_norm_eps"):
        assert getattr(back, k) == getattr(theirs, k), k
    assert back.id2label == theirs.id2label


def test_hub_id_goes_through_snapshot_download(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub", reason="hub support is an optional extra")
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "0123abc"
    hf = save_hf("SqueezeBertModel", hf_config(**CFG), snapshot)
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, **kw):
        calls.append((repo_id, revision, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    m = sqf.SqueezeBertModel.from_pretrained("org/tiny", revision="main")
    assert calls and calls[0][0] == "org/tiny" and calls[0][1] == "main"
    assert not any(p.endswith(".py") for p in calls[0][2])  # never fetches code
    ids, mask = _ids(hf.config)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
    assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4


def test_in_place_weight_change_is_seen_by_the_kernels(tmp_path):
    """Packed weight copies must never go stale."""
    cfg = hf_config(**CFG)
    hf = save_hf("SqueezeBertModel", cfg, tmp_path)
    m = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cpu")
    ids, mask = _ids(cfg)
    m(ids, attention_mask=mask)
    with torch.no_grad():
        m.encoder.layers[0].intermediate.conv1d.weight.mul_(2)
        hf.encoder.layers[0].intermediate.conv1d.weight.mul_(2)
        ref = hf(ids, attention_mask=mask).last_hidden_state
    assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4
    # a parameter replaced by a new one (the cached parameter list must be walked again)
    new = torch.nn.Parameter(hf.encoder.layers[1].attention.value.weight.detach() * 0.5)
    m.encoder.layers[1].attention.value.weight = new
    with torch.no_grad():
        hf.encoder.layers[1].attention.value.weight.mul_(0.5)
        ref = hf(ids, attention_mask=mask).last_hidden_state
    assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4
    # a submodule swapped for a new one (its parameters were never in the cached walk)
    conv = m.encoder.layers[1].output.conv1d
    swapped = torch.nn.Conv1d(conv.in_channels, conv.out_channels, 1, groups=conv.groups)
    with torch.no_grad():
        swapped.weight.copy_(conv.weight * 0.25)
        swapped.bias.copy_(conv.bias)
        hf.encoder.layers[1].output.conv1d.weight.mul_(0.25)
        ref = hf(ids, attention_mask=mask).last_hidden_state
    m.encoder.layers[1].output.conv1d = swapped
    assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4
    # a parameter whose storage is swapped through .data (no registration, no version bump)
    w = m.encoder.layers[0].post_attention.conv1d.weight
    w.data = w.data * 3
    with torch.no_grad():
        hf.encoder.layers[0].post_attention.conv1d.weight.mul_(3)
        ref = hf(ids, attention_mask=mask).last_hidden_state
    assert max_diff_real(m(ids, attention_mask=mask).last_hidden_state, ref, mask) <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ffn_weights_are_read_in_place_not_copied(tmp_path, dtype):
    """The issue's memory bound: a loaded model within 1.3x its weight bytes. The fused FFN reads its conv
    weights where they are (fp32: the broadcast operand of the fp32 GEMM; bf16: the AMX / AVX512-BF16 GEMM's
    row operand), so the engine's packed copies hold exactly the Q/K/V and post-attention convs and the
    pooler in the compute dtype, plus the Q|K|V biases side by side in fp32 (nothing is padded here)."""
    if dtype == torch.bfloat16 and not bf16_supported():
        pytest.skip("this CPU has neither AMX nor AVX512-BF16 (the cpu backend's bf16)")
    save_default_config(tmp_path, layers=12)
    m = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cpu", dtype=dtype)
    named = dict(m.named_parameters())
    params = sum(p.numel() * p.element_size() for p in named.values())
    convs = ("attention.query.weight", "attention.key.weight", "attention.value.weight", "post_attention.conv1d.weight")
    qkv_bias = ("attention.query.bias", "attention.key.bias", "attention.value.bias")
    size = torch.finfo(dtype).bits // 8
    copied = sum(p.numel() * size for n, p in named.items() if n.endswith(convs) or n == "pooler.dense.weight")
    copied += sum(p.numel() * 4 for n, p in named.items() if n.endswith(qkv_bias))
    packed = m._get_runner().encoder.packed_weight_bytes
    assert packed == copied, (packed, copied)
    assert (params + packed) / params <= 1.3


def test_backend_selection_and_errors(tmp_path, monkeypatch):
    save_hf("SqueezeBertModel", hf_config(**CFG), tmp_path)
    assert "reference" in sqf.available_backends() and "cpu" in sqf.available_backends()
    assert sqf.SqueezeBertModel.from_pretrained(tmp_path).backend == "cpu"  # auto picks the kernels
    with pytest.raises(ValueError, match="unknown backend 'fastest'"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="fastest")
    with pytest.raises(RuntimeError, match="cpu.*float16"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cpu", dtype=torch.float16)
    assert sqf.SqueezeBertModel.from_pretrained(tmp_path, device="cpu").backend == "cpu"
    if not torch.cuda.is_available():  # a GPU backend for a CPU model is an error naming why
        with pytest.raises(RuntimeError, match="backend 'cuda' cannot run on cpu"):
            sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cuda")
    monkeypatch.setenv("SQBERT_FAST_BACKEND", "reference")
    assert sqf.SqueezeBertModel.from_pretrained(tmp_path).backend == "reference"


def test_dtype_argument(tmp_path):
    cfg = hf_config(**CFG)
    hf = save_hf("SqueezeBertModel", cfg, tmp_path)
    m = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="reference", dtype="bfloat16")
    # on the CPU only the GEMM weights are stored in bf16: the six convs of every layer and the pooler
    layer = m.encoder.layers[0]
    for conv in (layer.attention.query, layer.attention.key, layer.attention.value, layer.post_attention.conv1d,
                 layer.intermediate.conv1d, layer.output.conv1d, m.pooler.dense):
        assert conv.weight.dtype == torch.bfloat16 and conv.bias.dtype == torch.float32
    assert m.embeddings.word_embeddings.weight.dtype == torch.float32
    assert layer.output.layernorm.weight.dtype == torch.float32
    assert sum(p.dtype == torch.bfloat16 for p in m.parameters()) == 6 * cfg.num_hidden_layers + 1
    # .to() keeps torch's meaning: every parameter
    assert {p.dtype for p in sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="reference")
            .to(torch.bfloat16).parameters()} == {torch.bfloat16}
    ids, mask = _ids(cfg)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
    out = m(ids, attention_mask=mask).last_hidden_state
    assert out.dtype == torch.bfloat16
    assert max_diff_real(out.float(), ref, mask) <= 0.1
    with pytest.raises(ValueError, match="unknown dtype"):
        sqf.SqueezeBertModel.from_pretrained(tmp_path, dtype="float8")


def test_importing_installs_no_process_wide_module_hook():
    """weights_version notices replaced parameters by itself: importing sqbert_fast leaves torch.nn's global
    registration hooks as they were."""
    import subprocess
    import sys

    code = ("import torch.nn.modules.module as M; before = len(M._global_parameter_registration_hooks); "
            "import sqbert_fast; assert len(M._global_parameter_registration_hooks) == before, 'a hook was added'; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_module_tools_run_from_the_source_root():
    """`python -m sqbert_fast.int8_eval` (the README's command) run in the checkout's root: the root's `kernels/`
    (the Triton sources) must not shadow PyPI's `kernels`, which transformers imports."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(sqf.__file__)))
    if not os.path.isfile(os.path.join(root, "kernels", "common.py")):
        pytest.skip("sqbert_fast is not imported from a source checkout")
    code = "import sqbert_fast, transformers.models.squeezebert.modeling_squeezebert; print('imported')"
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "imported" in r.stdout, r.stderr[-2000:]
