"""The aarch64 build of the C++ encoder, run under qemu-aarch64 by scripts/arm/check.sh.

No torch here (it does not run under qemu): ``_C`` is imported as a top-level module and fed NumPy
arrays; expected outputs were computed on x86 by the reference backend (scripts/arm/make_test_data.py,
checked there against transformers). check.sh runs this file twice, on qemu's default CPU (ARMv8.x
"max": fp16, dot-product and I8MM HWCAPs) and as a Cortex-A53 (ARMv8.0: none), and says which through
SQF_ARM_QEMU_CPU so the HWCAP detection and the run-time ISA choice are checked against the CPU. The int8
GEMM variants the CPU runs (i8_neon_dot: sdot, i8_neon_i8mm: smmla) must give i8_scalar's integer
products bit for bit.
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
# HWCAPs each qemu CPU model advertises: (asimdhp = fp16 arithmetic, asimddp = dot product,
# i8mm = int8 matrix multiply, HWCAP2_I8MM)
EXPECTED_HWCAPS = {"max": (True, True, True), "cortex-a76": (True, True, False),
                   "cortex-a53": (False, False, False), "cortex-a72": (False, False, False)}
# the int8 variant each feature set must get: i8mm ahead of dotprod
I8_BY_CAPS = {(True, True): "i8_neon_i8mm", (True, False): "i8_neon_dot", (False, True): "i8_neon_i8mm",
              (False, False): "i8_scalar"}


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
    fp16, dot, i8mm = EXPECTED_HWCAPS[QEMU_CPU]
    feats = INFO["features"]
    assert (feats["asimdhp"], feats["asimddp"], feats["i8mm"]) == (fp16, dot, i8mm), feats
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
    monkeypatch.delenv("SQBERT_FAST_FORCE_INT8_ISA", raising=False)
    assert {"i8_scalar", "i8_neon_dot", "i8_neon_i8mm"} <= set(INFO["built_int8_isas"]), INFO["built_int8_isas"]
    usable8 = set(INFO["usable_int8_isas"])
    assert ("i8_neon_dot" in usable8, "i8_neon_i8mm" in usable8) == (dot, i8mm), usable8
    assert _C.cpu_info()["int8_isa"] == I8_BY_CAPS[(dot, i8mm)]
    for v in set(INFO["built_int8_isas"]) - usable8:
        monkeypatch.setenv("SQBERT_FAST_FORCE_INT8_ISA", v)
        assert "this CPU lacks it" in _C.cpu_info()["int8_isa_error"]
    monkeypatch.delenv("SQBERT_FAST_FORCE_INT8_ISA", raising=False)
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


# (M, N, K): one row, odd M (a half-filled smmla row pair), N not a multiple of the 16-column panel, K not a
# multiple of 4 or 8, several 6-row tiles, the default config's FFN depth
GEMM_SHAPES = [(1, 1, 1), (1, 16, 8), (2, 17, 7), (5, 15, 3), (6, 33, 9), (7, 31, 63), (12, 32, 64), (13, 40, 65),
               (25, 100, 192), (3, 20, 3072)]


@pytest.mark.parametrize("variant", [v for v in INFO["built_int8_isas"] if v != "i8_scalar"])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_int8_gemm_matches_scalar_bit_for_bit(variant, M, N, K):
    """Every built variant: bit for bit where the CPU runs it, a ValueError (never SIGILL) where it does not."""
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    a = rng.standard_normal((M, K)).astype(np.float32) * rng.uniform(0.1, 10, (M, 1)).astype(np.float32)
    a[M // 2] = 0.0  # a row of zeros: scale 0, products 0
    w = rng.integers(-127, 128, (N, K)).astype(np.int8)
    if K == 3072:  # saturated operands: the largest int32 sums
        a[0], a[1] = 1.0, np.where(np.arange(K) % 3 == 0, -1.0, 1.0)
        w[0], w[1] = 127, -127
    want = _C.int8_gemm("i8_scalar", a, w)
    if variant not in INFO["usable_int8_isas"]:
        with pytest.raises(ValueError, match=f"int8 ISA '{variant}' is not usable here"):
            _C.int8_gemm(variant, a, w)
        return
    got = _C.int8_gemm(variant, a, w)
    assert np.array_equal(got, want), f"{variant} {M}x{N}x{K}: {int((got != want).sum())} products differ"
    if K == 3072:
        assert abs(want[0, :2]).max() == K * 127 * 127
    scales = np.full(N, 0.01, np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    assert np.allclose(_C.int8_gemm(variant, a, w, scales, bias, "gelu"),
                       _C.int8_gemm("i8_scalar", a, w, scales, bias, "gelu"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", INFO["usable_int8_isas"])
def test_int8_gemm_nan_rows(variant):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 40)).astype(np.float32)
    a[1, 5] = np.nan
    a[4, 7] = np.inf  # the last row of an odd M: alone in its smmla row pair
    w = rng.integers(-127, 128, (20, 40)).astype(np.int8)
    out = _C.int8_gemm(variant, a, w, np.full(20, 0.01, np.float32))
    assert np.isnan(out[[1, 4]]).all() and np.isfinite(out[[0, 2, 3]]).all()


def test_unknown_int8_variant_raises():
    with pytest.raises(ValueError, match="unknown int8 ISA"):
        _C.int8_gemm("i8_sse9", np.zeros((2, 8), np.float32), np.zeros((3, 8), np.int8))
