"""The AVX-512 GELU's coefficient tables (csrc/cpu/simd.h) are the ones scripts/gen_gelu_table.py fits,
and that piecewise cubic, evaluated with the kernel's fp32 arithmetic, is within its stated error of
the exact erf GELU. The kernels themselves are checked end to end per ISA in test_cpu_kernels.py."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("gen_gelu_table", ROOT / "scripts" / "gen_gelu_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tables_in_source() -> np.ndarray:
    src = (ROOT / "csrc" / "cpu" / "simd.h").read_text()
    rows = []
    for k in range(4):
        body = re.search(r"kGeluC%d\[16\] = \{([^}]*)\}" % k, src).group(1)
        rows.append([float(v.strip().rstrip("f")) for v in body.split(",")])
    return np.array(rows, dtype=np.float32)


def test_source_tables_are_the_fitted_ones():
    gen = _script()
    # (not bitwise: the least-squares fit may differ in the last bits with another BLAS)
    np.testing.assert_allclose(_tables_in_source(), gen.fit(), rtol=1e-4, atol=1e-8)


def test_piecewise_cubic_gelu_error():
    gen = _script()
    coef = _tables_in_source()
    x = np.linspace(-40, 40, 400001).astype(np.float32)
    exact = 0.5 * x.astype(np.float64) * (1.0 + np.vectorize(math.erf)(x.astype(np.float64) / math.sqrt(2.0)))
    err = np.abs(gen.gelu_table(x, coef) - exact)
    assert err[np.abs(x) < 5].max() <= 2e-6
    assert err.max() <= 1.5e-5
    # and a wrong table would show: one coefficient off by 1e-3 breaks the bound
    bad = coef.copy()
    bad[0, 3] += 1e-3
    assert np.abs(gen.gelu_table(x, bad) - exact)[np.abs(x) < 5].max() > 2e-6
