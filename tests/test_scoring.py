"""Batch offline scoring (sqbert_fast.scoring): formats, tasks, order, bad rows, malformed files, resume.

Tiny random-weight checkpoints (hidden 32, 2 layers) written with save_pretrained, one per task; results
are checked against calling the model directly on each text. The resume tests SIGKILL a real
``sqbert-fast score`` process at random commit points and require the resumed file to be byte-identical.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import sqbert_fast as sqf
from sqbert_fast.cli import main as cli_main
from sqbert_fast.scoring import InputFormatError, ResumeError, Scorer, score
from sqbert_fast.scoring.batching import plan_batches
from sqbert_fast.scoring.scorer import Progress, Window

pa = pytest.importorskip("pyarrow", reason="the scoring extra (pip install sqbert_fast[scoring]) provides pyarrow")
import pyarrow.parquet as pq  # noqa: E402

WORDS = ("the a movie was good bad great terrible film plot actor acting i loved hated it this is not very and "
         "but so what who where when paris france city capital of").split()
LABELS = {0: "NEG", 1: "POS", 2: "NEU"}
CLASSES = {
    "classify": ("SqueezeBertForSequenceClassification", LABELS),
    "embed": ("SqueezeBertModel", LABELS),
    "token-classify": ("SqueezeBertForTokenClassification", LABELS),
    "qa": ("SqueezeBertForQuestionAnswering", {0: "start", 1: "end"}),
    "fill-mask": ("SqueezeBertForMaskedLM", LABELS),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS)) + ["##s", "##ing", ".", ",", "?"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = sqf.SqueezeBertTokenizerFast(vocab_file=str(root / "vocab.txt"), model_max_length=64)
    dirs = {}
    for task, (cls_name, labels) in CLASSES.items():
        torch.manual_seed(len(task))
        cfg = sqf.SqueezeBertConfig(
            vocab_size=len(vocab), hidden_size=32, embedding_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, q_groups=2, k_groups=2, v_groups=2,
            post_attention_groups=2, intermediate_groups=2, output_groups=2, id2label=labels, initializer_range=0.3)
        d = root / task
        getattr(sqf, cls_name)(cfg).save_pretrained(d)
        tok.save_pretrained(d)
        dirs[task] = str(d)
    return dirs


def _texts(n: int, seed: int = 0, longest: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, int(rng.lognormvariate(1.8, 0.7)) % longest)))
            for _ in range(n)]


def _write(path, fmt: str, records: list[dict]) -> str:
    path = str(path)
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]), delimiter="\t" if fmt == "tsv" else ",")
            w.writeheader()
            w.writerows(records)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=7)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(r["text"] + "\n" for r in records)
    return path


def _read_output(path: str) -> list[dict]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for k, v in r.items():
                if v.startswith(("[", "{")):
                    r[k] = json.loads(v)
            if "score" in r:
                r["score"] = float(r["score"])
        return rows
    return pq.read_table(path).to_pylist()


def _direct(model_dir: str, cls_name: str, text, pair=None):
    """The model called on one text, without the scorer."""
    tok = sqf.SqueezeBertTokenizerFast.from_pretrained(model_dir)
    model = getattr(sqf, cls_name).from_pretrained(model_dir)
    enc = tok(text, pair, return_tensors="pt")
    enc.pop("offset_mapping", None)
    return model(**enc), enc


# ---- unit pieces -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_tokens,max_batch", [(16, 4), (50, 100), (1000, 3)])
def test_plan_batches_covers_every_row_once_within_budget(max_tokens, max_batch):
    rng = random.Random(max_tokens)
    lengths = [rng.randint(1, 16) for _ in range(97)]
    batches = plan_batches(lengths, max_tokens, max_batch)
    assert sorted(i for b in batches for i in b) == list(range(97))
    for b in batches:
        assert len(b) <= max_batch
        assert len(b) * max(lengths[i] for i in b) <= max(max_tokens, max(lengths))
    widths = [lengths[b[0]] for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first


def test_progress_eta_credits_tokens_not_rows():
    meter = Progress(total_units=200, enabled=False)
    win = Window(0, rows=[], encodings=[object()] * 4, tokens=40, units=100)
    meter.start_window(win)
    meter.batch_done(rows=1, tokens=30)  # one long row: 3/4 of the window's work
    assert meter.done_units() == pytest.approx(75)
    meter.batch_done(rows=3, tokens=10)
    meter.end_window()
    assert meter.done_units() == pytest.approx(100)
    assert "50.0%" in meter.line() and "4 rows" in meter.line()


# ---- formats and order -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet", "text"])
def test_each_input_format_scores_every_row_in_order(models, tmp_path, fmt):
    texts = _texts(41, seed=1)
    records = [{"key": f"k{i}", "text": t} for i, t in enumerate(texts)]
    src = _write(tmp_path / f"in.{ 'txt' if fmt == 'text' else fmt}", fmt, records)
    id_field = None if fmt == "text" else "key"
    out = str(tmp_path / "out.jsonl")
    summary = Scorer(models["classify"], "classify", window=8, max_tokens=64).score_file(
        src, out, id_field=id_field, progress=False)
    assert summary.rows == 41 and summary.errors == 0
    got = _read_output(out)
    assert [r["id"] for r in got] == ([f"k{i}" for i in range(41)] if id_field else list(range(41)))
    for i in (0, 17, 40):
        logits = _direct(models["classify"], "SqueezeBertForSequenceClassification", texts[i])[0].logits[0]
        probs = torch.softmax(logits, -1)
        assert got[i]["label"] == LABELS[int(probs.argmax())]
        assert got[i]["score"] == pytest.approx(float(probs.max()), abs=1e-5)


@pytest.mark.parametrize("out_fmt", ["csv", "parquet"])
def test_output_formats_hold_the_same_records_as_jsonl(models, tmp_path, out_fmt):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"id": i, "text": t} for i, t in enumerate(_texts(30, 2))])
    scorer = Scorer(models["classify"], "classify", window=16, all_scores=True)
    scorer.score_file(src, tmp_path / "a.jsonl", id_field="id", progress=False)
    scorer.score_file(src, tmp_path / f"b.{out_fmt}", id_field="id", progress=False)
    a, b = _read_output(str(tmp_path / "a.jsonl")), _read_output(str(tmp_path / f"b.{out_fmt}"))
    assert [str(r["id"]) for r in a] == [r["id"] for r in b]  # ids become strings in typed formats
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        np.testing.assert_allclose(x["scores"], y["scores"], rtol=1e-6)


def test_batching_does_not_change_results_or_order(models, tmp_path):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(60, 3)])
    a = Scorer(models["classify"], "classify", window=60, max_tokens=2048)
    b = Scorer(models["classify"], "classify", window=7, max_tokens=64, max_batch_size=3)
    ra, rb = list(a.score(src)), list(b.score(src))
    assert [r["id"] for r in ra] == [r["id"] for r in rb] == list(range(60))
    for x, y in zip(ra, rb):
        assert x["label"] == y["label"] and x["score"] == pytest.approx(y["score"], abs=1e-6)


# ---- tasks -----------------------------------------------------------------------------------------------

def test_embed_mean_pooling_parquet_and_npy(models, tmp_path):
    texts = _texts(25, 4)
    src = _write(tmp_path / "in.csv", "csv", [{"text": t} for t in texts])
    scorer = Scorer(models["embed"], "embed", window=10, normalize=True)
    scorer.score_file(src, tmp_path / "e.parquet", progress=False)
    scorer.score_file(src, tmp_path / "ids.jsonl", embeddings_npy=str(tmp_path / "e.npy"), progress=False)
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)  # fixed width: one flat buffer
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    npy = np.load(tmp_path / "e.npy")
    assert npy.shape == (25, 32) and npy.dtype == np.float32
    np.testing.assert_array_equal(emb, npy)
    assert [r["id"] for r in _read_output(str(tmp_path / "ids.jsonl"))] == list(range(25))
    out, enc = _direct(models["embed"], "SqueezeBertModel", texts[3])
    ref = torch.nn.functional.normalize(out.last_hidden_state[0].mean(0), dim=-1)
    np.testing.assert_allclose(emb[3], ref.numpy(), atol=1e-5)


def test_token_classify_tags_carry_character_offsets(models, tmp_path):
    texts = ["I loved the movies, paris!", "the acting was terrible"]
    got = list(score(models["token-classify"], texts, task="token-classify"))
    logits = _direct(models["token-classify"], "SqueezeBertForTokenClassification", texts[0])[0].logits[0]
    tags = got[0]["tokens"]
    assert [t["token"] for t in tags] == ["i", "loved", "the", "movie", "##s", ",", "paris", "[UNK]"]
    for t in tags:
        piece = texts[0][t["start"]:t["end"]].lower()
        assert piece == t["token"].removeprefix("##") or t["token"] == "[UNK]"
    assert [t["label"] for t in tags] == [LABELS[int(i)] for i in logits[1:-1].argmax(-1)]


def test_qa_answer_is_the_context_span(models, tmp_path):
    rows = [{"q": "what is the capital of france?", "c": "paris is the capital of france.", "id": "x"}]
    src = _write(tmp_path / "qa.jsonl", "jsonl", rows)
    Scorer(models["qa"], "qa", question_field="q", context_field="c").score_file(
        src, tmp_path / "qa.parquet", id_field="id", progress=False)
    (r,) = pq.read_table(tmp_path / "qa.parquet").to_pylist()
    assert r["id"] == "x" and r["answer"] == rows[0]["c"][r["start"]:r["end"]] and r["answer"]
    assert 0 < r["score"] <= 1


def test_fill_mask_top_k(models):
    text = "paris is the [MASK] of france."
    (r,) = list(score(models["fill-mask"], [text], task="fill-mask", top_k=3))
    logits = _direct(models["fill-mask"], "SqueezeBertForMaskedLM", text)[0].logits[0, 4]
    (preds,) = r["predictions"]
    assert [p["token_id"] for p in preds] == logits.topk(3).indices.tolist()
    assert preds[0]["score"] == pytest.approx(float(torch.softmax(logits, -1).max()), abs=1e-5)


def test_sentence_pairs(models):
    (r,) = list(score(models["classify"], [{"premise": "a good film", "hyp": "it was bad"}], task="classify",
                      text_field="premise", pair_field="hyp"))
    out = _direct(models["classify"], "SqueezeBertForSequenceClassification", "a good film", "it was bad")[0]
    assert r["score"] == pytest.approx(float(torch.softmax(out.logits[0], -1).max()), abs=1e-5)


# ---- bad rows and malformed files --------------------------------------------------------------------------

def test_bad_rows_go_to_the_errors_file_and_the_run_continues(models, tmp_path):
    long_text = " ".join(["movie"] * 80)
    lines = [json.dumps({"id": "ok1", "text": "good movie"}).encode(),
             json.dumps({"id": "empty", "text": "   "}).encode(),
             b'{"id": "latin1", "text": "caf\xe9"}',
             json.dumps({"id": "nofield"}).encode(),
             json.dumps({"id": "long", "text": long_text}).encode(),
             b'{"id": "surrogate", "text": "bad \\ud800 text"}',
             json.dumps({"id": "number", "text": 5}).encode(),
             json.dumps({"id": "ok2", "text": "bad plot"}).encode()]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    rc = cli_main(["score", models["classify"], str(src), str(tmp_path / "out.jsonl"), "--task", "classify",
                   "--id-field", "id", "--truncation", "error", "--no-progress"])
    assert rc == 0
    assert [r["id"] for r in _read_output(str(tmp_path / "out.jsonl"))] == ["ok1", "ok2"]
    errors = _read_output(str(tmp_path / "out.jsonl.errors.jsonl"))
    by_row = {e["row"]: e for e in errors}
    assert sorted(by_row) == [1, 2, 3, 4, 5, 6]
    assert by_row[1]["id"] == "empty" and "empty" in by_row[1]["reason"]
    assert by_row[2]["id"] == 2 and "UTF-8" in by_row[2]["reason"] and by_row[2]["line"] == 3
    assert "missing field 'text'" in by_row[3]["reason"]
    assert by_row[4]["id"] == "long" and "max_length" in by_row[4]["reason"]
    assert "Unicode" in by_row[5]["reason"]
    assert "not a string" in by_row[6]["reason"]


def test_too_long_rows_are_truncated_by_default(models):
    (r,) = list(score(models["classify"], [" ".join(["movie"] * 200)], task="classify"))
    assert "label" in r


def test_iterator_reports_bad_rows_inline(models):
    got = list(score(models["classify"], ["good", "", "bad"], task="classify"))
    assert [r["id"] for r in got] == [0, 1, 2]
    assert got[1] == {"id": 1, "error": "field 'text' is empty"}


@pytest.mark.parametrize("fmt,content,where", [
    ("jsonl", b'{"text": "good"}\n{"text": "bad"\n{"text": "ok"}\n', "line 2"),
    ("jsonl", b'{"text": "good"}\n\n["a list"]\n', "line 3"),
    ("csv", b'id,text\n1,good\n2,bad,extra\n', "line 3"),
    ("csv", b'id,text\n1,"good\n2,bad\n', "line 2"),
    ("parquet", b"PAR1 this is not parquet", "Parquet"),
])
def test_malformed_file_names_the_line(models, tmp_path, capsys, fmt, content, where):
    src = tmp_path / f"in.{fmt}"
    src.write_bytes(content)
    with pytest.raises(InputFormatError, match=where):
        Scorer(models["classify"], "classify").score_file(src, tmp_path / "o.jsonl", progress=False)
    rc = cli_main(["score", models["classify"], str(src), str(tmp_path / "o2.jsonl"), "--task", "classify",
                   "--no-progress"])
    assert rc == 1 and where in capsys.readouterr().err


def test_missing_column_is_a_format_error(models, tmp_path):
    src = _write(tmp_path / "in.csv", "csv", [{"body": "good"}])
    with pytest.raises(InputFormatError, match="no column 'text'"):
        list(score(models["classify"], str(src), task="classify"))


# ---- commit / resume ---------------------------------------------------------------------------------------

def test_existing_output_and_changed_options_are_refused(models, tmp_path):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(10, 5)])
    out = tmp_path / "o.jsonl"
    Scorer(models["classify"], "classify").score_file(src, out, progress=False)
    with pytest.raises(ResumeError, match="--overwrite"):
        Scorer(models["classify"], "classify").score_file(src, out, progress=False)
    # An interrupted run's parts may only be continued with the same options.
    os.makedirs(str(out) + ".parts")
    from sqbert_fast.scoring.writers import ChunkedOutput

    ChunkedOutput(out, "jsonl", [("id", pa.int64())], {"window": 8}, overwrite=True)
    with pytest.raises(ResumeError, match="window"):
        ChunkedOutput(out, "jsonl", [("id", pa.int64())], {"window": 9}, resume=True)


def _committed_parts(parts_dir: str) -> int:
    try:
        with open(os.path.join(parts_dir, "state.json")) as f:
            return json.load(f)["parts"]
    except (OSError, ValueError):
        return -1


@pytest.mark.parametrize("out_name,task", [("out.jsonl", "classify"), ("out.parquet", "embed")])
def test_resume_after_sigkill_is_byte_identical(models, tmp_path, out_name, task):
    rng = random.Random(out_name)
    texts = _texts(400, seed=9)
    texts[37] = ""  # a bad row, so the errors file is resumed too
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in texts])
    window = 8
    windows = -(-len(texts) // window)
    args = ["score", models[task], src, None, "--task", task, "--window", str(window), "--max-tokens", "64",
            "--threads", "1", "--no-progress"]
    reference = tmp_path / ("ref-" + out_name)
    assert cli_main([*args[:3], str(reference), *args[4:]]) == 0

    trials = [0] + sorted(rng.sample(range(1, windows - 1), 2))  # before any commit, and two random points
    for trial, kill_after in enumerate(trials):
        out = str(tmp_path / f"t{trial}-{out_name}")
        cmd = [sys.executable, "-m", "sqbert_fast.cli", *args[:3], out, *args[4:]]
        with open(tmp_path / f"t{trial}.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while _committed_parts(out + ".parts") < kill_after and proc.poll() is None:
            assert time.monotonic() < deadline, "the scoring process made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))  # land anywhere inside the next window's work or commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not os.path.exists(out) or proc.returncode == 0, "killed, yet the final file exists"
        if proc.returncode == 0:
            pytest.fail(f"trial {trial}: the run finished before the kill; make the input longer")
        assert cli_main([*args[:3], out, *args[4:], "--resume"]) == 0
        with open(reference, "rb") as a, open(out, "rb") as b:
            assert a.read() == b.read(), f"trial {trial} (killed after {kill_after} commits) differs"
        with open(str(reference) + ".errors.jsonl", "rb") as a, open(out + ".errors.jsonl", "rb") as b:
            assert a.read() == b.read()
        assert not os.path.exists(out + ".parts")


def test_resume_when_nothing_is_left_only_merges(models, tmp_path):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(12, 6)])
    scorer = Scorer(models["classify"], "classify", window=4)
    ref = tmp_path / "ref.jsonl"
    scorer.score_file(src, ref, progress=False)
    out = tmp_path / "o.jsonl"
    from sqbert_fast.scoring import writers

    finish = writers.ChunkedOutput.finish
    writers.ChunkedOutput.finish = writers.ChunkedOutput.mark_complete  # "crash" right before the merge
    try:
        scorer.score_file(src, out, progress=False)
    finally:
        writers.ChunkedOutput.finish = finish
    assert not out.exists()
    summary = scorer.score_file(src, out, resume=True, progress=False)
    assert summary.rows == 0 and out.read_bytes() == ref.read_bytes()


def test_embed_to_parquet_never_imports_pandas(models, tmp_path):
    """pandas is 0.3 s of start-up that `score` does not need: pa.array() and pq.read_table() would import it
    (numeric columns are built from their buffers, parts are merged through ParquetFile)."""
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(20, seed=3)])
    code = ("import sys; from sqbert_fast.cli import main; "
            f"rc = main(['score', {models['embed']!r}, {src!r}, {str(tmp_path / 'out.parquet')!r}, '--task', 'embed', "
            "'--window', '8', '--no-progress', '--threads', '1']); "
            "print(rc, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stdout[-1000:] + out.stderr[-2000:]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == list(range(20))
    assert str(table.schema.field("embedding").type.value_type) == "float"


def test_numeric_array_is_pa_array():
    import pyarrow as pa

    from sqbert_fast.scoring.writers import numeric_array

    for values in (np.arange(5, dtype=np.int64), np.linspace(0, 1, 7, dtype=np.float32), np.array([], np.float16),
                   np.arange(10, dtype=np.int32)[::2]):
        assert numeric_array(values).equals(pa.array(values))
    with pytest.raises(TypeError, match="1-D int or float"):
        numeric_array(np.array([True, False]))
