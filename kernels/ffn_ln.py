# ffn_ln: grouped FFN — intermediate conv + bias + GELU, output conv + bias + residual + LayerNorm.
#
# Layout: x [T, H] token-major packed rows (also the residual); intermediate weight in the
# chunked layout of common.pack_grouped with chunks of BI channels inside one group; output weight
# with one chunk per group ([I/G padded, OG padded to a power of two]); out [T, H].
# Fusion: with intermediate_groups == output_groups == G, output group g reads only intermediate
# group g, which reads only input group g. A program takes BLOCK_T rows and a group, and for each
# BI-wide slice of that group's intermediate computes act(x_g @ Wi + bi) in registers (fp32
# accumulate, rounded to the activation dtype as the reference does) and immediately multiplies it
# into the [BLOCK_T, OG] output accumulator: the 4x wider intermediate never touches global
# memory. The epilogue adds bias and residual; with FUSE_LN the program walks all groups of its
# rows and normalises them in place (see attn_out_ln.py), else a row-LayerNorm kernel follows.
# General path (groups differ, or a group too wide for one accumulator): the intermediate goes to
# a workspace through attn_out_ln's grouped-linear kernel, then the output conv + LayerNorm.
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attn_out_ln import grouped_linear
from .common import (GroupedWeight, apply_act, autotune, bucket, cast, dot_precision, fuse_ln, gemm_chunk, layer_norm_,
                     ln_rows, mma, pack_grouped, row_range, tile_width)

MAX_FUSED_OG = 256  # widest per-group output accumulator kept in registers

_GPU_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bt, bk, w, s in ((32, 64, 4, 3), (64, 64, 8, 3), (64, 32, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3))
]
_INTERP_CONFIG = triton.Config({"BLOCK_T": 16, "BLOCK_K": 32}, num_warps=4, num_stages=1)


@autotune(_GPU_CONFIGS, _INTERP_CONFIG, key=["T_BUCKET", "H", "I_G", "OG", "BI", "BLOCK_O", "ACT", "FUSE_LN"])
@triton.jit
def _ffn_ln_kernel(x_ptr, wi_ptr, loi_ptr, bi_ptr, wo_ptr, bo_ptr, gamma_ptr, beta_ptr, out_ptr,
                   T, H, I_G, KI_PAD, KO_PAD, OG, n_groups, eps, T_BUCKET,
                   BI: tl.constexpr, BLOCK_O: tl.constexpr, ACT: tl.constexpr, FUSE_LN: tl.constexpr,
                   PREC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    rows64 = rows.to(tl.int64)
    offs_i = tl.arange(0, BI)
    offs_o = tl.arange(0, BLOCK_O)
    g_begin, g_end = row_range(n_groups, FUSE_LN)
    for g in range(g_begin, g_end):
        acc = tl.zeros([BLOCK_T, BLOCK_O], dtype=tl.float32)
        wo_base = wo_ptr + g * KO_PAD * BLOCK_O
        for i0 in range(0, I_G, BI):
            ci = (g * I_G + i0) // BI
            h = tl.zeros([BLOCK_T, BI], dtype=tl.float32)
            h = gemm_chunk(h, x_ptr, rows64, rmask, H, tl.load(loi_ptr + ci), wi_ptr + ci * KI_PAD * BI, KI_PAD,
                           BI, BLOCK_K, PREC)
            h += tl.load(bi_ptr + g * I_G + i0 + offs_i).to(tl.float32)[None, :]
            h = cast(apply_act(h, ACT), x_ptr.dtype.element_ty)
            wo = tl.load(wo_base + (i0 + offs_i)[:, None] * BLOCK_O + offs_o[None, :])
            acc = mma(h, wo, acc, PREC)
        cols = g * OG + offs_o
        cmask = offs_o < OG
        m = rmask[:, None] & cmask[None, :]
        acc += tl.load(bo_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        acc += tl.load(x_ptr + rows64[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows64[:, None] * H + cols[None, :], cast(acc, out_ptr.dtype.element_ty), mask=m)
    if FUSE_LN:
        tl.debug_barrier()  # the rows this program wrote are re-read by other threads of it
        ln_rows(out_ptr, gamma_ptr, beta_ptr, rows, rmask, H, eps, BLOCK_T, BLOCK_C)


def can_fuse(hidden: int, intermediate: int, inter_groups: int, out_groups: int) -> bool:
    """Whether the intermediate can stay on chip: one output group per intermediate group, and
    tiles that fit (slices of >= 16 intermediate channels, a per-group output accumulator)."""
    if inter_groups != out_groups:
        return False
    i_g, og = intermediate // inter_groups, hidden // out_groups
    return i_g % 16 == 0 and max(16, triton.next_power_of_2(og)) <= MAX_FUSED_OG


def ffn_ln(x: torch.Tensor, inter: GroupedWeight, outw: GroupedWeight, act: int, gamma: torch.Tensor,
           beta: torch.Tensor, eps: float, fused: bool, out: torch.Tensor | None = None,
           workspace: torch.Tensor | None = None, fuse: bool | None = None) -> torch.Tensor:
    """LN(x + out_conv(act(inter_conv(x)))). `fused` says the weights were packed for the fused
    kernel (pack_ffn); otherwise `workspace` ([T, intermediate] or None) holds the intermediate."""
    T, H = x.shape
    if out is None:
        out = torch.empty_like(x)
    if not fused:
        h = grouped_linear(x, inter, act=act, out=workspace)
        return grouped_linear(h, outw, residual=x, ln=(gamma, beta, eps), out=out, fuse=fuse)
    groups = outw.chunks
    fln = fuse_ln(T, x.device) if fuse is None else fuse
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), 1 if fln else groups)  # noqa: E731
    _ffn_ln_kernel[grid](
        x, inter.w, inter.lo, inter.bias, outw.w, outw.bias, gamma, beta, out,
        T, H, inter.cout // groups, inter.k_pad, outw.k_pad, outw.cw, groups, eps, bucket(T),
        BI=inter.cw, BLOCK_O=outw.block_n, ACT=act, FUSE_LN=fln, PREC=dot_precision(x.dtype),
        BLOCK_C=min(triton.next_power_of_2(H), 256))
    if not fln:
        layer_norm_(out, gamma, beta, eps)
    return out


def pack_ffn(wi, bi, wo, bo, hidden: int, intermediate: int, inter_groups: int, out_groups: int):
    """(fused, inter GroupedWeight, out GroupedWeight) in the layout ffn_ln's chosen path reads."""
    fused = can_fuse(hidden, intermediate, inter_groups, out_groups)
    if fused:
        i_g = intermediate // inter_groups
        inter = pack_grouped(wi, bi, inter_groups, tile_width(i_g, 64))
        return True, inter, pack_grouped(wo, bo, out_groups, hidden // out_groups)
    return (False, pack_grouped(wi, bi, inter_groups, tile_width(intermediate // inter_groups)),
            pack_grouped(wo, bo, out_groups, tile_width(hidden // out_groups)))
