"""The aarch64 build of the C++ encoder, run under qemu-aarch64 by scripts/arm/check.sh.

No torch here (it does not run under qemu): ``_C`` is imported as a top-level module and fed NumPy
arrays; expected outputs were computed on x86 by the reference backend (scripts/arm/make_test_data.py,
checked there against transformers). check.sh runs this file twice, on qemu's default CPU (ARMv8.x
"max": fp16 and dot-product HWCAPs) and as a Cortex-A53 (ARMv8.0: neither), and says which through
SQF_ARM_QEMU_CPU so the HWCAP detection and the run-time ISA choice are checked against the CPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform

import numpy as np
import pytest

_C = pytest.importorskip("_C", reason="run through scripts/arm/check.sh (the aarch64 _C on PYTHONPATH)")

DATA = pathlib.Path(__file__).parent / "data"
CASES = sorted(p.stem for p in DATA.glob("*.npz"))
INFO = _C.cpu_info()
QEMU_CPU = os.environ.get("SQF_ARM_QEMU_CPU", "")
# HWCAPs each qemu CPU model advertises: (asimdhp = fp16 arithmetic, asimddp = dot product)
EXPECTED_HWCAPS = {"max": (True, True), "cortex-a76": (True, True), "cortex-a53": (False, False),
                   "cortex-a72": (False, False)}


def load_case(name: str):
    d = np.load(DATA / f"{name}.npz")
    cfg = json.loads(str(d["cfg"]))
    weights, off = {}, 0
    data = d["w.data"]
    for name_, shape in zip(d["w.names"], d["w.shapes"]):
        shp = tuple(int(s) for s in str(shape).split("x"))
        n = int(np.prod(shp))
        weights[str(name_)] = (data[off:off + n].astype(np.float32) / 64).reshape(shp)
        off += n
    assert off == data.size, f"{name}: weight blob has {data.size - off} unread values"
    inputs = {k[3:]: d[k] for k in d.files if k.startswith("in.")}
    expected = {k[4:]: d[k] for k in d.files if k.startswith("out.")}
    return cfg, weights, inputs, expected


def test_native_aarch64_build():
    assert platform.machine() == "aarch64", f"expected to run under qemu-aarch64, got {platform.machine()}"
    assert {"scalar", "neon", "neon_fp16"} <= set(INFO["built_isas"]), INFO["built_isas"]
    assert not {"avx2", "avx512"} & set(INFO["built_isas"]), "x86 variants in an aarch64 build"
    assert INFO.get("neon_impl") == "native"
    assert INFO["features"]["neon"]


def test_hwcaps_and_dispatch_follow_the_cpu(monkeypatch):
    if QEMU_CPU not in EXPECTED_HWCAPS:
        pytest.fail(f"SQF_ARM_QEMU_CPU={QEMU_CPU!r}: run through scripts/arm/check.sh, which sets it to one "
                    f"of {sorted(EXPECTED_HWCAPS)}")
    fp16, dot = EXPECTED_HWCAPS[QEMU_CPU]
    assert (INFO["features"]["asimdhp"], INFO["features"]["asimddp"]) == (fp16, dot), INFO["features"]
    usable = INFO["usable_isas"]
    assert "neon" in usable
    monkeypatch.delenv("SQBERT_FAST_FORCE_CPU_ISA", raising=False)
    assert _C.default_isa() == INFO["best_isa"] == ("neon_fp16" if fp16 else "neon")
    # the best variant this CPU can run; variants needing fp16/dotprod only where the HWCAPs say so
    for isa in usable:
        if "fp16" in isa:
            assert fp16, f"{isa} usable on {QEMU_CPU}, which lacks fp16"
        if "dotprod" in isa:
            assert dot, f"{isa} usable on {QEMU_CPU}, which lacks dotprod"
    for isa in INFO["built_isas"]:
        if isa not in usable:
            monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", isa)
            with pytest.raises(ValueError, match="this CPU lacks it"):
                _C.default_isa()
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "neon")
    assert _C.default_isa() == "neon"
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "avx512")
    with pytest.raises(ValueError, match="not available"):
        _C.default_isa()


@pytest.mark.parametrize("isa", INFO["usable_isas"])
@pytest.mark.parametrize("case", CASES)
def test_encoder_matches_reference(case, isa):
    cfg, weights, x, want = load_case(case)
    enc = _C.Encoder(cfg, weights, isa)
    assert enc.isa == isa
    T, B, H = x["input_ids"].shape[0], x["cu_seqlens"].shape[0] - 1, cfg["hidden_size"]
    last = np.full((T, H), np.nan, dtype=np.float32)
    pooled = np.full((B, H), np.nan, dtype=np.float32)
    enc.forward(x["input_ids"], None, x["token_type_ids"], x["position_ids"], x["cu_seqlens"], x["key_valid"],
                last, None, None, x["pool_rows"], pooled)
    err = float(np.abs(last - want["last_hidden"]).max())
    assert err <= 1e-4, f"{case}/{isa}: last hidden state off by {err:.2e} vs the reference backend"
    err = float(np.abs(pooled - want["pooled"]).max())
    assert err <= 1e-4, f"{case}/{isa}: pooled output off by {err:.2e} vs the reference backend"


def _run_fp16(case, isa):
    cfg, weights, x, want = load_case(case)
    enc = _C.Encoder(cfg, weights, isa, fp16=True)
    T, H = x["input_ids"].shape[0], cfg["hidden_size"]
    last = np.full((T, H), np.nan, dtype=np.float32)
    enc.forward(x["input_ids"], None, x["token_type_ids"], x["position_ids"], x["cu_seqlens"], x["key_valid"],
                last)
    return float(np.abs(last - want["last_hidden"]).max())


@pytest.mark.parametrize("case", CASES)
def test_fp16_weights(case):
    """The test weights are multiples of 2^-6 below 2, exact in fp16: the portable fp16-weight path
    (fp32 FMAs) matches the fp32 reference to fp32 accuracy; neon_fp16 (fp16 FMAs, where the CPU has
    them) within fp16 activation rounding."""
    assert _run_fp16(case, "neon") <= 1e-4
    if "neon_fp16" in INFO["usable_isas"]:
        err = _run_fp16(case, "neon_fp16")
        assert 0 < err <= 2e-2, f"{case}: neon_fp16 off by {err:.2e}"
    else:
        with pytest.raises(ValueError, match="neon_fp16"):
            _C.Encoder(*load_case(case)[:2], "neon_fp16", fp16=True)
