"""`sqbert-fast bench`: FLOP counter, shapes, statistics, table, JSON/--compare, and one tiny end-to-end run."""

from __future__ import annotations

import copy
import json
import os
import statistics

import pytest

from sqbert_fast import bench, peers
from sqbert_fast.config import SqueezeBertConfig

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            embedding_size=32, max_position_embeddings=64, q_groups=2, k_groups=2, v_groups=2,
            post_attention_groups=1, intermediate_groups=4, output_groups=2)


def test_encoder_flops_hand_count():
    c = SqueezeBertConfig(**TINY)
    # per token per layer, 2 FLOPs per multiply-add, in_per_group * out each:
    #   q, k, v: (32/2) * 32 * 2 = 1024 each -> 3072;  post: 32 * 32 * 2 = 2048
    #   intermediate: (32/4) * 64 * 2 = 1024;  output: (64/2) * 32 * 2 = 2048   -> 8192
    # attention, per token: 4 * L * d * heads = 4 * L * 32
    per_layer = 10 * 8192 + 4 * 10 * 10 * 32 + 3 * 8192 + 4 * 3 * 3 * 32
    assert bench.encoder_flops(c, [10, 3]) == 2 * per_layer


def test_encoder_flops_default_config_matches_matmul_count():
    c = SqueezeBertConfig()  # 768 hidden, groups 4/4/4/1/4/4, 3072 intermediate, 12 layers
    L = 128
    macs_per_token = 3 * 768 * 192 + 768 * 768 + 3072 * 192 + 768 * 768
    expect = 12 * L * (2 * macs_per_token + 4 * L * 768)
    assert bench.encoder_flops(c, [L]) == expect


def test_parse_shapes_and_mixed_lengths():
    shapes = bench.parse_shapes("1x32, 8x128,mixed4x64", max_len=512)
    assert [(s.batch, s.seq, s.mixed) for s in shapes] == [(1, 32, False), (8, 128, False), (4, 64, True)]
    mixed = shapes[2]
    lens = mixed.seqlens()
    assert len(lens) == 4 and max(lens) == 64 and min(lens) == 8 and len(set(lens)) > 1
    ids, mask = mixed.inputs(vocab_size=50)
    assert ids.shape == (4, 64) and mask.sum(1).tolist() == lens
    assert (ids[mask == 0] == 0).all() and (ids[mask == 1] > 0).all()
    with pytest.raises(ValueError, match="bad shape"):
        bench.parse_shapes("8by128")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        bench.parse_shapes("1x1024", max_len=512)


def test_parse_providers():
    cells = bench.parse_providers("cpu, openvino:default,cpu:fp32", ["fp32", "bf16"])
    assert cells == [("cpu", "fp32"), ("cpu", "bf16"), ("openvino", "default")]


def test_percentile_and_summary():
    assert bench.percentile([1, 2, 3, 4, 5], 50) == 3
    assert bench.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)
    s = bench.summarize([0.003, 0.001, 0.002])
    assert s["median_ms"] == pytest.approx(2.0) and s["min_ms"] == pytest.approx(1.0) and s["reps"] == 3


def test_format_table_aligns_columns():
    t = bench.format_table(["name", "x", "ms"], [["a", "b", "1.5"], ["long name", "c", "12.25"]], "llr")
    lines = t.splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert lines[1].startswith("|:") and lines[1].endswith(":|")
    assert lines[3] == "| long name | c | 12.25 |"
    assert lines[2].endswith("|   1.5 |")


def _doc(medians: dict, diffs: dict | None = None) -> dict:
    """A minimal bench document: medians[(provider, precision, shape)] = ms."""
    results = []
    for (prov, prec, shape), ms in medians.items():
        results.append({"provider": prov, "precision": prec, "shape": shape, "batch": 1, "seq": 8, "mixed": False,
                        "tokens": 8, "median_ms": ms, "p90_ms": ms * 1.1, "mean_ms": ms, "min_ms": ms, "reps": 5,
                        "first_call_s": 0.1, "seq_per_s": 1e3 / ms, "gflop": 1.0, "gflops": 1e3 / ms,
                        "max_abs_diff": (diffs or {}).get((prov, prec, shape), 1e-6)})
    peak = {"theoretical": {"gflops": {"fp32": 2000.0, "bf16": 16000.0}, "basis": {}},
            "kernel": {"fp32": 1000.0, "bf16": 4000.0, "isa": "amx"}}
    return {"schema": bench.SCHEMA, "meta": {"cpu_model": "x", "threads": 2, "device": "cpu", "peak": peak},
            "setup": [], "unavailable": [], "results": results}


