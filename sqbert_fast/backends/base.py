"""What every backend provides, and the weight view they all read.

A backend is selected per (device, dtype). ``reasons()`` lists why it cannot serve them (an
empty list means it can) — xformers' rule: automatic selection takes the first backend with no
reasons, an explicitly requested backend that has reasons raises them. ``make_runner(model)``
returns a Runner that encodes packed inputs (see ``sqbert_fast.packing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..packing import Packed


@dataclass
class Encoded:
    last_hidden: torch.Tensor                 # [T, H]
    hidden_states: Optional[torch.Tensor]     # [layers + 1, T, H] (embeddings first)
    scores: Optional[torch.Tensor]            # [layers, sum_b heads * L_b^2] pre-softmax
    pooled: Optional[torch.Tensor]            # [B, H]


class Runner:
    def encode(self, packed: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        raise NotImplementedError

    def stale(self) -> bool:
        """True when the parameters changed in a way ``weights_version`` cannot see (an in-place edit
        through ``.data``) and this runner's packed copies are out of date. Runners that read the
        parameters in place, or cannot check cheaply, return False (``refresh_weights()`` is the way there)."""
        return False


class Backend:
    name = "?"

    def reasons(self, device: torch.device, dtype: torch.dtype) -> list[str]:
        raise NotImplementedError

    def misconfigured(self, device: torch.device) -> list[str]:
        """Reasons that are the user's explicit settings (an override naming something this machine lacks):
        ``auto`` raises them instead of quietly taking the next backend."""
        return []

    def make_runner(self, model) -> Runner:
        raise NotImplementedError


def encoder_weights(base_model) -> dict[str, torch.Tensor]:
    """Flat name -> tensor view of a SqueezeBertModel's encoder, pooler and embeddings.

    Names are the contract between Python and every kernel backend (the C++ binding reads the
    same keys). Conv weights keep transformers' [out, in/groups, 1] layout.

    int8 models (``SqueezeBertPreTrainedModel.quantize_int8``, ``sqbert_fast.quantization``): each of the six
    convs of a layer holds an int8 ``{short}_weight`` and adds ``layers.{i}.{short}_weight_scale`` (fp32 [out],
    one scale per output channel); everything else stays fp32.
    """
    e = base_model.embeddings
    w = {
        "word_embeddings": e.word_embeddings.weight,
        "position_embeddings": e.position_embeddings.weight,
        "token_type_embeddings": e.token_type_embeddings.weight,
        "embeddings_ln_weight": e.LayerNorm.weight,
        "embeddings_ln_bias": e.LayerNorm.bias,
    }
    for i, layer in enumerate(base_model.encoder.layers):
        a = layer.attention
        for short, mod in (("q", a.query), ("k", a.key), ("v", a.value), ("post", layer.post_attention.conv1d),
                           ("inter", layer.intermediate.conv1d), ("out", layer.output.conv1d)):
            w[f"layers.{i}.{short}_weight"] = mod.weight
            w[f"layers.{i}.{short}_bias"] = mod.bias
            scale = getattr(mod, "weight_scale", None)
            if scale is not None:
                w[f"layers.{i}.{short}_weight_scale"] = scale
        for short, ln in (("post_ln", layer.post_attention.layernorm), ("out_ln", layer.output.layernorm)):
            w[f"layers.{i}.{short}_weight"] = ln.weight
            w[f"layers.{i}.{short}_bias"] = ln.bias
    if base_model.pooler is not None:
        w["pooler_weight"] = base_model.pooler.dense.weight
        w["pooler_bias"] = base_model.pooler.dense.bias
    return {k: v.detach() for k, v in w.items()}


def compute_dtype(weights: dict[str, torch.Tensor]) -> torch.dtype:
    """The precision a model runs in: that of its GEMM weights (the first layer's query conv), else of
    its word embeddings. A reduced-precision CPU model keeps embeddings, LayerNorms and biases in fp32
    (``SqueezeBertPreTrainedModel.from_pretrained(dtype=...)``); GPU backends cast those to this dtype.
    torch.int8 for an int8 model (its activations are fp32)."""
    w = weights.get("layers.0.q_weight")
    return (w if w is not None else weights["word_embeddings"]).dtype


_registrations = 0  # parameters (re)assigned on any nn.Module in this process


def _count_registration(module, name, param):
    global _registrations
    _registrations += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)


def weights_version(base_model) -> tuple:
    """Changes whenever a parameter is replaced or modified in place (packed copies go stale).

    Checked on every call: the model's parameter list is walked again only after some module
    registered a parameter (a global counter), otherwise the cached list is reused (walking ~200
    parameters through named_parameters cost ~0.3 ms a call, 2-4% of a 1 x 32 forward)."""
    cached = base_model.__dict__.get("_sqf_param_list")
    if cached is None or cached[0] != _registrations:
        cached = (_registrations, tuple(base_model.parameters()))
        base_model.__dict__["_sqf_param_list"] = cached
    return tuple((p.data_ptr(), p._version) for p in cached[1])
