"""backend="auto" on CUDA devices: ranked by the measurements in data/gpu_backend_timings.json.

No GPU needed: the device's name and compute capability (torch.cuda.get_device_name /
get_device_capability) and each backend's reasons are faked, and the timings file is the package's
or one written by the test, so each test knows which order is right and fails on the other.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from sqbert_fast import backends, cli_info, gpu_timings

FP16 = torch.float16


def _run(gpu, cap, triton_ms, cuda_ms, date="2026-01-01", dtype="float16"):
    shapes = ("1x128", "256x128", "mixed256x128")
    return dict(gpu=gpu, capability=cap, dtype=dtype, config="test", stat="median ms", source=f"test run on {gpu}",
                date=date, ms=dict(triton=dict(zip(shapes, triton_ms)), cuda=dict(zip(shapes, cuda_ms))))


@pytest.fixture
def timings_file(tmp_path, monkeypatch):
    """Writes a timings file and points the package at it."""
    def write(*runs):
        path = tmp_path / "timings.json"
        path.write_text(json.dumps(dict(schema=1, runs=list(runs))))
        monkeypatch.setattr(gpu_timings, "DATA", str(path))
        return str(path)
    return write


@pytest.fixture
def fake_gpu(monkeypatch):
    """fake_gpu(name, (major, minor), can=...): a CUDA device of that name and capability on which only
    the backends in `can` have no reasons not to run."""
    def fake(name, cap, can=("triton", "cuda", "reference")):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: cap)
        for n, b in backends.all_backends().items():
            why = [] if n in can else [f"{n} cannot run (faked)"]
            monkeypatch.setattr(b, "reasons", lambda device, dtype, why=why: list(why))
    monkeypatch.delenv("SQBERT_FAST_BACKEND", raising=False)
    return fake


def _auto(dtype=FP16):
    b, why = backends.select_with_reason("auto", "cuda", dtype)
    assert backends.choose("cuda", dtype) == (b.name, why)
    return b.name, why


@pytest.mark.parametrize("faster", ["triton", "cuda"])
def test_auto_takes_the_backend_measured_faster(timings_file, fake_gpu, faster):
    fast, slow = (1.0, 10.0, 12.0), (2.0, 20.0, 13.0)
    timings_file(_run("H100", "9.0", fast if faster == "triton" else slow, fast if faster == "cuda" else slow))
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0))
    name, why = _auto()
    assert name == faster
    assert backends.select("auto", "cuda", FP16).name == faster
    assert "fastest measured on H100" in why and "test run on H100" in why


def test_a_single_slower_shape_does_not_flip_the_order(timings_file, fake_gpu):
    # cuda wins one shape by a little, loses the others by a lot: the geometric mean decides
    timings_file(_run("H100", "9.0", (1.0, 10.0, 20.0), (3.0, 30.0, 19.0)))
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0))
    assert _auto()[0] == "triton"


def test_package_timings_pick_the_measured_fastest_on_each_card(fake_gpu):
    doc = gpu_timings.load()
    assert doc["runs"], "the package ships measurements"
    for run in doc["runs"]:
        assert run["source"] and run["dtype"] in ("float16", "bfloat16", "float32")
        shapes = set.intersection(*(set(v) for v in run["ms"].values()))
        mean = {n: math.exp(sum(math.log(v[s]) for s in shapes) / len(shapes)) for n, v in run["ms"].items()}
        major, minor = (int(x) for x in run["capability"].split("."))
        fake_gpu(f"NVIDIA {run['gpu']}", (major, minor))
        name, why = _auto(getattr(torch, run["dtype"]))
        assert name == min(mean, key=mean.get)
        assert run["gpu"] in why and run["source"] in why


def test_match_by_name_then_capability_then_family(timings_file, fake_gpu):
    timings_file(_run("H100", "9.0", (2, 20, 20), (1, 10, 10), date="2026-01-01"),   # cuda faster
                 _run("H200", "9.0", (1, 10, 10), (2, 20, 20), date="2026-02-01"),   # triton faster, newer
                 _run("A100", "8.0", (2, 20, 20), (1, 10, 10)))                      # cuda faster
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0))
    name, why = _auto()
    assert (name, "name H100" in why) == ("cuda", True)
    fake_gpu("NVIDIA H800", (9, 0))  # no name match: the newest sm_90 run
    name, why = _auto()
    assert (name, "compute capability 9.0" in why, "H200" in why) == ("triton", True, True)
    fake_gpu("NVIDIA A10", (8, 6))  # sm_86: the sm_8x family
    name, why = _auto()
    assert (name, "family sm_8x" in why, "A100" in why) == ("cuda", True, True)


def test_no_measurement_falls_back_to_triton_then_cuda_then_reference(timings_file, fake_gpu):
    timings_file(_run("A100", "8.0", (2, 20, 20), (1, 10, 10)))  # cuda measured faster, but only on sm_8x fp16
    fake_gpu("NVIDIA B200", (10, 0))
    name, why = _auto()
    assert name == "triton" and "fallback" in why
    fake_gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    assert _auto(torch.bfloat16)[0] == "triton"  # measured in fp16 only
    fake_gpu("NVIDIA B200", (10, 0), can=("cuda", "reference"))
    name, why = _auto()
    assert name == "cuda" and "triton cannot run (faked)" in why
    fake_gpu("NVIDIA B200", (10, 0), can=("reference",))
    assert _auto()[0] == "reference"


def test_measured_fastest_that_cannot_run_is_passed_over(timings_file, fake_gpu):
    timings_file(_run("H100", "9.0", (1, 10, 10), (2, 20, 20)))
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0), can=("cuda", "reference"))
    name, why = _auto()
    assert name == "cuda" and "triton cannot run (faked)" in why and "only measured backend" in why


def test_no_device_properties_fall_back(timings_file, fake_gpu, monkeypatch):
    timings_file(_run("H100", "9.0", (2, 20, 20), (1, 10, 10)))
    fake_gpu("x", (9, 0))

    def no_driver(*a, **k):
        raise RuntimeError("Found no NVIDIA driver on your system")
    monkeypatch.setattr(torch.cuda, "get_device_capability", no_driver)
    name, why = _auto()
    assert name == "triton" and "fallback" in why


def test_explicit_choice_and_env_override_keep_their_meaning(timings_file, fake_gpu, monkeypatch):
    timings_file(_run("H100", "9.0", (1, 10, 10), (2, 20, 20)))
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0))
    assert backends.select_with_reason("cuda", "cuda", FP16)[0].name == "cuda"
    monkeypatch.setenv("SQBERT_FAST_BACKEND", "cuda")
    b, why = backends.select_with_reason("auto", "cuda", FP16)
    assert b.name == "cuda" and "SQBERT_FAST_BACKEND" in why


def test_cpu_order_is_unchanged(monkeypatch):
    monkeypatch.delenv("SQBERT_FAST_BACKEND", raising=False)
    name, why = backends.choose("cpu", torch.float32)
    can = backends.available_backends("cpu", torch.float32)
    assert name == ("cpu" if "cpu" in can else "reference") and name in why


# ---- the file: merging a bench_gpu.py result ------------------------------------------------------
def _bench_doc(gpu="NVIDIA H100 80GB HBM3", cap="9.0", triton_ms=1.0, cuda_ms=2.0, cuda_ok=True):
    res = []
    for shape in ("1x128", "256x128"):
        res.append(dict(provider="transformers", shape=shape, median_ms=9.0, correct=True))
        res.append(dict(provider="triton", shape=shape, median_ms=triton_ms, correct=True))
        res.append(dict(provider="cuda", shape=shape, median_ms=cuda_ms, correct=cuda_ok))
    res.append(dict(provider="cuda", shape="mixed256x128", skipped="not built"))
    return dict(meta=dict(gpu=gpu, capability=cap, dtype="float16", reps=30, commit="abc1234", date="2026-12-01"),
                results=res)


def test_run_from_bench_keeps_only_correct_cells():
    run = gpu_timings.run_from_bench(_bench_doc(cuda_ok=False))
    assert run["ms"] == {"triton": {"1x128": 1.0, "256x128": 1.0}}
    assert run["peers_ms"] == {"transformers": {"1x128": 9.0, "256x128": 9.0}}
    assert "abc1234" in run["source"] and run["capability"] == "9.0"
    with pytest.raises(ValueError, match="capability"):
        gpu_timings.run_from_bench(dict(meta=dict(gpu="x"), results=[]))


def test_run_from_a_sqbert_fast_bench_json():
    """benchmarks/bench_gpu.py writes a `sqbert-fast bench` document: its correct fp16 rows become the run."""
    from sqbert_fast import bench

    rows = [dict(provider=p, precision="fp16", shape=s, median_ms=ms, reps=30, max_abs_diff=d)
            for p, s, ms, d in (("transformers", "1x128", 9.0, 0.02), ("triton", "1x128", 1.0, 0.01),
                                ("cuda", "1x128", 2.0, 0.5), ("triton", "256x128", 20.0, 0.01))]
    doc = bench.derive(dict(schema=bench.SCHEMA, created="2026-12-06T01:02:03", results=rows, meta=dict(
        gpu="NVIDIA H100 80GB HBM3", capability="9.0", commit="abc1234", device="cuda", timer="cuda-events",
        model_note="(random weights, default SqueezeBERT config)")))
    run = gpu_timings.run_from_bench(doc)
    assert run["ms"] == {"triton": {"1x128": 1.0, "256x128": 20.0}}  # cuda's 0.5 is over 3x transformers' 0.02
    assert run["peers_ms"] == {"transformers": {"1x128": 9.0}}
    assert (run["dtype"], run["date"], run["config"]) == ("float16", "2026-12-06",
                                                          "SqueezeBERT default config, random weights")
    assert run["stat"] == "median ms of 30 CUDA-event-timed calls" and "abc1234" in run["source"]
    doc["results"].append(dict(rows[0], precision="fp32"))
    with pytest.raises(ValueError, match="one precision"):
        gpu_timings.run_from_bench(doc)


def test_merge_command_updates_the_order(tmp_path, timings_file, fake_gpu):
    path = timings_file(_run("NVIDIA H100 80GB HBM3", "9.0", (1, 10, 10), (2, 20, 20), dtype="float16")
                        | dict(config="SqueezeBERT default config, random weights"),
                        _run("A100", "8.0", (1, 10, 10), (2, 20, 20)))
    fake_gpu("NVIDIA H100 80GB HBM3", (9, 0))
    assert _auto()[0] == "triton"
    bench = tmp_path / "bench_gpu.json"
    bench.write_text(json.dumps(_bench_doc(triton_ms=3.0, cuda_ms=2.0)))  # a new run: cuda faster
    assert gpu_timings.main(["merge", str(bench), "--into", path]) == 0
    runs = gpu_timings.load(path)["runs"]
    assert len(runs) == 2 and {r["gpu"] for r in runs} == {"NVIDIA H100 80GB HBM3", "A100"}  # replaced, not added
    name, why = _auto()
    assert name == "cuda" and "abc1234" in why


def test_info_states_what_auto_takes_on_each_card(monkeypatch, timings_file, capsys):
    timings_file(_run("H100", "9.0", (2, 20, 20), (1, 10, 10)), _run("H200", "9.0", (1, 10, 10), (2, 20, 20)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = cli_info.auto_cuda()
    assert auto["here"] is None
    took = {(r["gpu"], r["dtype"]): r["backend"] for r in auto["per_card"]}
    assert took == {("H100", "float16"): "cuda", ("H200", "float16"): "triton"}
    assert "triton, cuda, reference" in auto["fallback"]


def test_model_says_why_it_runs_where_it_runs(monkeypatch):
    import sqbert_fast as sqf
    from sqbert_fast.config import SqueezeBertConfig

    monkeypatch.delenv("SQBERT_FAST_BACKEND", raising=False)
    cfg = SqueezeBertConfig(hidden_size=32, embedding_size=32, num_attention_heads=2, intermediate_size=64,
                            num_hidden_layers=1, vocab_size=50, max_position_embeddings=16)
    m = sqf.SqueezeBertModel(cfg)
    assert m.backend_reason == backends.choose("cpu", torch.float32)[1] and m.backend in m.backend_reason
    m.set_backend("reference")
    assert m.backend_reason == "reference: asked for"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_auto_on_this_card():
    """On a real GPU: auto takes a GPU backend, by a measurement when the file has one for this card."""
    name, why = backends.choose("cuda", FP16)
    assert name in ("triton", "cuda"), why
    run, _ = gpu_timings.match_run(gpu_timings.load()["runs"], torch.cuda.get_device_name(),
                                   tuple(torch.cuda.get_device_capability()), "float16")
    assert ("measured" in why) if run is not None else ("fallback" in why), why
