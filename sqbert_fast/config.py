"""SqueezeBertConfig: reads and writes transformers' config.json, and validates it.

Field names, defaults and JSON layout are those of ``transformers.SqueezeBertConfig`` so a
directory written by either library loads in the other. Validation names the bad field.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "embedding_size": 768,
    "q_groups": 4,
    "k_groups": 4,
    "v_groups": 4,
    "post_attention_groups": 1,
    "intermediate_groups": 4,
    "output_groups": 4,
    "tie_word_embeddings": True,
    "problem_type": None,
}

_INT_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "embedding_size", "q_groups", "k_groups",
    "v_groups", "post_attention_groups", "intermediate_groups", "output_groups",
)
SUPPORTED_ACTS = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu",
                  "silu", "swish", "tanh")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

CONFIG_NAME = "config.json"

# The int8 scheme (sqbert_fast/quantization.py) as config.json records it: the ``quantization`` block of an int8
# checkpoint (``sqbert-fast quantize``, ``save_pretrained`` of a model loaded with ``dtype=torch.int8``).
INT8_METHOD = "sqbert_fast-int8"
INT8_MODULES = ("attention.query", "attention.key", "attention.value", "post_attention.conv1d",
                "intermediate.conv1d", "output.conv1d")


# Written beside the quantization block: transformers (4.4x-5.x) refuses a model whose config has a
# ``quantization_config`` without ``quant_method`` ("... has no `quant_method` attribute"), instead of loading the
# int8 weights as floats (-127..127, garbage, silently).
INT8_TRANSFORMERS_GUARD = {"sqbert_fast": "an sqbert_fast int8 checkpoint (see 'quantization'): transformers cannot "
                                          "load it; use sqbert_fast, or the float checkpoint it was quantized from"}


def int8_quantization_block() -> dict[str, Any]:
    """The ``quantization`` block config.json gets for an int8 model."""
    return {
        "method": INT8_METHOD,
        "weights": "int8, symmetric, per output channel",
        "activations": "int8, symmetric, per token, dynamic",
        "modules": [f"encoder.layers.*.{m}" for m in INT8_MODULES],
        "scales": "<module>.weight_scale: float32 [out], weight = int8 * scale",
        "note": "sqbert_fast only: transformers cannot load this checkpoint (int8 conv weights plus weight_scale "
                "tensors); keep the fp32 checkpoint it was quantized from for transformers",
    }


class SqueezeBertConfig:
    """Configuration of a SqueezeBERT model (same fields as transformers').

    Unknown keys from a config.json are kept and written back, so nothing is lost in a round trip.
    """

    model_type = "squeezebert"

    def __init__(self, **kwargs: Any) -> None:
        values = dict(_DEFAULTS)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        values.update(kwargs)
        values.pop("model_type", None)
        for key, value in values.items():
            setattr(self, key, value)
        if id2label is not None:
            id2label = {int(k): str(v) for k, v in dict(id2label).items()}
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(f"num_labels={num_labels} disagrees with id2label of {len(id2label)} labels")
        else:
            id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else int(num_labels))}
        self.id2label = id2label
        self.label2id = {str(k): int(v) for k, v in dict(label2id).items()} if label2id else {v: k for k, v in id2label.items()}
        self.validate()

    # ---- labels (as transformers: num_labels is derived from id2label) ---------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # ---- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"config field {name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"config field {name} must be >= 1, got {value}")
        h, i = self.hidden_size, self.intermediate_size
        if self.embedding_size != h:
            raise ValueError(f"embedding_size ({self.embedding_size}) must equal hidden_size ({h})")
        if h % self.num_attention_heads:
            raise ValueError(f"hidden_size ({h}) is not a multiple of num_attention_heads ({self.num_attention_heads})")
        for name, cin, cout in (("q_groups", h, h), ("k_groups", h, h), ("v_groups", h, h),
                                ("post_attention_groups", h, h), ("intermediate_groups", h, i),
                                ("output_groups", i, h)):
            g = getattr(self, name)
            if cin % g or cout % g:
                raise ValueError(f"{name}={g} must divide both its input ({cin}) and output ({cout}) channels")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in SUPPORTED_ACTS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported (choose from {', '.join(SUPPORTED_ACTS)})")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"layer_norm_eps must be a positive number, got {eps!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type={self.problem_type!r} is not one of {PROBLEM_TYPES}")
        q = getattr(self, "quantization", None)
        if q is not None and not (isinstance(q, dict) and q.get("method") == INT8_METHOD):
            method = q.get("method") if isinstance(q, dict) else q
            raise ValueError(f"config has a quantization block of method {method!r}; sqbert_fast reads only "
                             f"{INT8_METHOD!r} (written by `sqbert-fast quantize`)")
        if self.pad_token_id is not None and not (isinstance(self.pad_token_id, int) and 0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(f"pad_token_id={self.pad_token_id!r} is outside the vocabulary [0, {self.vocab_size})")

    @property
    def is_int8(self) -> bool:
        """True for the config of an int8 checkpoint (a ``quantization`` block, see ``int8_quantization_block``)."""
        q = getattr(self, "quantization", None)
        return isinstance(q, dict) and q.get("method") == INT8_METHOD

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["model_type"] = self.model_type
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "SqueezeBertConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        mt = d.get("model_type")
        if mt not in (None, "squeezebert"):
            raise ValueError(f"config has model_type={mt!r}, expected 'squeezebert' "
                             "(convert BERT checkpoints with `sqbert-fast convert --from-bert`)")
        d.update(kwargs)
        # transformers' private metadata ("_name_or_path", "_commit_hash", ...) is not configuration
        d = {k: v for k, v in d.items() if not (isinstance(k, str) and k.startswith("_") and not k.startswith("__"))}
        bad = [k for k in d if not isinstance(k, str) or k.startswith("__") or callable(getattr(cls, k, None))]
        if bad:
            raise ValueError(f"invalid config key(s): {bad[:3]}")
        try:
            return cls(**d)
        except ValueError:
            raise
        except (TypeError, AttributeError, KeyError, OverflowError) as e:
            raise ValueError(f"invalid config: {type(e).__name__}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "SqueezeBertConfig":
        try:
            with open(path, "rb") as f:
                d = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a valid JSON config: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> "SqueezeBertConfig":
        from .hub import resolve_model_dir

        path = os.fspath(path)
        if os.path.isfile(path):
            cfg_file = path
        else:
            cfg_file = os.path.join(resolve_model_dir(path), CONFIG_NAME)
            if not os.path.isfile(cfg_file):
                raise OSError(f"no {CONFIG_NAME} in {path}")
        cfg = cls.from_json_file(cfg_file)
        for k, v in kwargs.items():
            setattr(cfg, k, v)
        cfg.validate()
        return cfg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SqueezeBertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SqueezeBertConfig {self.to_json_string()}"
