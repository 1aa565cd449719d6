"""The Ray path (sqbert_fast.scoring.ray) gives the same output as the single-machine path.

Runs on a local Ray instance with 2 CPUs, as CI does (pip install sqbert_fast[ray]). Two actors of half a
CPU each, so the read tasks still get a CPU (a pool holding every CPU starves Ray Data's readers).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'sqbert_fast[ray]' (CI installs it)")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from sqbert_fast.cli import main as cli_main  # noqa: E402
from sqbert_fast.scoring import Scorer  # noqa: E402
from sqbert_fast.scoring.ray import score_file_ray  # noqa: E402

from test_scoring import _read_output, _texts, _write, models  # noqa: E402,F401  (the tiny checkpoints fixture)

# Ray's own advice for tiny inputs (one block cannot feed two actors): expected here, not a failure.
# Ray Data's per-dataset log handlers leave files under /tmp/ray open; their ResourceWarning surfaces at
# a random later GC point as an unraisable-exception warning (seen once in CI): Ray's, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    gc.collect()  # Ray's leaked log files are finalised here, under this module's warning filters


def _rows(texts):
    return [{"key": f"k{i}", "text": t} for i, t in enumerate(texts)]


@pytest.mark.parametrize("in_fmt,out_name", [("jsonl", "out.jsonl"), ("csv", "out.csv"), ("parquet", "out.parquet")])
def test_ray_classify_equals_local(models, local_ray, tmp_path, in_fmt, out_name):
    texts = _texts(45, seed=11)
    texts[5] = ""  # a bad row: same errors file on both paths (Ray's has no line numbers)
    src = _write(tmp_path / f"in.{in_fmt}", in_fmt, _rows(texts))
    kw = dict(task="classify", window=16, max_tokens=64, all_scores=True)
    Scorer(models["classify"], **kw).score_file(src, tmp_path / f"local-{out_name}", id_field="key", progress=False)
    score_file_ray(models["classify"], src, str(tmp_path / f"ray-{out_name}"), id_field="key", num_actors=2,
                   num_cpus=0.5, **kw)
    # Ray cuts its own batches (and runs 1 thread per actor), so floats may differ in the last bits.
    a, b = _read_output(str(tmp_path / f"local-{out_name}")), _read_output(str(tmp_path / f"ray-{out_name}"))
    assert len(a) == len(b) == 44
    assert [r["id"] for r in a] == [r["id"] for r in b] == [f"k{i}" for i in range(45) if i != 5]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    np.testing.assert_allclose([r["scores"] for r in a], [r["scores"] for r in b], atol=1e-6)
    errors = [json.loads(x) for x in (tmp_path / f"ray-{out_name}.errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["row"]) for e in errors] == [("k5", 5)] and "empty" in errors[0]["reason"]


def test_ray_embed_text_to_npy_via_cli(models, local_ray, tmp_path):
    texts = _texts(30, seed=12)
    src = _write(tmp_path / "in.txt", "text", _rows(texts))
    base = [models["embed"], src]
    common = ["--task", "embed", "--window", "8", "--normalize", "--no-progress"]
    assert cli_main(["score", *base, str(tmp_path / "local.jsonl"), *common,
                     "--embeddings-npy", str(tmp_path / "local.npy")]) == 0
    assert cli_main(["score", *base, str(tmp_path / "ray.jsonl"), *common, "--embeddings-npy",
                     str(tmp_path / "ray.npy"), "--ray", "local", "--ray-actors", "2",
                     "--ray-cpus-per-actor", "0.5"]) == 0
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()
    a, b = np.load(tmp_path / "local.npy"), np.load(tmp_path / "ray.npy")
    assert a.shape == b.shape == (30, 32)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_ray_defaults_schedule_on_two_cpus(models, local_ray, tmp_path, capsys):
    """Two actors of 1 CPU each (the old defaults) left Ray Data's readers no CPU on this 2-CPU cluster and
    the run waited forever: now such a plan is refused before any output exists, and the defaults fit."""
    src = _write(tmp_path / "in.jsonl", "jsonl", _rows(_texts(20, seed=13)))
    base = ["score", models["classify"], src]
    common = ["--task", "classify", "--window", "8", "--no-progress", "--ray", "local"]
    assert cli_main([*base, str(tmp_path / "old.jsonl"), *common, "--ray-actors", "2",
                     "--ray-cpus-per-actor", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot schedule 2 actor(s) of 1 CPU(s)" in err and "--ray-cpus-per-actor 0.5" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    assert cli_main([*base, str(tmp_path / "new.jsonl"), *common]) == 0  # hung here before
    assert [r["id"] for r in _read_output(str(tmp_path / "new.jsonl"))] == list(range(20))


def test_ray_refuses_to_overwrite_its_input(models, local_ray, tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", "jsonl", _rows(_texts(5, seed=14)))
    before = (tmp_path / "in.jsonl").read_bytes()
    rc = cli_main(["score", models["classify"], src, str(tmp_path / "o.jsonl"), "--task", "classify",
                   "--errors", str(tmp_path / "." / "in.jsonl"), "--ray", "local", "--no-progress"])
    assert rc == 1 and "destroy its own input" in capsys.readouterr().err
    assert (tmp_path / "in.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def _done_shards(parts) -> int:
    try:
        return sum(name.endswith(".done") for name in os.listdir(parts))
    except OSError:
        return 0


def test_ray_resume_after_driver_sigkill_equals_uninterrupted(models, local_ray, tmp_path):
    """Issue 22: a driver SIGKILLed mid-run and started again with --resume ends with every row once, and the
    very bytes of an uninterrupted run. Workers wrote the parts (fixed-size float32 vectors), not the driver."""
    texts = _texts(480, seed=15)
    texts[77] = ""  # a bad row: the errors file is resumed too
    src = _write(tmp_path / "in.jsonl", "jsonl", _rows(texts))
    address = ray.get_runtime_context().gcs_address  # the subprocess driver joins this cluster
    args = ["score", models["embed"], src, None, "--task", "embed", "--window", "8", "--ray-shard-rows", "8",
            "--id-field", "key", "--no-progress", "--ray", address, "--ray-actors", "2",
            "--ray-cpus-per-actor", "0.5"]
    ref = tmp_path / "ref.parquet"
    assert cli_main([*args[:3], str(ref), *args[4:]]) == 0

    out = tmp_path / "out.parquet"
    parts = str(out) + ".parts"
    with open(tmp_path / "driver.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sqbert_fast.cli", *args[:3], str(out), *args[4:]],
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while _done_shards(parts) < 5 and proc.poll() is None:
        assert time.monotonic() < deadline, "the Ray run made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-2000:]
    done = _done_shards(parts)
    assert 5 <= done < 60 and not out.exists(), done  # killed mid-run: some shards committed, not all

    assert cli_main([*args[:3], str(out), *args[4:], "--resume"]) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "out.parquet.errors.jsonl").read_bytes() == (tmp_path / "ref.parquet.errors.jsonl").read_bytes()
    assert not os.path.exists(parts)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"k{i}" for i in range(480) if i != 77]  # each row once, in order
    assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)


def test_ray_parts_without_merge_and_arrow_dataset(models, local_ray, tmp_path):
    """--ray-no-merge leaves the workers' committed parts as the output; score_dataset returns Arrow columns
    (a fixed-size float32 list per row, null for a bad row), no pickled objects."""
    from sqbert_fast.scoring.ray import score_dataset

    texts = _texts(40, seed=16)
    texts[3] = ""
    src = _write(tmp_path / "in.parquet", "parquet", _rows(texts))
    summary = score_file_ray(models["embed"], src, str(tmp_path / "o.parquet"), task="embed", window=8,
                             shard_rows=16, merge=False, num_actors=2, num_cpus=0.5)
    assert (summary.rows, summary.written, summary.errors) == (40, 39, 1)
    names = sorted(os.listdir(tmp_path / "o.parquet.parts"))
    assert [n for n in names if n.endswith(".parquet")] == ["part-000000.parquet", "part-000001.parquet",
                                                           "part-000002.parquet"]
    ids = [i for n in names if n.endswith(".parquet") for i in pq.read_table(tmp_path / "o.parquet.parts" / n)
           .column("id").to_pylist()]
    assert ids == [i for i in range(40) if i != 3]

    ds = score_dataset(ray.data.read_parquet(src), models["embed"], task="embed", num_actors=2, num_cpus=0.5)
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)
    assert table.column("error").to_pylist()[3] is not None and table.column("embedding")[3].as_py() is None
    assert table.column("tokens").to_pylist()[0] > 0


@pytest.mark.parametrize("dtype", ["float16", "int8", "ubinary"])
def test_ray_embedding_dtypes_equal_local_bytes(models, local_ray, tmp_path, dtype):
    """--embedding-dtype on Ray: the actors quantize with the local code and, for int8, the ranges of one
    calibration task over the same head rows, so the .npy, the Parquet file and the ranges file are the
    local run's bytes (one thread on both sides, as each half-CPU actor runs)."""
    texts = _texts(40, seed=17)
    texts[2] = ""
    src = _write(tmp_path / "in.jsonl", "jsonl", _rows(texts))
    kw = dict(task="embed", window=8, normalize=True, embedding_dtype=dtype, int8_calibration_rows=12)
    local = Scorer(models["embed"], num_threads=1, **kw)
    local.score_file(src, tmp_path / "local.parquet", id_field="key", progress=False)
    local.score_file(src, tmp_path / "local.jsonl", embeddings_npy=str(tmp_path / "local.npy"), progress=False)
    score_file_ray(models["embed"], src, str(tmp_path / "ray.parquet"), id_field="key", num_actors=2,
                   num_cpus=0.5, shard_rows=16, **kw)
    score_file_ray(models["embed"], src, str(tmp_path / "ray.jsonl"), embeddings_npy=str(tmp_path / "ray.npy"),
                   num_actors=2, num_cpus=0.5, shard_rows=16, **kw)
    assert (tmp_path / "ray.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()
    assert np.load(tmp_path / "ray.npy").dtype == {"float16": np.float16, "int8": np.int8, "ubinary": np.uint8}[dtype]
    a, b = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert a.schema == b.schema and a.equals(b)
    if dtype == "int8":
        for name in ("parquet", "jsonl"):
            assert (tmp_path / f"ray.{name}.int8-ranges.npy").read_bytes() == \
                (tmp_path / f"local.{name}.int8-ranges.npy").read_bytes()
    else:
        assert not (tmp_path / "ray.parquet.int8-ranges.npy").exists()
