"""Scoring never destroys its input, resume notices new weights, bad options and BOMs, Ray actor sizing.

Uses the tiny checkpoints of test_scoring.py. Each refusal is checked from the outside: the input's bytes
are unchanged and the run left nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import sqbert_fast as sqf
from sqbert_fast.cli import main as cli_main
from sqbert_fast.scoring import ResumeError, Scorer
from sqbert_fast.scoring.ray import plan_actors
from sqbert_fast.scoring.readers import read_rows
from sqbert_fast.scoring.writers import ChunkedOutput, PathCollisionError

from test_scoring import _read_output, _texts, _write, models  # noqa: F401  (the tiny checkpoints fixture)

# ---- 1. the run's files never overlap: refused before anything is written -------------------------------


def _cli(models, src, out, *extra, task="classify"):
    return cli_main(["score", models[task], str(src), str(out), "--task", task, "--no-progress", *extra])


def test_collisions_are_refused_and_the_input_is_untouched(models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(9, 21)])
    d = str(tmp_path)
    os.symlink(src, os.path.join(d, "link.jsonl"))
    for name in ("hard.jsonl", "in.errors.jsonl", "o7.jsonl.tmp"):  # the input under other names
        os.link(src, os.path.join(d, name))
    cases = [  # (what, INPUT, OUTPUT, more arguments)
        ("--errors is the input", src, "o1.jsonl", ["--errors", src]),
        ("--embeddings-npy is the input", src, "o2.jsonl", ["--embeddings-npy", src, "--task", "embed"]),
        ("OUTPUT is the input, with --overwrite", src, src, ["--overwrite"]),
        ("OUTPUT is ./INPUT", src, "./in.jsonl", ["--overwrite"]),
        ("OUTPUT is the input by a relative path", src, "in.jsonl", ["--overwrite"]),
        ("OUTPUT is a symlink to the input", src, "link.jsonl", ["--overwrite"]),
        ("OUTPUT is a hard link to the input", src, "hard.jsonl", ["--overwrite"]),
        ("the input is OUTPUT's default errors file", "in.errors.jsonl", "in", ["--output-format", "jsonl"]),
        ("the input is OUTPUT's temporary file", "o7.jsonl.tmp", "o7.jsonl", ["--input-format", "jsonl"]),
        ("--errors is OUTPUT", src, "o3.jsonl", ["--errors", "o3.jsonl"]),
        ("--errors is ./OUTPUT", src, "o4.jsonl", ["--errors", os.path.join(d, ".", "o4.jsonl")]),
        ("--embeddings-npy is the errors file", src, "o5.jsonl",
         ["--errors", "e5", "--embeddings-npy", "e5", "--task", "embed"]),
        ("--errors is inside OUTPUT.parts", src, "o6.jsonl", ["--errors", "o6.jsonl.parts/e.jsonl"]),
        ("--errors is OUTPUT's temporary file", src, "o8.jsonl", ["--errors", "o8.jsonl.tmp"]),
    ]
    before = Path(src).read_bytes()
    listing = sorted(os.listdir(tmp_path))
    for what, inp, out, extra in cases:
        rc = cli_main(["score", models["embed" if "embed" in extra else "classify"], inp, out, "--no-progress",
                       *(["--task", "classify"] if "--task" not in extra else []), *extra])
        err = capsys.readouterr().err
        assert rc == 1, what
        assert "sqbert-fast score: error:" in err, (what, err)
        assert any(reason in err for reason in ("its own input", "same file", "inside")), (what, err)
        assert "Traceback" not in err
        assert Path(src).read_bytes() == before, f"{what}: the input changed"
        assert sorted(os.listdir(tmp_path)) == listing, f"{what}: the refused run left files behind"


def test_collision_is_refused_by_the_api_before_the_parts_exist(models, tmp_path):
    src = _write(tmp_path / "in.csv", "csv", [{"text": t} for t in _texts(5, 22)])
    before = Path(src).read_bytes()
    scorer = Scorer(models["classify"], "classify")
    with pytest.raises(PathCollisionError, match="destroy its own input"):
        scorer.score_file(src, tmp_path / "o.jsonl", errors_path=str(tmp_path / "." / "in.csv"), progress=False)
    with pytest.raises(PathCollisionError, match=r"^OUTPUT is the input file .*in\.csv: the run would destroy"):
        scorer.score_file(src, src, output_format="csv", overwrite=True, progress=False)
    assert Path(src).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]
    # Also for ChunkedOutput used on its own: OUTPUT and the errors file may not be one file.
    with pytest.raises(PathCollisionError):
        ChunkedOutput(tmp_path / "x.jsonl", "jsonl", [("id", None)], {}, errors_path=str(tmp_path / "x.jsonl"))
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_distinct_paths_still_run(models, tmp_path):
    """The check refuses overlaps only: a sibling named like the input is fine."""
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(6, 23)])
    assert _cli(models, src, tmp_path / "in.jsonl.out.jsonl", "--errors", str(tmp_path / "in.jsonl.err")) == 0
    assert len(_read_output(str(tmp_path / "in.jsonl.out.jsonl"))) == 6


# ---- 2. --resume notices changed weights --------------------------------------------------------------------


class _Interrupt(Exception):
    pass


def _interrupted_run(monkeypatch, scorer, src, out, after_commits=1):
    """Run score_file until ``after_commits`` windows are committed, then fail as a crash would."""
    commit = ChunkedOutput.commit
    done = []

    def commit_then_crash(self, *args, **kwargs):
        commit(self, *args, **kwargs)
        done.append(1)
        if len(done) >= after_commits:
            raise _Interrupt

    monkeypatch.setattr(ChunkedOutput, "commit", commit_then_crash)
    with pytest.raises(_Interrupt):
        scorer.score_file(src, out, progress=False)
    monkeypatch.setattr(ChunkedOutput, "commit", commit)
    assert os.path.isdir(str(out) + ".parts") and not os.path.exists(out)


def _copy_model(models, tmp_path, task="classify"):
    d = tmp_path / "model"
    d.mkdir()
    for name in os.listdir(models[task]):
        (d / name).write_bytes(Path(os.path.join(models[task], name)).read_bytes())
    return str(d)


def test_resume_is_refused_after_the_weights_are_saved_again(models, tmp_path, monkeypatch, capsys):
    model_dir = _copy_model(models, tmp_path)
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(12, 24)])
    out = tmp_path / "o.jsonl"
    _interrupted_run(monkeypatch, Scorer(model_dir, "classify", window=4), src, out)
    # Same shapes, same sizes, same safetensors header: only the numbers differ.
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(-1)
    model.save_pretrained(model_dir)
    with pytest.raises(ResumeError, match=r"model weights changed: .*model\.safetensors"):
        Scorer(model_dir, "classify", window=4).score_file(src, out, resume=True, progress=False)
    rc = cli_main(["score", model_dir, src, str(out), "--task", "classify", "--window", "4", "--resume",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "model weights changed" in err and "--overwrite" in err
    assert not out.exists()  # nothing was mixed


def test_resume_with_the_same_weights_still_works(models, tmp_path, monkeypatch):
    """The control for the test above: the interruption is resumable when nothing changed."""
    model_dir = _copy_model(models, tmp_path)
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(12, 24)])
    ref, out = tmp_path / "ref.jsonl", tmp_path / "o.jsonl"
    Scorer(model_dir, "classify", window=4).score_file(src, ref, progress=False)
    _interrupted_run(monkeypatch, Scorer(model_dir, "classify", window=4), src, out)
    Scorer(model_dir, "classify", window=4).score_file(src, out, resume=True, progress=False)
    assert out.read_bytes() == ref.read_bytes()


def test_resume_with_a_model_instance_hashes_its_weights(models, tmp_path, monkeypatch):
    tok = sqf.SqueezeBertTokenizerFast.from_pretrained(models["classify"])
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(models["classify"])
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(12, 25)])
    out = tmp_path / "o.jsonl"
    _interrupted_run(monkeypatch, Scorer(model, "classify", tokenizer=tok, window=4), src, out)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    with pytest.raises(ResumeError, match="model weights changed: state_dict"):
        Scorer(model, "classify", tokenizer=tok, window=4).score_file(src, out, resume=True, progress=False)


@pytest.mark.parametrize("option,old,new", [("pooling", "mean", "cls"), ("normalize", False, True),
                                           ("max_length", 64, 32), ("dtype", None, torch.bfloat16)])
def test_resume_is_refused_when_numerics_options_change(models, tmp_path, monkeypatch, option, old, new):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(12, 26)])
    out = tmp_path / "o.parquet"
    _interrupted_run(monkeypatch, Scorer(models["embed"], "embed", window=4, **{option: old}), src, out)
    with pytest.raises(ResumeError, match=option):
        Scorer(models["embed"], "embed", window=4, **{option: new}).score_file(src, out, resume=True, progress=False)


# ---- 3. small ones: bad numbers, leftover parts, byte order marks -----------------------------------------


@pytest.mark.parametrize("flag,value", [("--top-k", "-1"), ("--top-k", "0"), ("--max-tokens", "0"),
                                        ("--max-tokens", "-5"), ("--max-batch-size", "0"), ("--window", "-1"),
                                        ("--max-answer-tokens", "0")])
def test_invalid_numbers_are_one_line_errors(models, tmp_path, capsys, flag, value):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": "the [MASK] was good"}])
    rc = _cli(models, src, tmp_path / "o.jsonl", flag, value, task="fill-mask")
    err = capsys.readouterr().err
    assert rc == 1
    assert f"sqbert-fast score: error: {flag[2:].replace('-', '_')} ({flag}) must be >= 1, got {value}" in err
    assert "Traceback" not in err and sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_leftover_parts_after_a_malformed_input_say_how_to_go_on(models, tmp_path, capsys):
    lines = [json.dumps({"text": t}) for t in _texts(20, 27)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines[:12] + ["{not json"] + lines[12:]) + "\n")
    out = tmp_path / "o.jsonl"
    args = ("--window", "4")
    assert _cli(models, src, out, *args) == 1
    err = capsys.readouterr().err
    assert "line 13: not valid JSON" in err and "--resume" in err and "--overwrite" in err
    assert os.path.isdir(str(out) + ".parts")  # three windows were committed before the bad line
    assert _cli(models, src, out, *args) == 1  # a plain rerun
    err = capsys.readouterr().err
    assert "interrupted run" in err and "--resume" in err and "--overwrite" in err
    src.write_text("\n".join(lines) + "\n")  # the user fixes the file: the parts cannot be resumed
    assert _cli(models, src, out, *args, "--resume") == 1
    err = capsys.readouterr().err
    assert "input_size" in err and "--overwrite" in err
    assert _cli(models, src, out, *args, "--overwrite") == 0
    assert [r["id"] for r in _read_output(str(out))] == list(range(20))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "text"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_row(models, tmp_path, fmt):
    records = [{"text": t, "key": f"k{i}"} for i, t in enumerate(_texts(5, 28))]
    plain = _write(tmp_path / f"plain.{'txt' if fmt == 'text' else fmt}", fmt, records)
    bom = tmp_path / f"bom.{'txt' if fmt == 'text' else fmt}"
    bom.write_bytes(b"\xef\xbb\xbf" + Path(plain).read_bytes())
    scorer = Scorer(models["classify"], "classify")
    id_field = None if fmt == "text" else "key"  # the CSV header's first column is "text"
    a = list(scorer.score(plain, id_field=id_field))
    b = list(scorer.score(str(bom), id_field=id_field))
    assert all("error" not in r for r in b), b
    assert a == b
    first = next(read_rows(bom, columns=["text"]))
    assert first.fields["text"] == records[0]["text"] and first.error is None


# ---- 4. Ray: actors sized so the readers still get a CPU ----------------------------------------------------


def test_ray_default_plan_leaves_a_cpu_for_reading():
    plan = plan_actors([{"CPU": 2.0}])  # the defaults on a 2-CPU machine deadlocked before
    assert plan.num_actors == 2 and plan.num_cpus == 0.5 and plan.num_cpus * plan.num_actors <= 2 - 1
    assert plan_actors([{"CPU": 16.0}], 3).num_cpus == 5.0
    assert plan_actors([{"CPU": 16.0}, {"CPU": 16.0}], 2).num_cpus == 15.0  # each actor fits a node
    assert plan_actors([{"CPU": 8.0, "GPU": 2.0}], 2, None, 1.0) == plan_actors([{"CPU": 8.0, "GPU": 2.0}], 2, 3.5, 1)


@pytest.mark.parametrize("nodes,args,match", [
    ([{"CPU": 2.0}], (2, 1.0), r"2 actor\(s\) of 1 CPU.*read tasks need 1 CPU.*--ray-cpus-per-actor 0\.5"),
    ([{"CPU": 1.0}], (1, None), r"cannot schedule 1 actor.*1 CPU"),
    ([{"CPU": 4.0}, {"CPU": 4.0}], (1, 5.0), r"of 5 CPU"),  # 8 CPUs in all, but no node holds 5 + reading
    ([{"CPU": 8.0, "GPU": 1.0}], (2, None, 1.0), r"1 GPU\(s\) over 1 node"),
    ([{"CPU": 8.0}], (0, None), r"ray_actors \(--ray-actors\) must be >= 1"),
    ([{"CPU": 8.0}], (2, -1.0), r"--ray-cpus-per-actor must be >= 0"),
])
def test_ray_plans_that_cannot_schedule_are_refused(nodes, args, match):
    with pytest.raises(ValueError, match=match):
        plan_actors(nodes, *args)
