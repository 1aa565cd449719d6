"""--embedding-dtype (issue 22, item 6): embed stores float32, float16, int8 or ubinary vectors as
sentence-transformers' ``quantize_embeddings`` makes them, in every output format, and resumes only with the
same dtype (and the same int8 ranges).

The float32 run is the reference: float16 must be its cast, ubinary its sign bits packed, int8 its
bucketing with the ranges of the first ``int8_calibration_rows`` rows, byte for byte; where
sentence-transformers is installed its own function must give the same bytes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sqbert_fast.cli import main as cli_main
from sqbert_fast.scoring import ResumeError, Scorer, score
from sqbert_fast.scoring.tasks import quantize_embeddings

from test_scoring import _read_output, _texts, _write, models  # noqa: F401  (the tiny checkpoints fixture)

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

try:
    from sentence_transformers.util.quantization import quantize_embeddings as st_quantize
except ImportError:  # an older layout, or not installed
    try:
        from sentence_transformers.quantization import quantize_embeddings as st_quantize
    except ImportError:
        st_quantize = None

ARROW = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "ubinary": pa.uint8()}
NUMPY = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "ubinary": np.uint8}
CALIBRATION = 20


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """One input, scored per dtype to Parquet, JSONL, CSV and .npy (normalised, as the recipe would)."""
    tmp = tmp_path_factory.mktemp("quantize")
    texts = _texts(50, seed=21)
    texts[3] = ""  # a bad row inside the calibration rows: skipped by calibration, null in no format
    src = _write(tmp / "in.jsonl", "jsonl", [{"text": t} for t in texts])
    out = {}
    for dtype in ARROW:
        scorer = Scorer(models["embed"], "embed", window=8, max_tokens=64, normalize=True, embedding_dtype=dtype,
                        int8_calibration_rows=CALIBRATION)
        paths = {fmt: str(tmp / f"{dtype}.{fmt}") for fmt in ("parquet", "jsonl", "csv")}
        for path in paths.values():
            scorer.score_file(src, path, progress=False)
        paths["npy"] = str(tmp / f"{dtype}.npy")
        scorer.score_file(src, tmp / f"{dtype}-ids.jsonl", embeddings_npy=paths["npy"], progress=False)
        out[dtype] = paths
    return texts, out


def test_each_dtype_has_its_arrow_and_numpy_type(runs):
    texts, out = runs
    for dtype, paths in out.items():
        width = 4 if dtype == "ubinary" else 32  # 32 dimensions -> 4 bytes of bits
        col = pq.read_table(paths["parquet"]).column("embedding")
        assert col.type == pa.list_(ARROW[dtype], width), dtype
        npy = np.load(paths["npy"])
        assert npy.dtype == NUMPY[dtype] and npy.shape == (49, width)
        # Parquet, JSONL, CSV and .npy hold the same vectors.
        np.testing.assert_array_equal(np.array(col.to_pylist(), dtype=NUMPY[dtype]), npy)
        for fmt in ("jsonl", "csv"):
            rows = _read_output(paths[fmt])
            assert [r["id"] for r in rows] == [str(i) for i in range(50) if i != 3] if fmt == "csv" else \
                [r["id"] for r in rows] == [i for i in range(50) if i != 3]
            values = [r["embedding"] for r in rows]
            if dtype in ("int8", "ubinary"):  # JSON integers, not floats
                assert all(isinstance(v, int) for row in values for v in row)
            np.testing.assert_array_equal(np.array(values, dtype=NUMPY[dtype]), npy)


def test_float16_and_ubinary_are_the_float32_run_cast_and_packed(runs):
    _, out = runs
    ref = np.load(out["float32"]["npy"])
    f16, bits = np.load(out["float16"]["npy"]), np.load(out["ubinary"]["npy"])
    assert f16.tobytes() == ref.astype(np.float16).tobytes()
    assert bits.tobytes() == np.packbits(ref > 0, axis=-1).tobytes()
    assert np.unpackbits(bits, axis=-1).astype(bool).tolist() == (ref > 0).tolist()  # dimension 0 = high bit
    if st_quantize is not None:
        assert bits.tobytes() == st_quantize(ref, "ubinary").tobytes()


def test_int8_ranges_come_from_the_first_rows_and_round_trip(runs):
    _, out = runs
    ref = np.load(out["float32"]["npy"])
    q = np.load(out["int8"]["npy"])
    head = ref[:CALIBRATION - 1]  # the first 20 input rows, one of which (row 3) is bad
    ranges = np.stack([head.min(0), head.max(0)])
    for fmt in ("parquet", "jsonl", "csv"):
        np.testing.assert_array_equal(np.load(out["int8"][fmt] + ".int8-ranges.npy"), ranges)
    assert q.tobytes() == quantize_embeddings(ref, "int8", ranges).tobytes()
    if st_quantize is not None:
        assert q.tobytes() == st_quantize(ref, "int8", ranges=ranges).tobytes()
    # Dequantized to bucket centres: within half a bucket for values inside the range, which every
    # calibration row's are; later rows may fall outside it and are clipped to its ends.
    step = (ranges[1] - ranges[0]) / 255
    back = ranges[0] + (q.astype(np.float32) + 128 + 0.5) * step
    assert np.abs(back[:CALIBRATION - 1] - head).max() <= step.max() / 2 + 1e-6
    inside = (ref >= ranges[0]) & (ref <= ranges[1])
    assert np.all(np.abs(back - ref)[inside] <= np.broadcast_to(step, ref.shape)[inside] / 2 + 1e-6)
    assert q.min() >= -128 and q.max() <= 127 and (q[:CALIBRATION - 1] == -128).any() and (q == 127).any()
    cos = (back * ref).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99


def test_given_int8_ranges_are_used_and_fingerprinted(models, runs, tmp_path):
    texts, out = runs
    ref = np.load(out["float32"]["npy"])
    ranges = np.stack([np.full(32, -0.5, np.float32), np.full(32, 0.5, np.float32)])
    np.save(tmp_path / "r.npy", ranges)
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in texts])
    args = ["score", models["embed"], src, str(tmp_path / "o.jsonl"), "--task", "embed", "--normalize",
            "--window", "8", "--max-tokens", "64", "--embedding-dtype", "int8", "--no-progress"]
    assert cli_main([*args, "--int8-ranges", str(tmp_path / "r.npy"), "--embeddings-npy", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").tobytes() == quantize_embeddings(ref, "int8", ranges).tobytes()
    np.testing.assert_array_equal(np.load(tmp_path / "o.jsonl.int8-ranges.npy"), ranges)
    # The iterator API: given ranges, or its own calibration on the head of the inputs.
    got = [r["embedding"] for r in score(models["embed"], texts[:6], task="embed", window=8, max_tokens=64,
                                         normalize=True, embedding_dtype="int8", embedding_ranges=ranges)
           if "embedding" in r]
    assert np.stack(got).tobytes() == quantize_embeddings(ref[:5], "int8", ranges).tobytes()
    got = [r["embedding"] for r in score(models["embed"], texts, task="embed", window=8, max_tokens=64,
                                         normalize=True, embedding_dtype="int8", int8_calibration_rows=CALIBRATION)
           if "embedding" in r]
    assert np.stack(got).tobytes() == np.load(out["int8"]["npy"]).tobytes()


def _interrupted(scorer: Scorer, src, out, after: int, **kw) -> None:
    """Run until ``after`` windows are committed, then stop as a KeyboardInterrupt would."""
    from sqbert_fast.scoring import writers

    commit, n = writers.ChunkedOutput.commit, [0]

    def stop_after(self, *a, **k):
        if n[0] == after:
            raise KeyboardInterrupt
        n[0] += 1
        commit(self, *a, **k)

    writers.ChunkedOutput.commit = stop_after
    try:
        with pytest.raises(KeyboardInterrupt):
            scorer.score_file(src, out, progress=False, **kw)
    finally:
        writers.ChunkedOutput.commit = commit


@pytest.mark.parametrize("dtype", ["int8", "ubinary"])
def test_resume_is_byte_identical_and_refuses_another_dtype(models, runs, tmp_path, dtype):
    texts, out = runs
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in texts])
    kw = dict(window=8, max_tokens=64, normalize=True, int8_calibration_rows=CALIBRATION)
    scorer = Scorer(models["embed"], "embed", embedding_dtype=dtype, **kw)
    o = tmp_path / "o.parquet"
    _interrupted(scorer, src, o, after=2)
    state = json.loads((tmp_path / "o.parquet.parts" / "state.json").read_text())
    assert state["parts"] == 2 and (state.get("embedding_ranges") is not None) == (dtype == "int8")
    other = "float16" if dtype == "int8" else "int8"
    with pytest.raises(ResumeError, match=f"embedding_dtype: was '{dtype}', now '{other}'"):
        Scorer(models["embed"], "embed", embedding_dtype=other, **kw).score_file(src, o, resume=True, progress=False)
    summary = scorer.score_file(src, o, resume=True, progress=False)
    assert summary.rows == 50 - 16
    ref = pq.read_table(out[dtype]["parquet"]).column("embedding")
    assert pq.read_table(o).column("embedding").equals(ref)
    if dtype == "int8":
        np.testing.assert_array_equal(np.load(str(o) + ".int8-ranges.npy"),
                                      np.load(out[dtype]["parquet"] + ".int8-ranges.npy"))


def test_int8_resume_uses_the_recorded_ranges_not_a_new_calibration(models, runs, tmp_path):
    """Ranges are fixed once per run: a resumed run reads them from state.json (recalibrating could differ
    if, say, the thread count changed the float32 embeddings in their last bits)."""
    texts, _ = runs
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in texts])
    scorer = Scorer(models["embed"], "embed", window=8, max_tokens=64, normalize=True, embedding_dtype="int8")
    o = tmp_path / "o.jsonl"
    _interrupted(scorer, src, o, after=1)
    state_path = tmp_path / "o.jsonl.parts" / "state.json"
    state = json.loads(state_path.read_text())
    planted = np.stack([np.full(32, -1.0), np.full(32, 1.0)]).astype(np.float32)
    state["embedding_ranges"] = planted.tolist()
    state_path.write_text(json.dumps(state))
    scorer.score_file(src, o, resume=True, progress=False)
    np.testing.assert_array_equal(np.load(str(o) + ".int8-ranges.npy"), planted)
    rows = _read_output(str(o))
    ref = np.stack([r["embedding"] for r in score(models["embed"], texts, task="embed", window=8, max_tokens=64,
                                                  normalize=True) if "embedding" in r])
    assert len(rows) == 49 and np.array([r["embedding"] for r in rows[7:]], np.int8).tobytes() == \
        quantize_embeddings(ref[7:], "int8", planted).tobytes()  # after the first window (7 rows: row 3 is bad)


def test_bad_embedding_options_are_clear_errors(models, tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in _texts(4, seed=22)])
    with pytest.raises(ValueError, match="embedding_dtype .* must be one of float32, float16, int8, ubinary"):
        Scorer(models["embed"], "embed", embedding_dtype="int4")
    with pytest.raises(ValueError, match="only applies to --task embed"):
        Scorer(models["classify"], "classify", embedding_dtype="int8")
    with pytest.raises(ValueError, match=r"shape \(2, 32\)"):
        Scorer(models["embed"], "embed", embedding_dtype="int8", embedding_ranges=np.zeros((2, 31)))
    with pytest.raises(ValueError, match="only applies to --task embed --embedding-dtype int8"):
        Scorer(models["embed"], "embed", embedding_ranges=np.zeros((2, 32)))
    with pytest.raises(ValueError, match="no valid row"):
        list(score(models["embed"], ["", " "], task="embed", embedding_dtype="int8"))
    base = ["score", models["embed"], src, str(tmp_path / "o.jsonl"), "--task", "embed", "--no-progress"]
    with pytest.raises(SystemExit) as exc:  # argparse: usage and the valid choices, exit status 2
        cli_main([*base, "--embedding-dtype", "int4"])
    assert exc.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    (tmp_path / "bad.npy").write_bytes(b"not an npy file")
    assert cli_main([*base, "--embedding-dtype", "int8", "--int8-ranges", str(tmp_path / "bad.npy")]) == 1
    assert "cannot read int8 ranges" in capsys.readouterr().err
    assert cli_main([*base, "--embedding-dtype", "int8", "--int8-calibration-rows", "0"]) == 1
    assert "int8_calibration_rows (--int8-calibration-rows) must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
