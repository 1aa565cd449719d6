"""--task qa on contexts longer than max_length (issue 22, item 6): windows sharing --doc-stride tokens,
as transformers' question-answering pipeline cuts them, the best span over all windows, character offsets
into the original context.

transformers 5 no longer ships the question-answering pipeline, so the reference is built here from its
pieces: the fast tokenizer's own overflowing windows (``return_overflowing_tokens``, ``stride``), the
model called directly on each window, and the pipeline's span selection (softmax over the context tokens
and [CLS], [CLS] then excluded, p_start * p_end over spans of at most max_answer_tokens).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import transformers

import sqbert_fast as sqf
from sqbert_fast.cli import main as cli_main
from sqbert_fast.scoring import Scorer, score

from test_scoring import WORDS, _read_output, _write, models  # noqa: F401  (the tiny checkpoints fixture)

pytest.importorskip("pyarrow")

FILLER = [w for w in WORDS if w not in ("paris", "france")]


def _context(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(FILLER) for _ in range(n))


def _reference(model_dir: str, question: str, context: str, max_length: int, stride: int, longest: int = 30):
    """(answer, start, end, score, window) from the tokenizer's windows and the model on each window."""
    tok = transformers.BertTokenizerFast.from_pretrained(model_dir)  # transformers' own windows
    model = sqf.SqueezeBertForQuestionAnswering.from_pretrained(model_dir)
    enc = tok(question, context, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    best = None
    for w in range(len(enc["input_ids"])):
        ids = torch.tensor([enc["input_ids"][w]])
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                        token_type_ids=torch.tensor([enc["token_type_ids"][w]]))
        seq = enc.sequence_ids(w)
        ctx = np.array([s == 1 for s in seq])
        keep = ctx | (ids[0].numpy() == tok.cls_token_id)
        probs = []
        for logits in (out.start_logits[0].numpy(), out.end_logits[0].numpy()):
            x = np.where(keep, logits.astype(np.float64), -np.inf)
            p = np.exp(x - x.max())
            probs.append(np.where(ctx, p / p.sum(), 0.0))
        pair = np.tril(np.triu(np.outer(*probs)), longest - 1)
        s, e = np.unravel_index(int(pair.argmax()), pair.shape)
        cs, ce = enc["offset_mapping"][w][s][0], enc["offset_mapping"][w][e][1]
        if best is None or pair[s, e] > best[3]:
            best = (context[cs:ce], cs, ce, float(pair[s, e]), w)
    return best, len(enc["input_ids"])


def test_long_contexts_match_the_pipeline_recipe_over_windows(models):
    question = "what is the capital of france ?"
    contexts = [_context(n, seed) for seed, n in enumerate((150, 90, 40, 230, 120, 10))]
    got = list(score(models["qa"], [{"question": question, "context": c} for c in contexts], task="qa",
                     max_length=48, doc_stride=16, max_batch_size=3))
    later = 0
    for r, context in zip(got, contexts):
        (answer, start, end, p, window), windows = _reference(models["qa"], question, context, 48, 16)
        assert (r["answer"], r["start"], r["end"]) == (answer, start, end)
        assert r["answer"] == context[r["start"]:r["end"]]
        assert r["score"] == pytest.approx(p, rel=1e-4)
        later += window > 0
        if len(context.split()) > 48:
            assert windows > 1
    assert later >= 2, "no answer came from a window past the first: the test does not exercise windowing"


class _SpanModel(torch.nn.Module):
    """A stand-in QA model: start logit 8 on 'paris', end logit 8 on 'france', 0 elsewhere."""

    def __init__(self, config, start_id: int, end_id: int):
        super().__init__()
        self.config, self.backend = config, "test"
        self.start_id, self.end_id = start_id, end_id
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **_):
        return types.SimpleNamespace(start_logits=8.0 * (input_ids == self.start_id).float(),
                                     end_logits=8.0 * (input_ids == self.end_id).float())


def test_span_across_a_window_boundary_is_found_whole(models):
    tok = sqf.SqueezeBertTokenizerFast.from_pretrained(models["qa"])
    config = sqf.SqueezeBertConfig.from_pretrained(models["qa"])
    model = _SpanModel(config, tok.convert_tokens_to_ids("paris"), tok.convert_tokens_to_ids("france"))
    question = "where ?"  # [CLS] where ? [SEP] ... [SEP]: 20 - 5 = 15 context tokens a window
    before, inside = _context(11, 1), _context(6, 2)
    context = f"{before} paris {inside} france {_context(30, 3)}"
    hf = transformers.BertTokenizerFast.from_pretrained(models["qa"])
    enc = hf(question, context, truncation="only_second", max_length=20, stride=6, return_overflowing_tokens=True)
    first = hf.convert_ids_to_tokens(enc["input_ids"][0])
    assert "paris" in first and "france" not in first  # the answer straddles the first window's end
    (r,) = list(score(model, [(question, context)], task="qa", tokenizer=tok, max_length=20, doc_stride=6))
    start = context.index("paris")
    assert (r["start"], r["end"]) == (start, context.index("france") + len("france"))
    assert r["answer"] == context[r["start"]:r["end"]] and r["answer"].startswith("paris ")
    # Without overlap no window holds both ends: the best span is then a worse one.
    (cut,) = list(score(model, [(question, context)], task="qa", tokenizer=tok, max_length=20, doc_stride=0))
    assert cut["score"] < r["score"] and (cut["start"], cut["end"]) != (r["start"], r["end"])


def test_qa_file_run_and_bad_input(models, tmp_path, capsys):
    rows = [{"question": "what is the capital of france ?", "context": _context(120, 7)},
            {"question": " ".join(["what is the capital of france"] * 6), "context": _context(50, 8)},
            {"question": "where ?", "context": "paris"}]
    src = _write(tmp_path / "qa.jsonl", "jsonl", rows)
    out = tmp_path / "qa.jsonl.out.jsonl"
    assert cli_main(["score", models["qa"], src, str(out), "--task", "qa", "--max-length", "48", "--doc-stride",
                     "16", "--no-progress"]) == 0
    got = _read_output(str(out))
    assert [r["id"] for r in got] == [0, 2]
    ref, _ = _reference(models["qa"], rows[0]["question"], rows[0]["context"], 48, 16)
    assert (got[0]["answer"], got[0]["start"], got[0]["end"]) == ref[:3]
    assert got[1]["answer"] == "paris"
    (err,) = _read_output(str(out) + ".errors.jsonl")
    assert err["row"] == 1 and "question takes 36 tokens" in err["reason"] and "doc_stride=16" in err["reason"]
    base = ["score", models["qa"], src, str(tmp_path / "o.jsonl"), "--task", "qa", "--no-progress"]
    assert cli_main([*base, "--max-length", "48", "--doc-stride", "48"]) == 1
    assert "doc_stride (--doc-stride) must be less than max_length (48)" in capsys.readouterr().err
    assert cli_main([*base, "--doc-stride", "-1"]) == 1
    assert "must be a whole number >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="only applies to --task qa"):
        Scorer(models["classify"], "classify", doc_stride=8)
    assert not (tmp_path / "o.jsonl").exists()
