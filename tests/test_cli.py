"""The `sqbert-fast` console script: info and demo, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

CLI = [shutil.which("sqbert-fast") or "sqbert-fast"]


def run(*args, timeout=900):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_console_script_is_installed():
    assert shutil.which("sqbert-fast"), "pip install should put sqbert-fast on PATH"


def test_info_reports_build_cpu_and_backends():
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "ISA variants built: scalar" in r.stdout
    assert "cpu/float32      cpu        available" in r.stdout
    assert "cpu/float32      reference  available" in r.stdout
    j = run("info", "--json")
    info = json.loads(j.stdout)
    assert info["backends"]["cpu/float32"]["cpu"] == "available"
    assert info["cpu_extension"]["isa_in_use"] in info["cpu_extension"]["usable_isas"]
    # which backend auto takes on CUDA, and why: on this GPU, or (none here) on each card of the timings file
    auto = info["auto_cuda"]
    assert auto["here"] is not None or any(row["backend"] and row["reason"] for row in auto["per_card"])
    assert "auto on " in r.stdout


def _unusable_isa():
    """A known ISA this machine cannot run (x86 builds may run neon through SIMDe), else an unknown name."""
    from sqbert_fast import _C

    usable = _C.cpu_info()["usable_isas"]
    return next((i for i in ("neon", "avx512", "amx", "avx512_bf16", "avx2") if i not in usable), "sse9")


def test_info_names_forced_isa_errors(monkeypatch):
    isa = _unusable_isa()
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", isa)
    r = run("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    why = "unknown CPU ISA 'sse9'" if isa == "sse9" else f"SQBERT_FAST_FORCE_CPU_ISA={isa} is not available"
    assert why in info["cpu_extension"]["isa_in_use"]
    assert any(why in reason for reason in info["backends"]["cpu/float32"]["cpu"])


def test_demo_main_job(tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("first sentence here\nand a second, longer sentence to embed\n")
    r = run("demo", "--input", str(texts), "--repeats", "1", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    for backend in ("cpu", "reference"):
        ms, diff, cos = map(float, lines[backend][1:4])
        assert ms > 0 and diff <= 1e-4 and cos >= 0.9999


def test_no_command_prints_help():
    r = run()
    assert r.returncode == 2 and "info" in r.stdout and "convert" in r.stdout


@pytest.mark.parametrize("args", [["convert"], ["nonsense"]])
def test_bad_usage_exits_nonzero(args):
    assert run(*args).returncode != 0


@pytest.mark.parametrize("args,message", [(["--min-reps", "-1"], "argument --min-reps: must be >= 1"),
                                          (["--providers", "cpuu"], "unknown provider 'cpuu'")])
def test_bench_bad_arguments_are_usage_errors(args, message, tmp_path):
    r = run("bench", *args, "--out", str(tmp_path / "out"), timeout=120)
    assert r.returncode == 2 and f"sqbert-fast bench: error: {message}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
