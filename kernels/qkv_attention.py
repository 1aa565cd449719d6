# qkv_attention: grouped Q/K/V 1x1 convs fused with varlen softmax attention.
#
# Layout: x [T, H] token-major packed rows; sequences back to back, sequence b in rows
# cu_seqlens[b]:cu_seqlens[b+1] (flash-attention's varlen convention); key_valid [T] uint8 marks
# rows other queries may attend to (0 = masked key: query-only pooler row). Q/K/V weights in the
# chunked layout of common.pack_grouped with one chunk per head ([K_PAD, BLOCK_D]: the input
# channels of the groups the head reads, zero-filled where the grouped conv has no connection,
# so heads that straddle groups take the same path). ctx [T, H]; optional pre-softmax scores,
# per sequence [heads, L, L] blocks back to back at soff[b] (masked keys hold the dtype's lowest
# value, as transformers' additive mask gives).
# Fusion: a program owns (sequence, head, BLOCK_M queries). It projects its queries from x rows,
# then streams the sequence's keys in BLOCK_N blocks, projecting K and V on chip and folding them
# into an online (flash-attention) softmax with fp32 statistics: Q, K, V and the probabilities
# never reach global memory. For sequences longer than BLOCK_M the K/V projection of a block is
# recomputed by each query block — cheaper than a round trip through memory at BERT lengths.
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .common import GroupedWeight, autotune, bucket, cast, dot_precision, gemm_chunk, mma

_GPU_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in ((128, 64, 64, 8, 2), (64, 64, 64, 4, 2), (128, 32, 64, 4, 2), (64, 32, 32, 4, 3),
                             (128, 64, 32, 8, 3), (64, 64, 32, 4, 3))
]
_INTERP_CONFIG = triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32}, num_warps=4, num_stages=1)


@triton.jit
def _project(x_ptr, rows64, rmask, H, w_ptr, lo_ptr, b_ptr, head, D, K_PAD,
             BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """x[rows] @ (one head's packed weight) + bias, rounded to the activation dtype: [BLOCK_R, BLOCK_D]."""
    offs_d = tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    acc = gemm_chunk(acc, x_ptr, rows64, rmask, H, tl.load(lo_ptr + head), w_ptr + head * K_PAD * BLOCK_D, K_PAD,
                     BLOCK_D, BLOCK_K, PREC)
    acc += tl.load(b_ptr + head * D + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)[None, :]
    return cast(acc, x_ptr.dtype.element_ty)


@autotune(_GPU_CONFIGS, _INTERP_CONFIG, key=["LEN_BUCKET", "H", "D", "BLOCK_D", "WANT_SCORES"])
@triton.jit
def _qkv_attention_kernel(x_ptr, wq_ptr, loq_ptr, bq_ptr, wk_ptr, lok_ptr, bk_ptr, wv_ptr, lov_ptr, bv_ptr,
                          cu_ptr, kv_ptr, ctx_ptr, scores_ptr, soff_ptr,
                          H, D, KQ_PAD, KK_PAD, KV_PAD, sm_scale, lowest, LEN_BUCKET,
                          BLOCK_D: tl.constexpr, WANT_SCORES: tl.constexpr, PREC: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    b = tl.program_id(0)
    head = tl.program_id(1)
    m0 = tl.program_id(2) * BLOCK_M
    start = tl.load(cu_ptr + b)
    L = (tl.load(cu_ptr + b + 1) - start).to(tl.int32)
    if m0 < L:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        qmask = offs_m < L
        q = _project(x_ptr, start + offs_m, qmask, H, wq_ptr, loq_ptr, bq_ptr, head, D, KQ_PAD,
                     BLOCK_M, BLOCK_D, BLOCK_K, PREC)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        if WANT_SCORES:
            s_base = scores_ptr + tl.load(soff_ptr + b) + head.to(tl.int64) * L * L
        for n0 in range(0, L, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            nmask = offs_n < L
            k = _project(x_ptr, start + offs_n, nmask, H, wk_ptr, lok_ptr, bk_ptr, head, D, KK_PAD,
                         BLOCK_N, BLOCK_D, BLOCK_K, PREC)
            v = _project(x_ptr, start + offs_n, nmask, H, wv_ptr, lov_ptr, bv_ptr, head, D, KV_PAD,
                         BLOCK_N, BLOCK_D, BLOCK_K, PREC)
            s = mma(q, tl.trans(k), tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), PREC) * sm_scale
            valid = tl.load(kv_ptr + start + offs_n, mask=nmask, other=0) != 0
            s = tl.where(valid[None, :], s, lowest)
            if WANT_SCORES:
                tl.store(s_base + offs_m[:, None] * L + offs_n[None, :], cast(s, scores_ptr.dtype.element_ty),
                         mask=qmask[:, None] & nmask[None, :])
            s = tl.where(nmask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = mma(cast(p, v.dtype), v, acc * alpha[:, None], PREC)
            m_i = m_new
        out = acc / l_i[:, None]
        rows64 = (start + offs_m).to(tl.int64)
        tl.store(ctx_ptr + rows64[:, None] * H + head * D + offs_d[None, :], cast(out, ctx_ptr.dtype.element_ty),
                 mask=qmask[:, None] & (offs_d < D)[None, :])


def qkv_attention(x: torch.Tensor, cu_seqlens: torch.Tensor, key_valid: torch.Tensor, max_len: int,
                  q: GroupedWeight, k: GroupedWeight, v: GroupedWeight, heads: int,
                  ctx: torch.Tensor | None = None, scores: torch.Tensor | None = None,
                  soff: torch.Tensor | None = None) -> torch.Tensor:
    """ctx = softmax(Q K^T / sqrt(d) + mask) V per sequence and head; fills `scores` (with soff
    from Packed.score_offsets, on the device) with the pre-softmax scores when it is given."""
    T, H = x.shape
    d = H // heads
    if ctx is None:
        ctx = torch.empty_like(x)
    want = scores is not None
    B = cu_seqlens.numel() - 1
    grid = lambda meta: (B, heads, triton.cdiv(max_len, meta["BLOCK_M"]))  # noqa: E731
    _qkv_attention_kernel[grid](
        x, q.w, q.lo, q.bias, k.w, k.lo, k.bias, v.w, v.lo, v.bias, cu_seqlens, key_valid, ctx,
        scores if want else ctx, soff if want else cu_seqlens,
        H, d, q.k_pad, k.k_pad, v.k_pad, 1.0 / math.sqrt(d), torch.finfo(x.dtype).min, bucket(max_len),
        BLOCK_D=q.block_n, WANT_SCORES=want, PREC=dot_precision(x.dtype))
    return ctx
