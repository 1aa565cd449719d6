"""The hidden activations the engine runs, in one table: each name transformers' configs use (``hidden_act``)
maps to one canonical activation, which every backend implements (the C++ kernels parse the same names,
``csrc/cpu/encoder.cc`` and ``csrc/cuda/bindings.cu``; the Triton kernels number them by ``TRITON_IDS``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# transformers' name -> canonical name
CANONICAL = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
             "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh"}
# canonical name -> the activation id of the Triton kernels (kernels/common.py: apply_act)
TRITON_IDS = {"gelu": 0, "gelu_tanh": 1, "relu": 2, "silu": 3, "tanh": 4}
_TORCH = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu, "silu": F.silu,
          "tanh": torch.tanh}


def canonical(name: str) -> str:
    """The canonical activation of a ``hidden_act`` name; ValueError naming the supported ones otherwise."""
    try:
        return CANONICAL[name]
    except (KeyError, TypeError):
        raise ValueError(f"hidden_act {name!r} is not supported (supported: {', '.join(CANONICAL)})") from None


def activation(name: str):
    """The torch function of a ``hidden_act`` name (the reference backend's and the task heads')."""
    return _TORCH[canonical(name)]
