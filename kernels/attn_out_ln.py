# attn_out_ln: post-attention grouped 1x1 conv + bias + residual + LayerNorm (eps 1e-12).
#
# Layout: x [T, cin] and residual [T, cout] token-major packed rows (no padding); weight in the
# chunked layout of common.pack_grouped; out [T, cout].
# Fusion: one grouped-GEMM kernel whose epilogue adds bias (+ activation) (+ residual). With
# FUSE_LN a program owns BLOCK_T whole rows: it walks every output chunk, writes the pre-norm
# rows (rounded to the activation dtype, as the reference rounds them) and normalises them in
# place after a CTA barrier, so nothing but the final rows reaches other programs. Without it
# (small T, where row blocks alone cannot fill the GPU) programs split the output chunks and a
# light row-LayerNorm kernel follows. The same kernel is ffn_ln's general path (with GELU, no
# residual, no LayerNorm) when intermediate and output groups differ.
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (ACT_NONE, GroupedWeight, apply_act, autotune, bucket, cast, dot_precision, fuse_ln, gemm_chunk,
                     layer_norm_, ln_rows, row_range)

_GPU_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bt, bk, w, s in ((32, 64, 4, 3), (64, 64, 4, 3), (64, 32, 4, 4), (64, 64, 8, 3), (128, 64, 8, 3), (128, 32, 8, 4))
]
_INTERP_CONFIG = triton.Config({"BLOCK_T": 16, "BLOCK_K": 32}, num_warps=4, num_stages=1)


@autotune(_GPU_CONFIGS, _INTERP_CONFIG, key=["T_BUCKET", "cin", "cout", "CW", "BLOCK_N", "ACT", "HAS_RES", "FUSE_LN"])
@triton.jit
def _linear_kernel(x_ptr, w_ptr, lo_ptr, bias_ptr, res_ptr, gamma_ptr, beta_ptr, out_ptr,
                   T, cin, cout, K_PAD, CW, n_chunks, eps, T_BUCKET,
                   BLOCK_N: tl.constexpr, ACT: tl.constexpr, HAS_RES: tl.constexpr, FUSE_LN: tl.constexpr,
                   PREC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    rows64 = rows.to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    c_begin, c_end = row_range(n_chunks, FUSE_LN)
    for c in range(c_begin, c_end):
        acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
        acc = gemm_chunk(acc, x_ptr, rows64, rmask, cin, tl.load(lo_ptr + c), w_ptr + c * K_PAD * BLOCK_N, K_PAD,
                         BLOCK_N, BLOCK_K, PREC)
        cols = c * CW + offs_n
        cmask = (offs_n < CW) & (cols < cout)
        m = rmask[:, None] & cmask[None, :]
        acc += tl.load(bias_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        acc = apply_act(acc, ACT)
        if HAS_RES:
            acc += tl.load(res_ptr + rows64[:, None] * cout + cols[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows64[:, None] * cout + cols[None, :], cast(acc, out_ptr.dtype.element_ty), mask=m)
    if FUSE_LN:
        tl.debug_barrier()  # the rows this program wrote are re-read by other threads of it
        ln_rows(out_ptr, gamma_ptr, beta_ptr, rows, rmask, cout, eps, BLOCK_T, BLOCK_C)


def grouped_linear(x: torch.Tensor, gw: GroupedWeight, act: int = ACT_NONE, residual: torch.Tensor | None = None,
                   ln: tuple | None = None, out: torch.Tensor | None = None, fuse: bool | None = None) -> torch.Tensor:
    """out = LN?(act?(x @ grouped W + b) + residual?); ln = (gamma, beta, eps) or None."""
    T = x.shape[0]
    if out is None:
        out = torch.empty(T, gw.cout, dtype=x.dtype, device=x.device)
    fused = ln is not None and (fuse_ln(T, x.device) if fuse is None else fuse)
    gamma, beta, eps = ln if ln is not None else (gw.bias, gw.bias, 0.0)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), 1 if fused else gw.chunks)  # noqa: E731
    _linear_kernel[grid](
        x, gw.w, gw.lo, gw.bias, residual if residual is not None else x, gamma, beta, out,
        T, gw.cin, gw.cout, gw.k_pad, gw.cw, gw.chunks, eps, bucket(T),
        BLOCK_N=gw.block_n, ACT=act, HAS_RES=residual is not None, FUSE_LN=fused,
        PREC=dot_precision(x.dtype), BLOCK_C=min(triton.next_power_of_2(gw.cout), 256))
    if ln is not None and not fused:
        layer_norm_(out, gamma, beta, eps)
    return out


def attn_out_ln(ctx: torch.Tensor, residual: torch.Tensor, post: GroupedWeight, gamma: torch.Tensor,
                beta: torch.Tensor, eps: float, out: torch.Tensor | None = None, fuse: bool | None = None) -> torch.Tensor:
    return grouped_linear(ctx, post, residual=residual, ln=(gamma, beta, eps), out=out, fuse=fuse)
