"""The reference backend: the fused ops of DESIGN.md §3 in plain PyTorch, token-major and packed.

This is the ground truth the kernel backends are tested against (besides transformers). It is
written for clarity, not speed, runs on any torch device and dtype, and has one function per
fused op with the same name as the kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..activations import activation
from ..packing import Packed
from ..quantization import int8_grouped_linear
from .base import Backend, Encoded, Runner, compute_dtype, encoder_weights

ENCODER_LN_EPS = 1e-12  # transformers' SqueezeBertLayerNorm ignores config.layer_norm_eps


def grouped_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """y[:, g] = x[:, g] @ W_g^T + b_g for a conv weight w of shape [out, in/groups, 1]."""
    T, out = x.shape[0], w.shape[0]
    if groups == 1:
        return F.linear(x, w.reshape(out, -1), b)
    xg = x.reshape(T, groups, -1).transpose(0, 1)          # [G, T, in/G]
    wg = w.reshape(groups, out // groups, -1)               # [G, out/G, in/G]
    y = torch.baddbmm(b.reshape(groups, 1, -1), xg, wg.transpose(1, 2))
    return y.transpose(0, 1).reshape(T, out)


def conv(x: torch.Tensor, w: dict, name: str, groups: int) -> torch.Tensor:
    """The grouped 1x1 conv ``layers.{i}.{short}`` of an encoder layer: ``grouped_linear`` in the compute dtype,
    or, when the conv is int8 (a ``{name}_weight_scale`` exists), ``quantization.int8_grouped_linear``:
    activations quantized per row and group on the fly, exact integer products, fp32 out."""
    scale = w.get(f"{name}_weight_scale")
    if scale is not None:
        return int8_grouped_linear(x, w[f"{name}_weight"], scale, w[f"{name}_bias"], groups)
    return grouped_linear(x, w[f"{name}_weight"], w[f"{name}_bias"], groups)


def embed_ln(p: Packed, w: dict, eps: float) -> torch.Tensor:
    x = p.inputs_embeds if p.input_ids is None else F.embedding(p.input_ids, w["word_embeddings"])
    x = x + F.embedding(p.position_ids, w["position_embeddings"]) + F.embedding(p.token_type_ids, w["token_type_embeddings"])
    return F.layer_norm(x, (x.shape[-1],), w["embeddings_ln_weight"], w["embeddings_ln_bias"], eps)


def qkv_attention(x: torch.Tensor, p: Packed, w: dict, i: int, cfg, want_scores: bool):
    H, heads = cfg.hidden_size, cfg.num_attention_heads
    d = H // heads
    q = conv(x, w, f"layers.{i}.q", cfg.q_groups)
    k = conv(x, w, f"layers.{i}.k", cfg.k_groups)
    v = conv(x, w, f"layers.{i}.v", cfg.v_groups)
    ctx = torch.empty_like(x)
    scores = []
    lowest = torch.finfo(x.dtype).min
    for b, (start, L) in enumerate(zip(p.cu_seqlens[:-1].tolist(), p.seqlens)):
        rows = slice(start, start + L)
        qb = q[rows].view(L, heads, d).transpose(0, 1)
        kb = k[rows].view(L, heads, d).transpose(0, 1)
        vb = v[rows].view(L, heads, d).transpose(0, 1)
        s = torch.matmul(qb, kb.transpose(1, 2)) / math.sqrt(d)
        masked = p.key_valid[rows] == 0
        if bool(masked.any()):
            s = s.masked_fill(masked[None, None, :], lowest)
        if want_scores:
            scores.append(s.reshape(-1))
        ctx[rows] = torch.matmul(torch.softmax(s, dim=-1), vb).transpose(0, 1).reshape(L, H)
    return ctx, (torch.cat(scores) if want_scores else None)


def attn_out_ln(ctx: torch.Tensor, residual: torch.Tensor, w: dict, i: int, cfg) -> torch.Tensor:
    y = conv(ctx, w, f"layers.{i}.post", cfg.post_attention_groups)
    return F.layer_norm(y + residual, (y.shape[-1],), w[f"layers.{i}.post_ln_weight"], w[f"layers.{i}.post_ln_bias"], ENCODER_LN_EPS)


def ffn_ln(x: torch.Tensor, w: dict, i: int, cfg) -> torch.Tensor:
    h = activation(cfg.hidden_act)(conv(x, w, f"layers.{i}.inter", cfg.intermediate_groups))
    y = conv(h, w, f"layers.{i}.out", cfg.output_groups)
    return F.layer_norm(y + x, (y.shape[-1],), w[f"layers.{i}.out_ln_weight"], w[f"layers.{i}.out_ln_bias"], ENCODER_LN_EPS)


class ReferenceRunner(Runner):
    def __init__(self, base_model):
        self.base = base_model
        self.cfg = base_model.config

    def encode(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        cfg, w = self.cfg, encoder_weights(self.base)
        if any(k.endswith("_weight_scale") for k in w):
            # int8 (also a model with some convs left in fp32, for accuracy studies): int8 weights stay int8,
            # everything else, activations included, is fp32
            w = {k: v if v.dtype == torch.int8 else v.float() for k, v in w.items()}
        else:
            dt = compute_dtype(w)  # a reduced-precision CPU model keeps non-GEMM weights in fp32
            w = {k: v.to(dt) for k, v in w.items()}
        x = embed_ln(p, w, cfg.layer_norm_eps)
        hidden, scores = [x], []
        for i in range(cfg.num_hidden_layers):
            ctx, s = qkv_attention(x, p, w, i, cfg, want_scores)
            x = ffn_ln(attn_out_ln(ctx, x, w, i, cfg), w, i, cfg)
            hidden.append(x)
            scores.append(s)
        pooled = None
        if want_pooled:
            pooled = torch.tanh(F.linear(x[p.pool_rows], w["pooler_weight"], w["pooler_bias"]))
        return Encoded(
            last_hidden=x,
            hidden_states=torch.stack(hidden) if want_hidden else None,
            scores=torch.stack(scores) if want_scores else None,
            pooled=pooled,
        )


class ReferenceBackend(Backend):
    name = "reference"

    def reasons(self, device, dtype):
        return []  # every torch dtype it is handed: float32/bfloat16/float16, and int8 (quantization.py)

    def make_runner(self, model):
        return ReferenceRunner(model)