def test_derive_ratios_peak_and_tolerance():
    doc = bench.derive(_doc({("transformers", "fp32", "s"): 10.0, ("transformers", "bf16", "s"): 8.0,
                             ("onnxruntime", "fp32", "s"): 4.0, ("cpu", "fp32", "s"): 2.0, ("cpu", "bf16", "s"): 1.0},
                            diffs={("transformers", "bf16", "s"): 0.01, ("cpu", "bf16", "s"): 0.05,
                                   ("cpu", "fp32", "s"): 1e-3}))
    r = {(x["provider"], x["precision"]): x for x in doc["results"]}
    assert r["cpu", "fp32"]["speedup_vs_eager"] == pytest.approx(5.0)
    assert r["cpu", "fp32"]["speedup_vs_best_peer"] == pytest.approx(2.0)
    assert r["cpu", "fp32"]["best_peer"] == "onnxruntime:fp32"
    assert r["cpu", "fp32"]["pct_peak"] == pytest.approx(100 * 500 / 2000)  # of the theoretical peak
    assert r["cpu", "fp32"]["pct_kernel_peak"] == pytest.approx(100 * 500 / 1000)  # of our kernel's
    assert r["cpu", "bf16"]["pct_peak"] == pytest.approx(100 * 1000 / 16000)
    assert r["cpu", "bf16"]["pct_kernel_peak"] == pytest.approx(100 * 1000 / 4000)
    assert r["cpu", "fp32"]["ok"] is False          # 1e-3 > fp32 tolerance 1e-4: a fast wrong result
    assert r["cpu", "bf16"]["ok"] is False          # 0.05 > 3 x transformers' own bf16 error (0.01)
    assert r["onnxruntime", "fp32"]["ok"] is True
    table = bench.results_table(doc)
    assert "FAIL" in table and "onnxruntime" in table and "5.00" in table


def test_compare_flags_regressions_and_json_roundtrip(tmp_path):
    old = _doc({("cpu", "fp32", "1x8"): 10.0, ("cpu", "fp32", "8x8"): 20.0, ("reference", "fp32", "1x8"): 50.0})
    new = _doc({("cpu", "fp32", "1x8"): 12.0, ("cpu", "fp32", "8x8"): 10.0, ("triton", "fp32", "1x8"): 5.0})
    new["meta"]["threads"] = 4
    text, rows = bench.compare(old, new, threshold=0.1)
    verdicts = {(r["provider"], r["shape"]): r["verdict"] for r in rows}
    assert verdicts == {("cpu", "1x8"): "REGRESSION", ("cpu", "8x8"): "faster", ("triton", "1x8"): "new",
                        ("reference", "1x8"): "missing"}
    assert "+20.0%" in text and "-50.0%" in text and "threads differs" in text
    _, rows = bench.compare(old, copy.deepcopy(old))
    assert {r["verdict"] for r in rows} == {"same"}

    # the CLI path: --compare OLD --current NEW without running anything
    po, pn = tmp_path / "old.json", tmp_path / "new.json"
    po.write_text(json.dumps(old))
    pn.write_text(json.dumps(new))
    from sqbert_fast.cli import main

    assert main(["bench", "--compare", str(po), "--current", str(pn), "--quiet"]) == 0
    assert main(["bench", "--compare", str(po), "--current", str(pn), "--fail-on-regression", "--quiet"]) == 1
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a sqbert-fast bench JSON"):
        main(["bench", "--compare", str(tmp_path / "bad.json"), "--current", str(pn)])


def test_peers_say_why_they_cannot_run():
    assert peers.reasons("onnxruntime", "bf16")  # CPU EP has no bf16 kernels
    assert "unknown provider" in peers.reasons("tensorrt")[0]
    assert peers.reasons("transformers", "fp32") == []
    with pytest.raises(peers.Unavailable, match="unknown precision"):
        peers.prepare("cpu", "/nonexistent", "int3")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return bench.random_model_dir(TINY, str(tmp_path_factory.mktemp("tiny-model")))


