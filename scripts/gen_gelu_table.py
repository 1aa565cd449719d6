"""Coefficients of the piecewise-cubic GELU of the AVX-512 kernels (csrc/cpu/simd.h, vgelu).
GELU(x) = 0.5 x + |x| Q(|x|) with Q(a) = 0.5 erf(a / sqrt 2); Q on [0, 5) in 16 intervals of 5/16,
a cubic in the interval's local coordinate t in [0, 1), fitted by iteratively reweighted least
squares (near-minimax). Prints the C tables and the error of the whole GELU in fp32 arithmetic.

    python scripts/gen_gelu_table.py
"""
import math

import numpy as np

N, SPAN = 16, 5.0
H = SPAN / N
erf = np.vectorize(math.erf)


def fit():
    coef = np.zeros((4, N), dtype=np.float32)
    t = np.linspace(0.0, 1.0, 2001)
    vander = np.vander(t, 4, increasing=True)
    for i in range(N):
        y = 0.5 * erf((i + t) * H / math.sqrt(2.0))
        w = np.ones_like(t)
        for _ in range(60):  # Lawson: weights grow where the error is largest
            c, *_ = np.linalg.lstsq(vander * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)
            w *= np.abs(vander @ c - y) + 1e-30
            w /= w.sum()
        coef[:, i] = c
    return coef


def gelu_table(x, coef):
    """The kernel's arithmetic, in fp32."""
    a = np.abs(x)
    f = np.minimum(a * np.float32(N / SPAN), np.float32(15.9998))
    i = f.astype(np.int32)
    t = f - i.astype(np.float32)
    q = ((coef[3][i] * t + coef[2][i]) * t + coef[1][i]) * t + coef[0][i]
    return np.float32(0.5) * x + a * q


if __name__ == "__main__":
    coef = fit()
    x = np.linspace(-40, 40, 800001).astype(np.float32)
    ref = 0.5 * x.astype(np.float64) * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))
    err = np.abs(gelu_table(x, coef) - ref)
    print(f"// max |error| {err.max():.2e} on [-40, 40] (|x| < 5: {err[np.abs(x) < 5].max():.2e})")
    for k in range(4):
        vals = [f"{v:.9e}f" for v in coef[k]]
        rows = ",\n    ".join(", ".join(vals[j:j + 4]) for j in range(0, N, 4))
        print(f"alignas(64) static const float kGeluC{k}[16] = {{\n    {rows}}};")
