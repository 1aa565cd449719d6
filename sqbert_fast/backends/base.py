"""What every backend provides, and the weight view they all read.

A backend is selected per (device, dtype). ``reasons()`` lists why it cannot serve them (an
empty list means it can) — xformers' rule: automatic selection takes the first backend with no
reasons, an explicitly requested backend that has reasons raises them. ``make_runner(model)``
returns a Runner that encodes packed inputs (see ``sqbert_fast.packing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
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


def _tree(base_model) -> tuple:
    """The model's modules, and the dicts a replaced parameter or submodule is written into."""
    modules = tuple(base_model.modules())
    # Only the non-empty ones: every weight encoder_weights() reads sits in a non-empty _parameters dict
    # (a conv's holds weight and bias, None included), every submodule on its path in a non-empty _modules.
    dicts = tuple(d for m in modules for d in (m._parameters, m._modules) if d)
    return modules, dicts


def _identity(dicts) -> tuple:
    return tuple(map(id, chain.from_iterable(map(dict.values, dicts))))  # C loops only


def weights_version(base_model) -> tuple:
    """Changes whenever a parameter is replaced or modified in place (packed copies go stale).

    Checked on every call, with no process-wide hook: the ids of everything in the model's modules'
    ``_parameters`` and ``_modules`` dicts (where ``module.weight = Parameter(...)`` or a swapped submodule
    lands) are compared with those of the cached walk, whose objects the cache keeps alive (so an id is
    never reused); only a change walks ``modules()`` again. Then each parameter's data pointer and in-place
    version counter. ~60 us a call for the default config's 12 layers (walking ``named_parameters`` cost
    ~0.3 ms; a process-wide registration hook saved ~25 us of this, at the price of changing every nn.Module)."""
    cached = base_model.__dict__.get("_sqf_param_list")
    if cached is None or _identity(cached[1]) != cached[2]:
        modules, dicts = _tree(base_model)
        params = tuple(base_model.parameters())
        cached = (modules, dicts, _identity(dicts), params)
        base_model.__dict__["_sqf_param_list"] = cached
    return tuple((p.data_ptr(), p._version) for p in cached[3])
