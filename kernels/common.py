# Shared pieces of the Triton kernels: launch-config selection, the grouped-weight packing every
# GEMM-shaped kernel reads, and the row LayerNorm that the fused epilogues end with.
#
# Packed grouped weight ("chunked" layout). A grouped 1x1 conv  y[:, g] = x[:, g] @ W_g^T + b_g  is
# cut along its output channels into chunks of CW channels (a head for Q/K/V, a GEMM tile or a
# whole group otherwise). A chunk only reads the input channels of the groups it touches, a
# contiguous range [lo, lo + width). Each chunk is stored as a dense, zero-filled [K_PAD, BLOCK_N]
# matrix (K_PAD >= width, multiple of K_ALIGN; BLOCK_N = CW rounded up to a power of two), so a
# kernel runs the same dense tile loop whether or not groups align with heads or tiles: the
# zeros stand for the connections the grouped conv does not have. With the default SqueezeBERT
# config (4 groups of 192 channels, 3 heads of 64 per group) nothing is padded.
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..activations import CANONICAL, TRITON_IDS

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
K_ALIGN = 64  # every autotuned BLOCK_K divides it
# Two bfloat16 faults of triton 3.8's interpreter, worked around under the interpreter only (the
# compiled GPU code is unchanged): tl.dot on bf16 operands returns garbage, so bf16 tiles are
# widened to fp32 first (exact: a product of two bf16 values fits in fp32, and the accumulation is
# fp32 either way); and fp32 -> bf16 casts truncate instead of rounding to nearest even, which
# doubles bf16 error, so `cast` rounds to nearest even by hand before the (then exact) cast.
_INTERPRETER_BF16 = tl.constexpr(INTERPRET)

# hidden_act name -> the kernels' activation id (sqbert_fast/activations.py holds the one table)
ACTIVATIONS = {name: TRITON_IDS[canon] for name, canon in CANONICAL.items()}
ACT_NONE = -1


def autotune(gpu_configs, interp_config, key):
    """triton.autotune over gpu_configs on a GPU; one fixed config under TRITON_INTERPRET=1."""
    if INTERPRET:
        return triton.autotune([interp_config], key=[])
    return triton.autotune(gpu_configs, key=key)


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 parity (1e-4 against transformers) needs true fp32 products, not TF32.
    return "ieee" if dtype == torch.float32 else "tf32"


def bucket(n: int) -> int:
    """Autotune key for a size that changes call to call: its power-of-two ceiling."""
    return triton.next_power_of_2(max(int(n), 16))


@dataclass
class GroupedWeight:
    w: torch.Tensor      # [chunks, k_pad, block_n]
    lo: torch.Tensor     # [chunks] int32: first input channel each chunk reads
    bias: torch.Tensor   # [cout]
    cin: int
    cout: int
    cw: int              # real output channels per chunk
    block_n: int         # cw padded to a power of two
    k_pad: int

    @property
    def chunks(self) -> int:
        return self.w.shape[0]


def pack_grouped(weight: torch.Tensor, bias: torch.Tensor, groups: int, cw: int) -> GroupedWeight:
    """Conv weight [cout, cin/groups, 1] -> chunked layout above, chunks of cw output channels."""
    cout, ig = weight.shape[0], weight.shape[1]
    cin, og = ig * groups, cout // groups
    block_n = max(16, triton.next_power_of_2(cw))
    chunks = triton.cdiv(cout, cw)
    spans = []
    for c in range(chunks):
        o0, o1 = c * cw, min(c * cw + cw, cout)
        g0, g1 = o0 // og, (o1 - 1) // og
        spans.append((o0, o1, g0, g1, g0 * ig, (g1 + 1 - g0) * ig))
    k_pad = triton.cdiv(max(s[5] for s in spans), K_ALIGN) * K_ALIGN
    w2 = weight.detach().reshape(cout, ig)
    wp = torch.zeros(chunks, k_pad, block_n, dtype=weight.dtype, device=weight.device)
    for c, (o0, o1, g0, g1, lo, _) in enumerate(spans):
        for g in range(g0, g1 + 1):
            a, b = max(o0, g * og), min(o1, (g + 1) * og)
            wp[c, g * ig - lo: g * ig - lo + ig, a - o0: b - o0] = w2[a:b].t()
    lo = torch.tensor([s[4] for s in spans], dtype=torch.int32, device=weight.device)
    return GroupedWeight(wp.contiguous(), lo, bias.detach().contiguous(), cin, cout, cw, block_n, k_pad)


def tile_width(n: int, widest: int = 128) -> int:
    """Largest power of two <= widest dividing n (so chunks do not straddle groups), at least 16."""
    w = widest
    while w > 16 and n % w:
        w //= 2
    return w


