"""The int8 scheme, in PyTorch: the definition every int8 kernel is tested against.

Weights (the six grouped convs of every layer): int8, symmetric, one scale per output channel, quantized
once at load: ``scale = max|w| / 127``, ``q = round(w / scale)`` (round half to even).
Activations (the input rows of each of those convs): int8, symmetric, one scale per token (row) and conv
group (the channels one group of the conv reads), quantized on the fly the same way: ``inv = 127 / max|x|``
in fp32, ``q = round(x * inv)`` (0 for an all-zero row). Per group, not per whole row: a kernel task owns one
group's slice of its rows, and a finer scale only helps accuracy. Products accumulate in int32; the result is ``acc * (row_scale * col_scale) + bias``.
Attention scores, softmax, LayerNorm, GELU, embeddings and the pooler stay fp32.

The integer part is exact everywhere: a kernel's int32 accumulators equal this module's, bit for bit,
on every ISA (x86 VNNI kernels feed unsigned activations ``q + 128`` and subtract ``128 * sum_k w`` per
column, which is the same integer).
"""

from __future__ import annotations

import torch

QMAX = 127


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, ...] float weight -> (int8 of the same shape, fp32 scale [out]): symmetric per output channel."""
    flat = w.detach().float().reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1)
    scale = amax / QMAX
    inv = torch.where(amax > 0, QMAX / amax, torch.zeros_like(amax))
    q = torch.round(flat * inv[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return q.reshape(w.shape), scale


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, K] float activations -> (int8 [T, K], fp32 scale [T]): symmetric per row, computed as the kernels do
    (one fp32 reciprocal per row, then a multiply; round half to even)."""
    x = x.float()
    amax = x.abs().amax(dim=1)
    inv = torch.where(amax > 0, QMAX / amax, torch.zeros_like(amax))
    q = torch.round(x * inv[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, amax / QMAX


def int8_grouped_linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, b: torch.Tensor,
                        groups: int) -> torch.Tensor:
    """y[:, g] = dequant(quant(x[:, g]) @ Wq_g^T) + b_g, with one activation scale per row of x[:, g]. The int32
    products are summed exactly (in float64)."""
    T, out = x.shape[0], wq.shape[0]
    xq, x_scale = quantize_rows(x.reshape(T * groups, -1))        # one scale per (row, group)
    xg = xq.double().reshape(T, groups, -1).transpose(0, 1)       # [G, T, in/G]
    wg = wq.double().reshape(groups, out // groups, -1)            # [G, out/G, in/G]
    acc = torch.bmm(xg, wg.transpose(1, 2))                        # [G, T, out/G], exact integers
    scale = x_scale.reshape(T, groups).t()[:, :, None] * w_scale.reshape(groups, 1, -1)
    y = acc.float() * scale + b.reshape(groups, 1, -1)
    return y.transpose(0, 1).reshape(T, out).to(x.dtype)