def test_bench_cli_end_to_end(tiny_model_dir, tmp_path, capsys):
    from sqbert_fast.cli import main

    out = tmp_path / "out"
    rc = main(["bench", "--model", tiny_model_dir, "--providers", "reference,cpu,transformers", "--precisions", "fp32",
               "--shapes", "1x8,2x16,mixed3x16", "--min-reps", "2", "--budget", "0", "--no-peak", "--threads", "1",
               "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.out
    doc = json.loads((out / "bench.json").read_text())
    assert doc["schema"] == bench.SCHEMA
    got = {(r["provider"], r["shape"]) for r in doc["results"]}
    assert got == {(p, s) for p in ("reference", "cpu", "transformers") for s in ("1x8", "2x16", "mixed3x16")}
    for r in doc["results"]:
        assert r["ok"] and r["max_abs_diff"] <= 1e-4 and r["median_ms"] > 0 and r["reps"] >= 2
    assert doc["meta"]["threads"] == 1 and "torch" in doc["meta"]["versions"]
    assert "| provider" in printed.out and "x eager" in printed.out
    assert "[shape 3/3]" in printed.err  # progress goes to stderr

    png = out / "bench.png"
    assert png.stat().st_size > 5000
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 0.01  # not a blank canvas

    # the same run again, compared with the first: every row matched
    rc = main(["bench", "--model", tiny_model_dir, "--providers", "cpu", "--precisions", "fp32", "--shapes", "1x8",
               "--min-reps", "1", "--budget", "0", "--no-peak", "--threads", "1", "--out", str(tmp_path / "again"),
               "--compare", str(out / "bench.json"), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "compared with" in text and "missing" in text  # the rows this run did not repeat


@pytest.mark.skipif(os.environ.get("SQBERT_FAST_TEST_PEERS") != "1",
                    reason="exports a model (tens of seconds); set SQBERT_FAST_TEST_PEERS=1")
@pytest.mark.parametrize("provider,precision", [("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "default")])
def test_peer_matches_transformers(tiny_model_dir, provider, precision):
    if peers.reasons(provider, precision):
        pytest.skip("; ".join(peers.reasons(provider, precision)))
    p = peers.prepare(provider, tiny_model_dir, precision, threads=1)
    ref = peers.prepare("transformers", tiny_model_dir, "fp32")
    ids, mask = bench.parse_shapes("mixed3x16")[0].inputs(TINY["vocab_size"])
    try:
        diff = (p(ids, mask).float() - ref(ids, mask).float())[mask.bool()].abs().max()
        assert diff <= (1e-4 if precision == "fp32" else 0.05)
    finally:
        if p.close:
            p.close()


def _front_end(name: str):
    """benchmarks/NAME.py as a module: a front end of sqbert_fast.bench (its DEFAULTS, then bench.main)."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench_args(argv):
    from sqbert_fast.cli import build_parser

    return build_parser().parse_args(["bench", *argv])


def test_paired_ratio():
    # the machine slows 2x in rounds 3-4, for both: each round's ratio stays 1.5
    mine, peer = [10, 10, 20, 20, 10], [15, 15, 30, 30, 15]
    assert bench.paired_ratio(mine, peer) == pytest.approx((1.5, 1.5, 1.5))
    med, q1, q3 = bench.paired_ratio([10, 10, 10, 10], [10, 12, 14, 20])
    assert med == pytest.approx(1.3) and q1 < med < q3
    assert bench.paired_ratio([4.0], [6.0]) == (1.5, 1.5, 1.5)


def test_derive_pairs_rounds_and_the_report_shows_them():
    doc = _doc({("cpu", "fp32", "s"): 10.0, ("onnxruntime", "fp32", "s"): 15.0, ("openvino", "fp32", "s"): 12.0})
    rounds = {"cpu": [10, 10, 20, 20, 10], "onnxruntime": [15, 15, 30, 30, 15], "openvino": [12, 12, 24]}
    for r in doc["results"]:
        r["round_ms"] = rounds[r["provider"]]
    r = {x["provider"]: x for x in bench.derive(doc)["results"]}
    # openvino's rounds do not line up with ours (3 against 5): no per-round ratio rather than a wrong one
    assert r["cpu"]["per_round_vs_peers"] == {"onnxruntime:fp32": pytest.approx([1.5, 1.5, 1.5])}
    assert "per_round_vs_peers" not in r["onnxruntime"]  # a peer is not compared with peers
    text = bench.report_text(doc)
    assert "cpu:fp32 s over onnxruntime:fp32 1.50x (per round 1.50x, 1.50-1.50)" in text


def test_bench_cpu_front_end_is_the_fair_cpu_method():
    fe = _front_end("bench_cpu")
    a = _bench_args(fe.DEFAULTS)
    assert (a.gap_ms, a.settle, a.reps, a.threads, a.memory, a.random_weights) == (100.0, 1, 30, 2, True, True)
    assert a.shapes == "1x32,1x128,8x128,1x512,mixed32x128" and a.precisions == "fp32,bf16"
    assert "onnxruntime:fp32" in a.providers.split(",") and a.timer == "wall" and a.device == "cpu"
    assert a.ort_spinning == "default"  # every engine keeps its own defaults; the gap absorbs the spinning
    b = _bench_args(fe.DEFAULTS + ["--reps", "10", "--precisions", "fp32"])  # options given override the defaults
    assert (b.reps, b.precisions, b.gap_ms) == (10, "fp32", 100.0)


def test_bench_cpu_front_end_runs_with_overrides(tiny_model_dir, tmp_path):
    rc = _front_end("bench_cpu").main(["--model", tiny_model_dir, "--providers", "cpu,transformers", "--precisions",
                                       "fp32", "--shapes", "1x8", "--reps", "2", "--no-peak", "--threads", "1",
                                       "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["meta"]["model_dir"] == os.path.abspath(tiny_model_dir)  # --model wins over --random-weights
    assert (doc["meta"]["gap_ms"], doc["meta"]["settle"]) == (100.0, 1)  # the defaults it did not override
    assert doc["meta"]["weight_memory"][0]["packed_bytes"] > 0
    assert {r["reps"] for r in doc["results"]} == {2} and "per_round_vs_peers" in doc["results"][0]


def test_bench_gpu_front_end_times_by_cuda_events():
    fe = _front_end("bench_gpu")
    a = _bench_args(fe.DEFAULTS)
    assert (a.device, a.timer, a.precisions, a.warmup, a.reps, a.profile) == ("cuda", "cuda-events", "fp16", 5, 30,
                                                                               "256x128")
    assert a.shapes.split(",") == list(bench.GPU_TARGET_SHAPES)
    assert a.providers.split(",") == ["transformers", "torch.compile", "triton", "cuda"]


@pytest.mark.parametrize("args,message", [
    (["--timer", "cuda-events"], "--timer cuda-events times GPU work: use it with --device cuda"),
    (["--timer", "cuda-events", "--device", "cuda"], "--timer cuda-events needs a CUDA device"),
    (["--timer", "gpu"], "argument --timer: invalid choice: 'gpu'"),
    (["--shapes", "1x8", "--profile", "8x8"], "--profile 8x8: not one of the shapes (1x8)"),
])
def test_timer_and_new_options_fail_cleanly(args, message, tmp_path, capsys):
    import torch

    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA error cannot happen here")
    with pytest.raises(SystemExit) as e:
        bench.main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"sqbert-fast bench: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bench_gpu_on_a_machine_without_cuda_says_so(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        _front_end("bench_gpu").main(["--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert "--timer cuda-events needs a CUDA device, and torch.cuda.is_available() is False" in capsys.readouterr().err
    with pytest.raises(ValueError, match="use it with --device cuda"):  # the library call says it too
        bench.run_benchmark("/nonexistent", [("cpu", "fp32")], bench.parse_shapes("1x8"), threads=1, timer="cuda-events")


def test_gpu_targets():
    def row(p, s, ms, ok=True):
        return dict(provider=p, precision="fp16", shape=s, median_ms=ms, seq_per_s=int(s.split("x")[0][-3:]) / ms * 1e3,
                    ok=ok)

    res = [row("transformers", "1x128", 12.0), row("triton", "1x128", 0.25), row("cuda", "1x128", 0.3),
           row("torch.compile", "256x128", 30.0), row("triton", "256x128", 25.0, ok=False), row("cuda", "256x128", 20.0),
           dict(provider="triton", precision="fp16", shape="mixed256x128", error="FAILED")]
    got = {(t["provider"], t["shape"], t.get("faster_than"), t.get("max_ms")): t["ok"] for t in bench.check_targets(res)}
    assert got[("triton", "1x128", None, 0.35)] is True
    assert got[("triton", "256x128", "torch.compile", None)] is False  # 1.2x < 2x, and the output is wrong
    assert got[("triton", "mixed256x128", "torch.compile", None)] is None  # not run
    assert got[("cuda", "1x128", "triton", None)] is False  # slower than triton
    assert got[("cuda", "256x128", "triton", None)] is True  # faster than triton
    doc = bench.derive(_doc({("transformers", "fp16", "1x128"): 12.0, ("triton", "fp16", "1x128"): 0.25}))
    doc["meta"]["device"] = "cuda"  # a run on a GPU reports the targets
    text = bench.report_text(doc)
    assert "target triton 1x128 <= 0.35 ms: 0.250 -> PASS" in text and "target cuda 1x128 >= 1.0x triton: not run" in text


def test_warmup_memory_profile_and_rounds_in_a_run(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = bench.main(["--model", tiny_model_dir, "--providers", "cpu,transformers", "--precisions", "fp32",
                     "--shapes", "1x8,mixed3x16", "--reps", "4", "--warmup", "2", "--memory", "--profile", "1x8",
                     "--no-peak", "--threads", "1", "--quiet", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = json.loads((out / "bench.json").read_text())
    assert doc["meta"]["warmup"] == 2 and doc["meta"]["timer"] == "wall"
    rows = {(r["provider"], r["shape"]): r for r in doc["results"]}
    for r in rows.values():  # --reps: exactly that many rounds, each timed call kept
        assert r["reps"] == len(r["round_ms"]) == 4 and r["median_ms"] == pytest.approx(statistics.median(r["round_ms"]),
                                                                                          rel=1e-3)
    assert set(rows["cpu", "mixed3x16"]["per_round_vs_peers"]) == {"transformers:fp32"}
    mem = doc["meta"]["weight_memory"]
    assert [m["precision"] for m in mem] == ["fp32"] and mem[0]["parameter_bytes"] > 0
    assert mem[0]["packed_bytes"] > 0 and mem[0]["total_over_parameters"] > 1.0
    assert list(doc["profiles"]) == ["cpu:fp32"] and "Self CPU" in doc["profiles"]["cpu:fp32"]
    assert "weight memory of a loaded model" in text and "per round" in text and "profile of cpu:fp32 at 1x8" in text


# ---- which precisions this CPU runs natively, and its peak (CPU features injected) -----------------
def _info(*features, best="avx2"):
    names = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "amx_permitted", "avx512_vnni", "avx_vnni", "neon", "asimdhp", "asimddp")
    return {"vendor": "", "features": {n: n in features for n in names}, "best_isa": best, "neon_impl": "simde"}


AVX2 = ("avx2", "fma")
AMX = AVX2 + ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
              "amx_permitted")
ZEN1_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\ncpu MHz\t\t: 2000.000\n\n"
INTEL_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\ncpu MHz\t\t: 1900.0\n\n"
QUICK_CELLS = bench.parse_providers(",".join(bench.QUICK_PROVIDERS), ["fp32", "bf16"])


def _caps(features, cpuinfo, forced=None, best="avx2"):
    return bench.cpu_caps(info=_info(*features, best=best), cpuinfo_text=cpuinfo, forced=forced)


def test_avx2_only_cpu_runs_no_bf16():
    caps = _caps(AVX2, ZEN1_CPUINFO)
    keep, skipped = bench.select_cells(QUICK_CELLS, caps)
    assert not [c for c in keep if c[1] not in ("fp32", "int8") and c[0] not in ("cuda", "triton")]
    why = {(s["provider"], s["precision"]): s["reason"] for s in skipped}
    for cell in (("cpu", "bf16"), ("transformers", "bf16")):
        assert why[cell] == "skipped: bf16 would be emulated on this CPU (no AVX512-BF16/AMX)"
    # openvino's own default is fp32 on such a CPU: a second openvino:fp32 run, left out and said so
    assert bench.openvino_default_precision(caps) == "fp32"
    assert "default precision here is fp32, the same run as openvino:fp32" in why[("openvino", "default")]
    assert ("openvino", "fp32") in keep and ("onnxruntime", "fp32") in keep and ("cpu", "fp32") in keep
    # asked for alone, openvino:default runs (and is fp32)
    assert bench.select_cells([("openvino", "default")], caps)[0] == [("openvino", "default")]
    assert ("cuda", "bf16") not in why  # GPU providers say themselves why they cannot run on a CPU


def test_int8_rows_where_the_cpu_has_int8_dot_products():
    """int8 runs (ours and the int8 peers) on any x86 CPU with AVX2 (vpmaddwd) or VNNI/AMX-INT8, and on ARM
    with the dot product extension; elsewhere our int8 would be the scalar variant: left out, saying why."""
    cells = bench.parse_providers(",".join(bench.QUICK_PROVIDERS), ["fp32", "int8"])
    for caps in (_caps(AVX2, ZEN1_CPUINFO), _caps(AMX, INTEL_CPUINFO, best="amx")):
        keep, skipped = bench.select_cells(cells, caps)
        assert {("cpu", "int8"), ("onnxruntime", "int8"), ("openvino", "int8")} <= set(keep)
    keep, skipped = bench.select_cells(cells, _caps((), INTEL_CPUINFO, best="scalar"))
    why = {(s["provider"], s["precision"]): s["reason"] for s in skipped}
    assert why[("cpu", "int8")] == "skipped: int8 would run the scalar variant on this CPU (no AVX2/VNNI/AMX-INT8)"
    arm = bench.cpu_caps(info=_info("neon", best="neon"), cpuinfo_text="processor\t: 0\nFeatures\t: fp asimd\n\n",
                         forced=None)
    assert "no NEON dot product" in arm.emulated("int8")
    arm_dot = bench.cpu_caps(info=_info("neon", "asimddp", best="neon"), cpuinfo_text="", forced=None)
    assert arm_dot.emulated("int8") is None and bench.flops_per_cycle(arm_dot)["int8"][0] == 64
    assert peers.reasons("transformers", "int8") and "no int8 recipe" in peers.reasons("torch.compile", "int8")[0]
    assert all("is not installed" in r for r in peers.reasons("onnxruntime", "int8"))  # int8 is in its recipes


def test_derive_compares_each_precision_with_its_own_peers():
    doc = bench.derive(_doc({("openvino", "int8", "s"): 3.0, ("onnxruntime", "int8", "s"): 6.0,
                             ("openvino", "bf16", "s"): 2.0, ("cpu", "int8", "s"): 1.5, ("cpu", "fp32", "s"): 4.0,
                             ("onnxruntime", "fp32", "s"): 5.0}, diffs={("cpu", "int8", "s"): 0.3}))
    r = {(x["provider"], x["precision"]): x for x in doc["results"]}
    assert r["cpu", "int8"]["speedup_vs_best_peer"] == pytest.approx(2.0 / 1.5)  # openvino:bf16, any precision
    assert r["cpu", "int8"]["speedup_vs_best_peer_same_precision"] == pytest.approx(2.0)
    assert r["cpu", "int8"]["best_peer_same_precision"] == "openvino:int8"
    assert r["cpu", "fp32"]["speedup_vs_best_peer_same_precision"] == pytest.approx(5.0 / 4.0)
    assert r["cpu", "int8"]["ok"] is True and r["cpu", "int8"]["tol"] == bench.TOL["int8"]
    assert "x peer same prec" in bench.results_table(doc)


def test_markdown_table_from_a_bench_json(tmp_path, capsys):
    doc = _doc({("cpu", "int8", "1x8"): 1.5, ("openvino", "int8", "1x8"): 3.0, ("cpu", "fp32", "1x8"): 4.0,
                ("onnxruntime", "fp32", "1x8"): 5.0, ("cpu", "int8", "8x8"): 10.0, ("openvino", "int8", "8x8"): 15.0,
                ("openvino", "default", "1x8"): 2.5})
    doc["results"][-1]["actual_precision"] = "bf16"
    doc["meta"].update({"isa": {"in_use": "avx2"}, "loadavg_start": [0.5], "model_dir": "/x/minilm"})
    doc["setup"] = [{"provider": "cpu", "precision": "int8", "setup_s": {}, "notes": ["isa=avx2", "int8=i8_avx2, attention fp32"]}]
    doc["created"] = "2026-12-05T00:00:00"
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    from sqbert_fast.cli import main

    assert main(["bench", "--markdown", str(path)]) == 0
    text = capsys.readouterr().out
    head, table = text.split("\n\n", 1)
    assert head.startswith("x, ISA avx2, int8 i8_avx2, 2 threads, load 0.5, minilm (2026-12-05)")
    lines = table.strip().splitlines()
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    assert cols[:7] == ["shape", "cpu int8", "openvino int8", "cpu fp32", "onnxruntime fp32",
                        "openvino default (bf16)", "cpu int8: x best int8 peer"]
    row1 = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row1[0] == "1x8" and row1[1] == "1.5" and row1[6] == "2.00" and row1[7] == "1.25"  # 3.0/1.5, 5.0/4.0
    row2 = [c.strip() for c in lines[3].strip("|").split("|")]
    assert row2[:3] == ["8x8", "10", "15"] and row2[3] == "-" and row2[6] == "1.50"


def test_amx_cpu_runs_bf16():
    caps = _caps(AMX, INTEL_CPUINFO, best="amx")
    keep, skipped = bench.select_cells(QUICK_CELLS, caps)
    assert {("cpu", "bf16"), ("transformers", "bf16"), ("openvino", "default")} <= set(keep)
    assert skipped == []
    assert bench.openvino_default_precision(caps) == "bf16"
    # AMX tiles present but not granted by the kernel (no arch_prctl permission): bf16 is not native
    no_perm = _caps(tuple(f for f in AMX if f not in ("amx_permitted", "avx512_bf16")), INTEL_CPUINFO, best="avx512")
    assert no_perm.emulated("bf16")


def test_forced_isa_behaves_as_that_cpu(monkeypatch):
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "avx2")
    caps = bench.cpu_caps(info=_info(*AMX, best="amx"), cpuinfo_text=INTEL_CPUINFO)
    assert caps.forced == "avx2" and caps.isa == "avx2" and not caps.has("avx512f")
    cells = QUICK_CELLS + [("cpu-amx", "fp32"), ("cpu-avx2", "fp32")]
    keep, skipped = bench.select_cells(cells, caps)
    why = {(s["provider"], s["precision"]): s["reason"] for s in skipped}
    assert why[("transformers", "bf16")].endswith("(no AVX512-BF16/AMX; SQBERT_FAST_FORCE_CPU_ISA=avx2)")
    assert "above the forced SQBERT_FAST_FORCE_CPU_ISA=avx2" in why[("cpu-amx", "fp32")]
    assert ("cpu-avx2", "fp32") in keep and ("openvino", "default") in why
    assert bench.flops_per_cycle(caps)["fp32"] == (32, "AVX2, two 256-bit FMA pipes")
    assert bench.flops_per_cycle(caps)["int8"][0] == 64 and "bf16" not in bench.flops_per_cycle(caps)
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "avx512_bf16")  # bf16 dot products, no AMX
    caps = bench.cpu_caps(info=_info(*AMX, best="amx"), cpuinfo_text=INTEL_CPUINFO)
    assert caps.emulated("bf16") is None and bench.flops_per_cycle(caps)["bf16"][0] == 128


def test_theoretical_peak_per_cpu_kind():
    zen1 = bench.theoretical_peak(_caps(AVX2, ZEN1_CPUINFO), cores=2, ghz=2.0)
    # issue 18's EPYC: 2 cores x 2 GHz x 16 FLOP (fp32); int8 on vpmaddwd's two 128-bit pipes: x 32 ops
    assert zen1["gflops"] == {"fp32": pytest.approx(64.0), "int8": pytest.approx(128.0)}
    assert "Zen 1" in zen1["basis"]["fp32"]
    zen2 = ZEN1_CPUINFO.replace("model\t\t: 1\n", "model\t\t: 49\n")  # 0x31: Zen 2, 256-bit FMA pipes
    assert bench.theoretical_peak(_caps(AVX2, zen2), 2, 2.0)["gflops"]["fp32"] == pytest.approx(128.0)
    intel = bench.theoretical_peak(_caps(AVX2, INTEL_CPUINFO), cores=4, ghz=3.0)
    assert intel["gflops"] == {"fp32": pytest.approx(4 * 3.0 * 32), "int8": pytest.approx(4 * 3.0 * 64)}
    vnni = bench.theoretical_peak(_caps(AVX2 + ("avx_vnni",), INTEL_CPUINFO), cores=1, ghz=1.0)
    assert vnni["gflops"]["int8"] == pytest.approx(128) and "AVX-VNNI" in vnni["basis"]["int8"]
    amx = bench.theoretical_peak(_caps(AMX, INTEL_CPUINFO, best="amx"), cores=2, ghz=2.6)
    assert amx["gflops"]["fp32"] == pytest.approx(2 * 2.6 * 64)
    assert amx["gflops"]["bf16"] == pytest.approx(2 * 2.6 * 1024)
    assert "AMX-BF16" in amx["basis"]["bf16"]
    assert amx["gflops"]["int8"] == pytest.approx(2 * 2.6 * 2048) and "AMX-INT8" in amx["basis"]["int8"]
    assert bench.theoretical_peak(_caps(AVX2, ZEN1_CPUINFO), 2, None)["gflops"] == {"fp32": None, "int8": None}


def test_clock_sources_in_order():
    assert bench.cpu_clock_ghz("3500000\n", "", "") == (3.5, "cpufreq cpuinfo_max_freq")
    assert bench.cpu_clock_ghz("", "Model name: x\nCPU max MHz:    3000.0000\n", ZEN1_CPUINFO) == (3.0, "lscpu CPU max MHz")
    assert bench.cpu_clock_ghz("", "", ZEN1_CPUINFO) == (2.0, "/proc/cpuinfo cpu MHz")
    assert bench.cpu_clock_ghz("", "", "")[0] is None


def test_peaks_on_an_avx2_only_cpu_measure_fp32_only():
    pk = bench.measure_peaks(_caps(AVX2, INTEL_CPUINFO), threads=1, budget_s=0.0)
    assert set(pk["theoretical"]["gflops"]) == {"fp32", "int8"}
    assert pk["kernel"]["fp32"] > 0 and pk["kernel"]["int8"] > 0 and "bf16" not in pk["kernel"]
    assert set(k for k in pk["torch_matmul"] if not k.endswith("_error")) == {"fp32"}
    assert "kernel peak (ffn_ln" in bench.peak_text(pk)


@pytest.mark.parametrize("args,message", [
    (["--min-reps", "-1"], "argument --min-reps: must be >= 1, got -1"),
    (["--providers", "cpuu"], "unknown provider 'cpuu'"),
    (["--providers", "cpu:fp33"], "unknown precision 'fp33'"),
    (["--shapes", "8by128"], "bad shape '8by128'"),
    (["--threads", "0"], "argument --threads: must be >= 1"),
])
def test_bench_usage_errors_are_clean(args, message, tmp_path, capsys):
    from sqbert_fast.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", *args, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"sqbert-fast bench: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_slow_first_call_is_dropped_not_waited_on(tiny_model_dir, monkeypatch):
    import time as _time

    real_prepare = peers.prepare

    def prepare(provider, model_dir, precision="fp32", **kw):
        if provider not in ("slow", "slowish"):
            return real_prepare(provider, model_dir, precision, **kw)
        p = real_prepare("transformers", model_dir, precision)
        inner, pause = p.run, 0.4 if provider == "slow" else 0.03

        def run(ids, mask):
            _time.sleep(pause)
            return inner(ids, mask)

        p.run, p.provider = run, provider
        return p

    monkeypatch.setattr(peers, "prepare", prepare)
    shapes = bench.parse_shapes("1x8,2x16")
    cells = [("cpu", "fp32"), ("slow", "fp32"), ("slowish", "fp32")]
    doc = bench.run_benchmark(tiny_model_dir, cells, shapes, threads=1, min_reps=50,
                              budget_s=0.0, call_limit_s=0.3, shape_limit_s=0.3, peak=False, quiet=True)
    rows = {(r["provider"], r["shape"]): r for r in doc["results"]}
    assert "too slow: first call took" in rows["slow", "1x8"]["error"]
    assert ("slow", "2x16") not in rows  # dropped from later shapes, never called there
    assert "too slow" in bench.report_text(doc)
    for prov in ("cpu", "slowish"):  # the shape limit (0.3 s) cut the rounds below min_reps, after >= 1
        assert 1 <= rows[prov, "2x16"]["reps"] < 50


def test_gap_and_settle_calls_before_each_timed_call(tiny_model_dir, monkeypatch):
    """--gap-ms / --settle: each timed call follows an idle gap and `settle` untimed calls of the same engine."""
    import time as _time

    real_prepare = peers.prepare
    log = []

    def prepare(provider, model_dir, precision="fp32", **kw):
        p = real_prepare("transformers", model_dir, precision)
        inner = p.run

        def run(ids, mask):
            log.append((provider, _time.perf_counter()))
            return inner(ids, mask)

        p.run, p.provider = run, provider
        return p

    monkeypatch.setattr(peers, "prepare", prepare)
    doc = bench.run_benchmark(tiny_model_dir, [("a", "fp32"), ("b", "fp32")], bench.parse_shapes("1x8"), threads=1,
                              min_reps=3, max_reps=3, budget_s=0.0, peak=False, quiet=True, gap_ms=30, settle=2)
    assert doc["meta"]["gap_ms"] == 30 and doc["meta"]["settle"] == 2
    rows = {r["provider"]: r for r in doc["results"]}
    assert rows["a"]["reps"] == rows["b"]["reps"] == 3
    log = [(p, t) for p, t in log if p in ("a", "b")]  # not the reference outputs (transformers)
    calls = [p for p, _ in log]
    assert calls.count("a") == calls.count("b") == 1 + 3 * 3  # first call, then (2 settle + 1 timed) x 3 rounds
    timed_rounds = calls[2:]
    assert all(timed_rounds[i:i + 3] in (["a"] * 3, ["b"] * 3) for i in range(0, len(timed_rounds), 3))
    gaps = [t2 - t1 for (p1, t1), (p2, t2) in zip(log[2:], log[3:]) if p1 != p2]
    assert gaps and min(gaps) >= 0.03


def test_avx2_run_leaves_bf16_out_and_says_why(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from sqbert_fast.cli import main

    zen1 = _caps(AVX2, ZEN1_CPUINFO)
    monkeypatch.setattr(bench, "cpu_caps", lambda: zen1)
    out = tmp_path / "out"
    rc = main(["bench", "--model", tiny_model_dir, "--providers", "cpu,transformers", "--precisions", "fp32,bf16",
               "--shapes", "1x8", "--min-reps", "1", "--budget", "0", "--no-peak", "--threads", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((out / "bench.json").read_text())
    assert {r["precision"] for r in doc["results"]} == {"fp32"}
    why = {(u["provider"], u["precision"]): u["reason"] for u in doc["unavailable"]}
    assert why[("cpu", "bf16")] == why[("transformers", "bf16")] == \
        "skipped: bf16 would be emulated on this CPU (no AVX512-BF16/AMX)"
    assert "transformers:bf16: skipped: bf16 would be emulated" in text
    assert doc["meta"]["cpu_caps"]["native"] == ["fp32", "int8"]  # vpmaddwd: int8 is native on AVX2


@pytest.mark.parametrize("flag,spinning", [([], False), (["--ort-spinning", "default"], None)])
def test_engine_options_reach_the_peers(tiny_model_dir, tmp_path, monkeypatch, flag, spinning):
    real_prepare, seen = peers.prepare, []

    def prepare(provider, model_dir, precision="fp32", **kw):
        seen.append((provider, kw))
        return real_prepare(provider, model_dir, precision, **kw)

    monkeypatch.setattr(peers, "prepare", prepare)
    rc = bench.main(["--model", tiny_model_dir, "--providers", "cpu:fp32", "--shapes", "1x8", "--reps", "1", "--no-peak",
                     "--threads", "1", "--quiet", "--compile-mode", "reduce-overhead", "--out", str(tmp_path), *flag])
    assert rc == 0
    kw = dict(seen)["cpu"]
    assert kw["ort_spinning"] is spinning and kw["compile_mode"] == "reduce-overhead"
