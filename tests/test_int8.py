"""int8 models (issue 19), the Python side: quantize on load, the reference backend's int8 path, int8 checkpoints
(save, load with no argument, refusals), state_dict, and the cpu backend against the reference where it runs.
Accuracy on real weights and real text is tests/test_int8_accuracy.py."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors import safe_open

import sqbert_fast as sqf
from sqbert_fast import quantization
from sqbert_fast.backends import reasons
from sqbert_fast.backends import reference as reference_backend
from sqbert_fast.backends.base import compute_dtype, encoder_weights
from sqbert_fast.config import INT8_METHOD
from hf_utils import CLASS_NAMES, SMALL_CONFIGS, hf_config, max_diff_real, padded_batch, save_hf

CFG = SMALL_CONFIGS["h64_d16_mixed"]
SHORTS = ("q", "k", "v", "post", "inter", "out")


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp32")
    save_hf("SqueezeBertForSequenceClassification", hf_config(**CFG, num_labels=3), path, seed=3)
    return path


@pytest.fixture(scope="module")
def batch():
    return padded_batch(3, 11, 211, "right", seed=5)


def test_quantize_on_load_layout(fp32_dir):
    m = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8)
    f = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference")
    assert m.is_int8 and not f.is_int8 and m.quantization["method"] == INT8_METHOD and f.quantization is None
    convs = m._int8_convs()
    assert len(convs) == 6 * 2
    for name, conv in convs:
        assert isinstance(conv.weight, torch.nn.Parameter) and conv.weight.dtype == torch.int8
        assert not conv.weight.requires_grad
        assert conv.weight_scale.dtype == torch.float32 and conv.weight_scale.shape == (conv.weight.shape[0],)
        fw = f.get_submodule(f"transformer.{name}").weight
        q, s = quantization.quantize_weight(fw)
        assert torch.equal(conv.weight, q) and torch.equal(conv.weight_scale, s)
    # everything else stays fp32
    others = {n: p.dtype for n, p in m.named_parameters() if p.dtype != torch.int8}
    assert set(others.values()) == {torch.float32}
    assert m.transformer.pooler.dense.weight.dtype == torch.float32
    w = encoder_weights(m.base_model)
    assert compute_dtype(w) == torch.int8
    for i in range(2):
        for s in SHORTS:
            assert w[f"layers.{i}.{s}_weight"].dtype == torch.int8
            assert w[f"layers.{i}.{s}_weight_scale"].dtype == torch.float32
            assert w[f"layers.{i}.{s}_bias"].dtype == torch.float32
    assert not any(k.endswith("_weight_scale") for k in encoder_weights(f.base_model))


def test_string_dtype_and_noop_requantize(fp32_dir):
    m = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="reference", dtype="int8")
    q = m.encoder.layers[0].attention.query.weight
    assert m.is_int8 and m.quantize_int8() is m and m.encoder.layers[0].attention.query.weight is q


def test_reference_runs_every_conv_in_int8(fp32_dir, batch, monkeypatch):
    ids, mask = batch
    f = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference")
    m = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8)
    calls = []
    real = quantization.int8_grouped_linear

    def counting(x, wq, s, b, groups):
        assert x.dtype == torch.float32 and wq.dtype == torch.int8
        calls.append(groups)
        return real(x, wq, s, b, groups)

    monkeypatch.setattr(reference_backend, "int8_grouped_linear", counting)
    out = m(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(calls) == 6 * 2
    assert sorted(set(calls)) == sorted({CFG[k] for k in ("q_groups", "k_groups", "v_groups", "post_attention_groups",
                                                          "intermediate_groups", "output_groups")})
    ref = f(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert out.logits.dtype == torch.float32 and out.hidden_states[-1].dtype == torch.float32
    d = max_diff_real(out.hidden_states[-1], ref.hidden_states[-1], mask)
    assert 1e-5 < d < 0.1, d  # quantized (not the fp32 result), and close to it
    # activations are quantized too: the fp32 model with the int8 weights dequantized is not the int8 model
    with torch.no_grad():
        for (name, conv), (_, fconv) in zip(m._int8_convs(), f._int8_convs()):
            fconv.weight.copy_(conv.weight.float() * conv.weight_scale[:, None, None])
    deq = f(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    d2 = max_diff_real(out.hidden_states[-1], deq.hidden_states[-1], mask)
    assert 1e-6 < d2 < d, (d2, d)


def test_inputs_embeds_int8(fp32_dir, batch):
    ids, mask = batch
    m = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8)
    emb = m.embeddings.word_embeddings(ids)
    a = m(input_ids=ids, attention_mask=mask).last_hidden_state
    b = m(inputs_embeds=emb, attention_mask=mask).last_hidden_state
    assert max_diff_real(a, b, mask) == 0.0


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_int8_checkpoint_round_trip(tmp_path, class_name, batch):
    ids, mask = batch
    if class_name == "SqueezeBertForMultipleChoice":
        ids, mask = ids[None], mask[None]
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_hf(class_name, hf_config(**CFG, num_labels=2), src, seed=1)
    cls = getattr(sqf, class_name)
    m = cls.from_pretrained(src, backend="reference", dtype=torch.int8)
    m.save_pretrained(dst)
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["quantization"]["method"] == INT8_METHOD
    assert cfg["quantization"]["weights"] == "int8, symmetric, per output channel"
    assert "encoder.layers.*.attention.query" in cfg["quantization"]["modules"]
    with safe_open(dst / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        assert f.metadata()["sqbert_fast_quantization"] == "int8"
        prefix = "" if class_name == "SqueezeBertModel" else "transformer."
        assert f.get_tensor(f"{prefix}encoder.layers.1.output.conv1d.weight").dtype == torch.int8
        assert f.get_tensor(f"{prefix}encoder.layers.1.output.conv1d.weight_scale").dtype == torch.float32
        assert f.get_tensor(f"{prefix}embeddings.word_embeddings.weight").dtype == torch.float32
    assert sum(k.endswith(".weight_scale") for k in keys) == 12
    back = cls.from_pretrained(dst, backend="reference")  # no dtype: int8 from config.json
    assert back.is_int8
    sd, sd2 = m.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) and sd[k].dtype == sd2[k].dtype for k in sd)
    a, b = m(ids, attention_mask=mask), back(ids, attention_mask=mask)
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):  # equal weights, yet on an AMD EPYC (Zen 4) the two copies' logits
            # differ in the last bit: torch's fp32 kernels may sum in another order for another copy
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6, msg=key)
    # the base model loads out of the head checkpoint, int8 too
    assert sqf.SqueezeBertModel.from_pretrained(dst, backend="reference").is_int8


def test_int8_checkpoint_refusals(tmp_path, fp32_dir):
    dst = tmp_path / "q"
    sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8) \
        .save_pretrained(dst)
    for dtype in (torch.float32, "bfloat16"):
        with pytest.raises(ValueError, match="is an int8 checkpoint.*float checkpoint it was quantized from"):
            sqf.SqueezeBertModel.from_pretrained(dst, dtype=dtype)
    with pytest.raises(ValueError, match="transformers cannot load|no `quant_method`"):
        transformers.SqueezeBertModel.from_pretrained(dst)
    # config.json without its quantization block: the int8 tensors are named, not read as floats
    cfg = json.loads((dst / "config.json").read_text())
    cfg.pop("quantization")
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="is int8 but config.json has no quantization block"):
        sqf.SqueezeBertModel.from_pretrained(dst)
    cfg["quantization"] = {"method": "gptq"}
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="quantization block of method 'gptq'"):
        sqf.SqueezeBertModel.from_pretrained(dst)
    # a quantization block over float tensors
    cfg = json.loads((fp32_dir / "config.json").read_text())
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes((fp32_dir / "model.safetensors").read_bytes())
    cfg["quantization"] = {"method": INT8_METHOD}
    (fake / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="quantization block says this is an int8 checkpoint"):
        sqf.SqueezeBertModel.from_pretrained(fake)


def test_state_dict_says_what_it_holds(fp32_dir):
    m = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8)
    f = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="reference")
    sd = m.state_dict()
    assert sd["encoder.layers.0.attention.query.weight"].dtype == torch.int8
    assert sd["encoder.layers.0.attention.query.weight_scale"].dtype == torch.float32
    assert sum(v.dtype == torch.int8 for v in sd.values()) == 12
    with pytest.raises(ValueError, match="this model is int8"):
        m.load_state_dict(f.state_dict(), strict=False)
    with pytest.raises(ValueError, match="holds int8 weights"):
        f.load_state_dict(sd, strict=False)
    f.quantize_int8()
    f.load_state_dict(sd)
    assert all(torch.equal(a, b) for a, b in zip(f.state_dict().values(), sd.values()))


def test_backend_reasons_for_int8():
    r = reasons("cpu", torch.int8)
    assert r["reference"] == []
    for name in ("cuda", "triton"):
        if name in r:
            assert r[name]  # GPU backends have no int8 path: they say so


def _int8_isas():
    try:
        from sqbert_fast import _C
    except ImportError:
        return []
    return list(_C.cpu_info().get("usable_int8_isas", []))


@pytest.mark.parametrize("int8_isa", _int8_isas() or ["none"])
def test_cpu_backend_matches_reference_int8(fp32_dir, batch, int8_isa, monkeypatch):
    """The cpu backend's int8 variants against the reference backend (sqbert_fast.quantization). i8_scalar is held
    to fp32 rounding; the others may round one activation of a row to the neighbouring int8 step (x * 127/max|x|
    computed another way), which moves that row by one quantization step and nothing else."""
    if reasons("cpu", torch.int8).get("cpu") or int8_isa == "none":
        pytest.skip(f"cpu backend has no int8 here: {reasons('cpu', torch.int8).get('cpu')}")
    monkeypatch.setenv("SQBERT_FAST_FORCE_INT8_ISA", int8_isa)
    monkeypatch.setenv("SQBERT_FAST_INT8_ATTENTION", "fp32")  # as the reference (bf16 attention: the next test)
    ids, mask = batch
    ref = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="reference", dtype=torch.int8)
    cpu = sqf.SqueezeBertForSequenceClassification.from_pretrained(fp32_dir, backend="cpu", dtype=torch.int8)
    assert cpu._get_runner().int8_isa == int8_isa
    assert cpu._get_runner().attention_precision == "fp32"
    a = ref(ids, attention_mask=mask, output_hidden_states=True)
    b = cpu(ids, attention_mask=mask, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        if int8_isa == "i8_scalar":
            assert max_diff_real(x, y, mask) <= 1e-4
        else:
            off_rows = int((((x - y).abs() > 1e-4).any(-1) & mask.bool()).sum())
            assert off_rows <= 1 and max_diff_real(x, y, mask) <= 5e-3, (off_rows, max_diff_real(x, y, mask))
    if int8_isa == "i8_scalar":
        assert float((a.logits - b.logits).abs().max()) <= 1e-4


def test_int8_attention_precision(fp32_dir, batch, monkeypatch):
    """auto: QK^T and PV of an int8 model on the bf16 GEMM exactly where the CPU has bf16 dot products; the
    result stays within bf16 rounding of the fp32-attention one (whole-model accuracy on real text with it:
    test_int8_accuracy.py). A bad value of SQBERT_FAST_INT8_ATTENTION is an error naming it."""
    if reasons("cpu", torch.int8).get("cpu"):
        pytest.skip(f"cpu backend has no int8 here: {reasons('cpu', torch.int8).get('cpu')}")
    from sqbert_fast.backends.cpu import bf16_supported
    ids, mask = batch
    monkeypatch.delenv("SQBERT_FAST_FORCE_CPU_ISA", raising=False)
    monkeypatch.setenv("SQBERT_FAST_INT8_ATTENTION", "fp32")
    strict = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="cpu", dtype=torch.int8)
    assert strict._get_runner().attention_precision == "fp32"
    monkeypatch.setenv("SQBERT_FAST_INT8_ATTENTION", "auto")
    auto = sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="cpu", dtype=torch.int8)
    want = "bf16" if bf16_supported() else "fp32"
    assert auto._get_runner().attention_precision == want
    a = strict(ids, attention_mask=mask).last_hidden_state
    b = auto(ids, attention_mask=mask).last_hidden_state
    if want == "fp32":
        assert torch.equal(a, b)
    else:
        assert 0 < max_diff_real(a, b, mask) <= 3e-2
    monkeypatch.setenv("SQBERT_FAST_INT8_ATTENTION", "fp16")
    with pytest.raises(RuntimeError, match="SQBERT_FAST_INT8_ATTENTION"):
        sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="cpu", dtype=torch.int8)
    if not bf16_supported():
        monkeypatch.setenv("SQBERT_FAST_INT8_ATTENTION", "bf16")
        with pytest.raises(RuntimeError, match="SQBERT_FAST_INT8_ATTENTION=bf16 needs"):
            sqf.SqueezeBertModel.from_pretrained(fp32_dir, backend="cpu", dtype=torch.int8)


# ---- CLI: quantize, info, score --dtype int8 ----------------------------------------------------------------
WORDS = ["the", "model", "reads", "every", "sentence", "and", "writes", "a", "score", "good", "bad", "plot"]


@pytest.fixture(scope="module")
def cli_src(tmp_path_factory):
    """A float SequenceClassification checkpoint with a vocab.txt (the tokenizer files quantize copies)."""
    src = tmp_path_factory.mktemp("cli") / "src"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    torch.manual_seed(0)
    cfg = sqf.SqueezeBertConfig(vocab_size=len(vocab), hidden_size=32, embedding_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, q_groups=2,
                                k_groups=2, v_groups=2, post_attention_groups=2, intermediate_groups=2,
                                output_groups=2, num_labels=2, initializer_range=0.3)
    sqf.SqueezeBertForSequenceClassification(cfg, backend="reference").save_pretrained(src)
    (src / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return src


def test_cli_quantize(tmp_path, cli_src, capsys):
    from sqbert_fast.cli import main

    dst = tmp_path / "int8"
    assert main(["quantize", str(cli_src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "SqueezeBertForSequenceClassification, 12 convs of 2 layers int8" in out and "vocab.txt" in out
    assert (dst / "vocab.txt").read_text() == (cli_src / "vocab.txt").read_text()
    assert json.loads((dst / "config.json").read_text())["architectures"] == ["SqueezeBertForSequenceClassification"]
    a = sqf.SqueezeBertForSequenceClassification.from_pretrained(dst, backend="reference")
    b = sqf.SqueezeBertForSequenceClassification.from_pretrained(cli_src, backend="reference", dtype=torch.int8)
    assert a.is_int8
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ids = torch.tensor([[2, 5, 9, 7, 3]])
    torch.testing.assert_close(a(ids).logits, b(ids).logits, rtol=1e-6, atol=1e-6)  # BLAS order: round trip test
    # refusals: clean 'error:' lines, exit 1, nothing written
    for argv, msg in (([str(cli_src), str(cli_src)], "DST is SRC"),
                      ([str(cli_src), str(cli_src / "sub")], "inside SRC"),
                      ([str(cli_src), str(dst)], "exists and is not empty"),
                      ([str(dst), str(tmp_path / "again")], "already an int8 checkpoint"),
                      ([str(tmp_path / "nope"), str(tmp_path / "x")], "is not a directory")):
        assert main(["quantize", *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith("sqbert-fast quantize: error: ") and msg in err, err
        assert "Traceback" not in err
    assert not (cli_src / "sub").exists() and not (tmp_path / "again").exists()
    assert main(["quantize", str(cli_src), str(dst), "--overwrite"]) == 0


def test_cli_info_lists_int8(capsys):
    from sqbert_fast.cli import main
    from sqbert_fast.cli_info import collect

    assert main(["info"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("int8: ")]
    assert len(line) == 1 and "reference" in line[0]
    info = collect()
    assert "reference" in info["int8"]["backends"]
    ext = info["cpu_extension"]
    if isinstance(ext, dict) and ext.get("int8_isa") and "cpu" in info["int8"]["backends"]:
        assert f"cpu ({ext['int8_isa']})" in line[0]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_cli_score_dtype_int8(tmp_path, cli_src, backend):
    if reasons("cpu", torch.int8).get(backend):
        pytest.skip(f"{backend} has no int8 here")
    from sqbert_fast.cli import main

    src = tmp_path / "in.txt"
    src.write_text("the model reads every sentence\ngood plot\nbad score and a bad plot\n")
    outs = {}
    for dtype in ("int8", "float32"):
        out = tmp_path / f"{dtype}.jsonl"
        assert main(["score", str(cli_src), str(src), str(out), "--task", "classify", "--dtype", dtype,
                     "--backend", backend, "--no-progress"]) == 0
        outs[dtype] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outs["int8"]) == 3
    assert outs["int8"] != outs["float32"]  # the int8 model ran (its scores are not the fp32 ones) ...
    m8 = sqf.SqueezeBertForSequenceClassification.from_pretrained(cli_src, backend=backend, dtype="int8")
    tok = sqf.SqueezeBertTokenizerFast(vocab_file=str(cli_src / "vocab.txt"))
    enc = tok(["good plot"], return_tensors="pt")
    probs = torch.softmax(m8(**enc).logits, -1)[0]
    rec = outs["int8"][1]
    assert abs(rec["score"] - float(probs.max())) < 1e-5, rec  # ... this one
