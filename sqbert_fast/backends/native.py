"""What the two native backends share: one Encoder contract (DESIGN.md §3).

``sqbert_fast._C.Encoder`` (cpu) and ``sqbert_fast._C_cuda.Encoder`` (cuda) are built from the same config
dict and take ``forward()`` arguments by the same signature (``csrc/bindings/py_common.h``): the packed
inputs, the output buffers the kernels write into, then ``max_len``, ``score_offsets``, ``workspace`` and
``stream`` as keywords (the CUDA encoder needs them, since it reads nothing back from the device; the CPU
one checks them when given). Arrays are NumPy arrays or torch tensors, zero copy.

``NativeRunner`` allocates the outputs a call wants and makes that call; the cpu and cuda runners add
only what is theirs (weight packing and ISA choice; workspace, streams and CUDA graphs).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..packing import Packed
from .base import Encoded, Runner

# config.json keys the native encoders read (EncoderSpec in csrc/common/encoder_spec.h)
CONFIG_KEYS = ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
               "max_position_embeddings", "type_vocab_size", "q_groups", "k_groups", "v_groups",
               "post_attention_groups", "intermediate_groups", "output_groups", "layer_norm_eps", "hidden_act")


def encoder_config(cfg) -> dict:
    return {k: getattr(cfg, k) for k in CONFIG_KEYS}


class NativeRunner(Runner):
    """Subclasses set ``cfg``, ``encoder`` (a native Encoder), ``out_device`` and ``out_dtype``."""

    cfg = None
    encoder = None
    out_device: torch.device = torch.device("cpu")
    out_dtype: torch.dtype = torch.float32

    def outputs(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> tuple[Encoded, list]:
        """Empty output buffers for one call, and the score offsets (``[]`` without scores)."""
        cfg, T, H = self.cfg, p.tokens, self.cfg.hidden_size
        nl = cfg.num_hidden_layers
        new = dict(dtype=self.out_dtype, device=self.out_device)
        hidden = torch.empty(nl + 1, T, H, **new) if want_hidden else None
        last = hidden[-1] if want_hidden else torch.empty(T, H, **new)
        offsets, scores = [], None
        if want_scores:
            offsets, per_layer = p.score_offsets(cfg.num_attention_heads)
            scores = torch.empty(nl, per_layer, **new)
        pooled = torch.empty(p.batch, H, **new) if want_pooled else None
        return Encoded(last_hidden=last, hidden_states=hidden, scores=scores, pooled=pooled), offsets

    def arg(self, t: Optional[torch.Tensor]):
        """How a tensor is handed to the native Encoder (the cpu runner: a NumPy view, its fast path)."""
        return t

    def call(self, p: Packed, out: Encoded, score_offsets=None, **native) -> Encoded:
        """One forward of the native Encoder on packed inputs into ``out``; ``native``: workspace, stream."""
        a = self.arg
        self.encoder.forward(
            a(p.input_ids), a(p.inputs_embeds), a(p.token_type_ids), a(p.position_ids), a(p.cu_seqlens),
            a(p.key_valid), a(out.last_hidden), a(out.hidden_states), a(out.scores),
            a(p.pool_rows) if out.pooled is not None else None, a(out.pooled),
            max_len=p.max_len, score_offsets=a(score_offsets), **native)
        return out