@triton.jit
def mma(a, b, acc, PREC: tl.constexpr):
    """tl.dot(a, b, acc) with fp32 accumulation (see _INTERPRETER_BF16)."""
    if _INTERPRETER_BF16:
        if a.dtype == tl.bfloat16:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def cast(x, dtype: tl.constexpr):
    """x.to(dtype), rounding to nearest even (see _INTERPRETER_BF16)."""
    if _INTERPRETER_BF16:
        if dtype == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def gemm_chunk(acc, x_ptr, rows64, rmask, cin, lo, w_base, K_PAD,
               BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """acc += x[rows, lo:lo + K_PAD] @ one packed chunk [K_PAD, BLOCK_N] (columns >= cin read as 0)."""
    offs_k = tl.arange(0, BLOCK_K)
    offs_n = tl.arange(0, BLOCK_N)
    for k in range(0, K_PAD, BLOCK_K):
        kk = lo + k + offs_k
        xk = tl.load(x_ptr + rows64[:, None] * cin + kk[None, :], mask=rmask[:, None] & (kk < cin)[None, :], other=0.0)
        wk = tl.load(w_base + (k + offs_k)[:, None] * BLOCK_N + offs_n[None, :])
        acc = mma(xk, wk, acc, PREC)
    return acc


@triton.jit
def row_range(n, FUSE_LN: tl.constexpr):
    """The output chunks this program computes: all of them when it owns whole rows, else one."""
    if FUSE_LN:
        begin = 0
        end = n
    else:
        begin = tl.program_id(1)
        end = begin + 1
    return begin, end


@triton.jit
def tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def apply_act(x, ACT: tl.constexpr):
    # x is fp32; the numbering is ACTIVATIONS above.
    if ACT == 0:
        x = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    elif ACT == 1:
        x = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    elif ACT == 2:
        x = tl.maximum(x, 0.0)
    elif ACT == 3:
        x = x * tl.sigmoid(x)
    elif ACT == 4:
        x = tanh(x)
    return x


@triton.jit
def ln_rows(y_ptr, gamma_ptr, beta_ptr, rows, rmask, N, eps, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """In-place LayerNorm of rows `rows` of the row-major [*, N] tensor y (two-pass mean/variance
    in fp32). The rows were just written by this program: callers put a barrier before."""
    offs = tl.arange(0, BLOCK_C)
    acc = tl.zeros([BLOCK_T], dtype=tl.float32)
    for c in range(0, N, BLOCK_C):
        m = rmask[:, None] & (c + offs < N)[None, :]
        acc += tl.sum(tl.load(y_ptr + rows[:, None] * N + c + offs[None, :], mask=m, other=0.0).to(tl.float32), 1)
    mean = acc / N
    acc = tl.zeros([BLOCK_T], dtype=tl.float32)
    for c in range(0, N, BLOCK_C):
        m = rmask[:, None] & (c + offs < N)[None, :]
        z = tl.load(y_ptr + rows[:, None] * N + c + offs[None, :], mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, z - mean[:, None], 0.0)
        acc += tl.sum(d * d, 1)
    rstd = 1.0 / tl.sqrt(acc / N + eps)
    for c in range(0, N, BLOCK_C):
        cm = c + offs < N
        m = rmask[:, None] & cm[None, :]
        ptrs = y_ptr + rows[:, None] * N + c + offs[None, :]
        z = tl.load(ptrs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(gamma_ptr + c + offs, mask=cm, other=0.0).to(tl.float32)
        b = tl.load(beta_ptr + c + offs, mask=cm, other=0.0).to(tl.float32)
        out = (z - mean[:, None]) * rstd[:, None] * g[None, :] + b[None, :]
        tl.store(ptrs, cast(out, y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _layer_norm_kernel(y_ptr, gamma_ptr, beta_ptr, T, N, eps, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ln_rows(y_ptr, gamma_ptr, beta_ptr, rows, rows < T, N, eps, BLOCK_T, BLOCK_C)


def layer_norm_(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """In-place row LayerNorm of y [T, N]: the epilogue of a split (not row-owning) GEMM."""
    T, N = y.shape
    block_t = 4
    block_c = min(triton.next_power_of_2(N), 1024)
    _layer_norm_kernel[(triton.cdiv(T, block_t),)](y, gamma, beta, T, N, eps, BLOCK_T=block_t, BLOCK_C=block_c)
    return y


def fuse_ln(tokens: int, device: torch.device | None = None, block_t: int = 64) -> bool:
    """Whether one program should own whole rows (GEMM + LayerNorm in one kernel).

    Owning rows serialises a row block's output tiles in one program; that only pays when
    there are enough row blocks to fill the GPU. Small batches split the output tiles across
    programs and run the LayerNorm as a second, light kernel.
    """
    if INTERPRET:
        return True  # tests pick each path explicitly
    return triton.cdiv(tokens, block_t) >= 2 * sm_count(device)


def sm_count(device: torch.device | None = None) -> int:
    """Multiprocessors of a CUDA device (the current one for None)."""
    return _sm_count(torch.cuda.current_device() if device is None or device.index is None else device.index)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count
