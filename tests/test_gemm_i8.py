"""The int8 GEMM (csrc/cpu/gemm_i8.cc), every int8 variant this machine runs, against the definition in
sqbert_fast/quantization.py: the integer products bit for bit (every variant equals the float64 sum of the
reference's int8 operands), the dequantized + bias + activation result within float rounding. Shapes at,
below and above each variant's panel width (16 / 32 columns), row tile (4 / 6 / 12 rows; i8_neon_i8mm's
smmla takes rows in pairs, so odd M leaves a half-filled pair) and K step (2 / 4 / 8), up to the default
config's 3072-deep FFN conv with saturated operands. Every usable variant is parametrised, the NEON ones
through SIMDe on x86 (tests/test_neon.py requires them built).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

_C = pytest.importorskip("sqbert_fast._C")
from sqbert_fast.quantization import QMAX, quantize_rows, quantize_weight  # noqa: E402

VARIANTS = list(_C.cpu_info()["usable_int8_isas"])
SHAPES = [(1, 1, 1), (1, 16, 4), (5, 15, 3), (6, 17, 5), (9, 18, 9), (7, 31, 63), (12, 32, 64), (13, 33, 65),
          (25, 100, 192), (3, 64, 768)]


def _reference(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    q, scale = quantize_rows(torch.from_numpy(a))
    return (q.double() @ torch.from_numpy(w).double().T).numpy(), scale


def test_the_portable_variants_are_built():
    assert {"i8_scalar"} <= set(VARIANTS)
    assert _C.cpu_info()["int8_isa"] in VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_integer_products_are_exact(variant, M, N, K):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    a = rng.standard_normal((M, K)).astype(np.float32) * rng.uniform(0.1, 10, (M, 1)).astype(np.float32)
    w = rng.integers(-QMAX, QMAX + 1, (N, K)).astype(np.int8)
    ref, _ = _reference(a, w)
    assert np.array_equal(_C.int8_gemm(variant, a, w), ref.astype(np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_saturated_operands_at_ffn_depth(variant):
    """|q| = 127 everywhere and K = 3072: the largest sums int32 (and the +128 shifted u8 operand) must hold."""
    a = np.where(np.arange(3072) % 3 == 0, -1.0, 1.0).astype(np.float32)[None].repeat(3, 0)
    a[1] = 1.0
    w = np.full((40, 3072), QMAX, np.int8)
    w[1::2] = -QMAX
    ref, _ = _reference(a, w)
    assert abs(ref).max() == 3072 * 127 * 127
    out = _C.int8_gemm(variant, a, w).astype(np.float64)
    assert np.array_equal(out, ref.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("act", ["", "gelu", "gelu_new", "relu"])
def test_dequantized_result_matches_the_reference(variant, act):
    rng = np.random.default_rng(7)
    M, N, K = 13, 70, 96
    a = rng.standard_normal((M, K)).astype(np.float32)
    a[3] = 0.0  # an all-zero row: scale 0, output = bias
    wf = torch.from_numpy(rng.standard_normal((N, K)).astype(np.float32) * 0.1)
    wq, ws = quantize_weight(wf)
    b = rng.standard_normal(N).astype(np.float32)
    acc, xs = _reference(a, wq.numpy())
    want = torch.from_numpy(acc).float() * (xs[:, None] * ws[None, :]) + torch.from_numpy(b)
    fn = {"": lambda x: x, "gelu": torch.nn.functional.gelu, "relu": torch.relu,
          "gelu_new": lambda x: torch.nn.functional.gelu(x, approximate="tanh")}[act]
    want = fn(want).numpy()
    got = _C.int8_gemm(variant, a, wq.numpy(), ws.numpy(), b, act)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    assert np.allclose(got[3], fn(torch.from_numpy(b)).numpy(), atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_or_inf_in_a_row_makes_that_row_nan(variant):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 40)).astype(np.float32)
    a[1, 5] = np.nan
    a[2, 7] = np.inf
    w = rng.integers(-QMAX, QMAX + 1, (20, 40)).astype(np.int8)
    out = _C.int8_gemm(variant, a, w, np.full(20, 0.01, np.float32))
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    assert np.isfinite(out[[0, 3]]).all()


def test_bad_arguments_raise():
    a = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="unknown int8 ISA"):
        _C.int8_gemm("i8_sse9", a, np.zeros((3, 8), np.int8))
    with pytest.raises(ValueError, match="w has shape"):
        _C.int8_gemm("i8_scalar", a, np.zeros((3, 7), np.int8))
    with pytest.raises(TypeError, match="int8"):
        _C.int8_gemm("i8_scalar", a, np.zeros((3, 8), np.int16))
