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
# Small batches (too few row blocks x groups to fill the GPU) also split each group's intermediate
# slices over SPLIT programs: each stores its fp32 partial output, and _split_sum_ln_kernel adds
# the partials (in a fixed order: deterministic), bias and residual, then normalises the rows.
# General path (groups differ, or a group too wide for one accumulator): the intermediate goes to
# a workspace through attn_out_ln's grouped-linear kernel, then the output conv + LayerNorm.
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attn_out_ln import grouped_linear
from .common import (INTERPRET, GroupedWeight, apply_act, autotune, bucket, cast, dot_precision, fuse_ln, gemm_chunk,
                     layer_norm_, ln_rows, mma, pack_grouped, row_range, sm_count, tile_width)

MAX_FUSED_OG = 256  # widest per-group output accumulator kept in registers

_GPU_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bt, bk, w, s in ((32, 64, 4, 3), (64, 64, 8, 3), (64, 32, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3))
]
_INTERP_CONFIG = triton.Config({"BLOCK_T": 16, "BLOCK_K": 32}, num_warps=4, num_stages=1)


@autotune(_GPU_CONFIGS, _INTERP_CONFIG, key=["T_BUCKET", "H", "I_G", "OG", "BI", "BLOCK_O", "ACT", "FUSE_LN", "SPLIT_K"])
@triton.jit
def _ffn_ln_kernel(x_ptr, wi_ptr, loi_ptr, bi_ptr, wo_ptr, bo_ptr, gamma_ptr, beta_ptr, out_ptr, part_ptr,
                   T, H, I_G, KI_PAD, KO_PAD, OG, n_groups, eps, T_BUCKET, I_PER_SPLIT, part_stride,
                   BI: tl.constexpr, BLOCK_O: tl.constexpr, ACT: tl.constexpr, FUSE_LN: tl.constexpr,
                   SPLIT_K: tl.constexpr, PREC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    rows64 = rows.to(tl.int64)
    offs_i = tl.arange(0, BI)
    offs_o = tl.arange(0, BLOCK_O)
    g_begin, g_end = row_range(n_groups, FUSE_LN)
    i_begin = 0
    i_end = I_G
    if SPLIT_K:  # this program's share of the group's intermediate slices (grid axis 2)
        i_begin = tl.program_id(2) * I_PER_SPLIT
        i_end = tl.minimum(i_begin + I_PER_SPLIT, I_G)
    for g in range(g_begin, g_end):
        acc = tl.zeros([BLOCK_T, BLOCK_O], dtype=tl.float32)
        wo_base = wo_ptr + g * KO_PAD * BLOCK_O
        for i0 in range(i_begin, i_end, BI):
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
        if SPLIT_K:
            part = part_ptr + tl.program_id(2).to(tl.int64) * part_stride
            tl.store(part + rows64[:, None] * H + cols[None, :], acc, mask=m)
        else:
            acc += tl.load(bo_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
            acc += tl.load(x_ptr + rows64[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
            tl.store(out_ptr + rows64[:, None] * H + cols[None, :], cast(acc, out_ptr.dtype.element_ty), mask=m)
    if FUSE_LN:
        tl.debug_barrier()  # the rows this program wrote are re-read by other threads of it
        ln_rows(out_ptr, gamma_ptr, beta_ptr, rows, rmask, H, eps, BLOCK_T, BLOCK_C)


@triton.jit
def _split_sum_ln_kernel(part_ptr, bo_ptr, x_ptr, gamma_ptr, beta_ptr, out_ptr, T, H, n_split, part_stride, eps,
                         BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """out = LN(sum of the n_split fp32 partials + bias + residual x), rows of [T, H]."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    rows64 = rows.to(tl.int64)
    offs = tl.arange(0, BLOCK_C)
    for c in range(0, H, BLOCK_C):
        cols = c + offs
        cmask = cols < H
        m = rmask[:, None] & cmask[None, :]
        at = rows64[:, None] * H + cols[None, :]
        acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
        for s in range(n_split):
            acc += tl.load(part_ptr + at, mask=m, other=0.0)
            at += part_stride
        acc += tl.load(bo_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        acc += tl.load(x_ptr + rows64[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows64[:, None] * H + cols[None, :], cast(acc, out_ptr.dtype.element_ty), mask=m)
    tl.debug_barrier()  # the rows this program wrote are re-read by other threads of it
    ln_rows(out_ptr, gamma_ptr, beta_ptr, rows, rmask, H, eps, BLOCK_T, BLOCK_C)


def can_fuse(hidden: int, intermediate: int, intermediate_groups: int, output_groups: int) -> bool:
    """Whether the intermediate can stay on chip: one output group per intermediate group, and
    tiles that fit (slices of >= 16 intermediate channels, a per-group output accumulator)."""
    if intermediate_groups != output_groups:
        return False
    i_g, og = intermediate // intermediate_groups, hidden // output_groups
    return i_g % 16 == 0 and max(16, triton.next_power_of_2(og)) <= MAX_FUSED_OG


def split_plan(tokens: int, inter: GroupedWeight, groups: int, fused_ln: bool, device: torch.device | None = None,
               split: int | None = None) -> tuple[int, int]:
    """(programs per group and row block, intermediate slices each) for the on-chip FFN kernel.

    Rows that one program owns whole (fused LayerNorm) are never split. Otherwise a GPU gets
    about one program per multiprocessor: a batch of 128 tokens is only 2-4 row blocks x 4 groups,
    and each of those programs would stream a whole group's weights alone. `split` forces a count."""
    slices = inter.chunks // groups
    if split is None:
        if fused_ln or INTERPRET:
            return 1, slices
        blocks = triton.cdiv(tokens, 64) * groups
        per = max(1, triton.cdiv(slices * blocks, sm_count(device)))
    else:
        per = triton.cdiv(slices, max(1, min(int(split), slices)))
    return triton.cdiv(slices, per), per


def ffn_ln(x: torch.Tensor, inter: GroupedWeight, outw: GroupedWeight, act: int, gamma: torch.Tensor,
           beta: torch.Tensor, eps: float, fused: bool, out: torch.Tensor | None = None,
           workspace: torch.Tensor | None = None, fuse: bool | None = None, split: int | None = None,
           partials: torch.Tensor | None = None) -> torch.Tensor:
    """LN(x + out_conv(act(inter_conv(x)))). `fused` says the weights were packed for the fused
    kernel (pack_ffn); otherwise `workspace` ([T, intermediate] or None) holds the intermediate.
    `split` (default: split_plan's choice) splits the fused kernel's intermediate over programs
    when rows are not owned whole (`fuse` False); `partials` (fp32, >= split * T * H elements, or
    None to allocate) holds their partial outputs."""
    T, H = x.shape
    if out is None:
        out = torch.empty_like(x)
    if not fused:
        h = grouped_linear(x, inter, act=act, out=workspace)
        return grouped_linear(h, outw, residual=x, ln=(gamma, beta, eps), out=out, fuse=fuse)
    groups = outw.chunks
    fln = fuse_ln(T, x.device) if fuse is None else fuse
    n_split, per = split_plan(T, inter, groups, fln, x.device, split=None if fln else split)
    part = out  # unused unless split
    if n_split > 1:
        need = n_split * T * H
        part = partials.view(-1)[:need] if partials is not None and partials.numel() >= need else \
            torch.empty(need, dtype=torch.float32, device=x.device)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), 1 if fln else groups, n_split)  # noqa: E731
    _ffn_ln_kernel[grid](
        x, inter.w, inter.lo, inter.bias, outw.w, outw.bias, gamma, beta, out, part,
        T, H, inter.cout // groups, inter.k_pad, outw.k_pad, outw.cw, groups, eps, bucket(T), per * inter.cw, T * H,
        BI=inter.cw, BLOCK_O=outw.block_n, ACT=act, FUSE_LN=fln, SPLIT_K=n_split > 1, PREC=dot_precision(x.dtype),
        BLOCK_C=min(triton.next_power_of_2(H), 256))
    if n_split > 1:
        _split_sum_ln_kernel[(triton.cdiv(T, 4),)](part, outw.bias, x, gamma, beta, out, T, H, n_split, T * H, eps,
                                                   BLOCK_T=4, BLOCK_C=min(triton.next_power_of_2(H), 1024))
    elif not fln:
        layer_norm_(out, gamma, beta, eps)
    return out


def pack_ffn(wi, bi, wo, bo, hidden: int, intermediate: int, intermediate_groups: int, output_groups: int):
    """(fused, inter GroupedWeight, out GroupedWeight) in the layout ffn_ln's chosen path reads."""
    fused = can_fuse(hidden, intermediate, intermediate_groups, output_groups)
    if fused:
        i_g = intermediate // intermediate_groups
        inter = pack_grouped(wi, bi, intermediate_groups, tile_width(i_g, 64))
        return True, inter, pack_grouped(wo, bo, output_groups, hidden // output_groups)
    return (False, pack_grouped(wi, bi, intermediate_groups, tile_width(intermediate // intermediate_groups)),
            pack_grouped(wo, bo, output_groups, tile_width(hidden // output_groups)))
