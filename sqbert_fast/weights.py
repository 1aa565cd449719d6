"""Checkpoint loading and saving. Never executes code from a checkpoint.

Reads ``model.safetensors`` (or a sharded ``model.safetensors.index.json``) first and
``pytorch_model.bin`` only through ``torch.load(weights_only=True)``. Keys are transformers'
own; a checkpoint of a base model loads into a model with a head and vice versa (the
``transformer.`` prefix is added or stripped). Missing head weights are freshly initialised and
reported like transformers does; missing encoder weights and misshapen tensors are errors that
name the tensor.

int8 checkpoints (config.json with a ``quantization`` block, see ``config.int8_quantization_block``) hold each
encoder conv's ``weight`` as int8 plus a ``weight_scale`` tensor (fp32 [out]); they load only into a model
given the int8 layout first (``from_pretrained`` does that) and transformers cannot load them.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import torch

logger = logging.getLogger("sqbert_fast")

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
_IGNORED_KEYS = ("embeddings.position_ids",)


def _load_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a valid safetensors file (corrupt or truncated?): {e}") from None


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError, ImportError,
            UnicodeDecodeError, IndexError, KeyError, OverflowError, MemoryError, AssertionError) as e:
        raise ValueError(f"{path} could not be loaded safely (weights_only): {type(e).__name__}: {e}") from None
    return state


def read_state_dict(model_dir: str) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in model_dir, as a flat dict."""
    safe = os.path.join(model_dir, SAFE_WEIGHTS_NAME)
    index = os.path.join(model_dir, SAFE_WEIGHTS_INDEX_NAME)
    binary = os.path.join(model_dir, WEIGHTS_NAME)
    if os.path.isfile(safe):
        state = _load_safetensors(safe)
    elif os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{index} is not a valid safetensors index: {e}") from None
        state = {}
        for shard in shards:
            shard_path = os.path.join(model_dir, shard)
            if os.path.dirname(os.path.normpath(shard)) or not os.path.isfile(shard_path):
                raise ValueError(f"{index} names shard {shard!r}, which is not a file in {model_dir}")
            state.update(_load_safetensors(shard_path))
    elif os.path.isfile(binary):
        state = _load_bin(binary)
    else:
        raise OSError(f"no {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} or {WEIGHTS_NAME} in {model_dir}")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"the checkpoint in {model_dir} is not a flat mapping of names to tensors")
    return state


def _normalise_keys(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    prefix = model.base_model_prefix
    has_prefix = any(k.startswith("transformer.") for k in out)
    if not prefix and has_prefix:  # head checkpoint -> base model
        out = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in out.items()}
    elif prefix and not has_prefix:  # base checkpoint -> model with a head
        out = {(f"{prefix}.{k}" if k.split(".")[0] in ("embeddings", "encoder", "pooler") else k): v for k, v in out.items()}
    return out


def _fresh(name: str, shape: torch.Size, std: float) -> torch.Tensor:
    if name.endswith("LayerNorm.weight"):
        return torch.ones(shape)
    if name.endswith(".bias") or name.endswith("predictions.bias"):
        return torch.zeros(shape)
    return torch.empty(shape).normal_(0.0, std)


def load_state_dict_into(model, state: dict[str, torch.Tensor], source: str) -> dict[str, list]:
    state = _normalise_keys(model, state)
    tied = set(model._tied_keys)
    expected = {k: v for k, v in model.state_dict(keep_vars=True).items() if k not in tied}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in tied and not k.endswith(_IGNORED_KEYS)]
    mismatched = [(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in expected
                  if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if mismatched:
        k, got, want = mismatched[0]
        raise ValueError(f"tensor {k} in {source} has shape {got}, but the config implies {want}"
                         + (f" (and {len(mismatched) - 1} more mismatched)" if len(mismatched) > 1 else ""))
    for k, p in expected.items():  # int8 layout (config.json) vs the tensors: named before what is missing
        if p.dtype == torch.int8 and k in state and state[k].dtype != torch.int8:
            raise ValueError(f"tensor {k} in {source} has dtype {state[k].dtype}, but config.json's quantization "
                             "block says this is an int8 checkpoint (int8 conv weights)")
    not_head = [k for k in missing if not k.startswith(model._head_prefixes or ("\0",))]
    if not_head:
        raise ValueError(f"{source} is missing {len(not_head)} tensor(s) the model needs, e.g. {not_head[:3]}")
    full = {}
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    for k, p in expected.items():
        if k in state:
            t = state[k]
            if p.dtype == torch.int8:  # an int8 checkpoint's conv weight (checked above)
                full[k] = torch.nn.Parameter(t.contiguous(), requires_grad=False)
                continue
            if t.dtype == torch.int8 and k.endswith(".weight"):
                raise ValueError(f"tensor {k} in {source} is int8 but config.json has no quantization block: an "
                                 "int8 checkpoint needs the config.json written with it (sqbert-fast quantize)")
            if not t.dtype.is_floating_point:
                raise ValueError(f"tensor {k} in {source} has dtype {t.dtype}, expected a floating point type")
            t = t.to(torch.float32).contiguous()
            full[k] = torch.nn.Parameter(t, requires_grad=False) if k in params else t  # buffers: weight_scale
        else:
            full[k] = torch.nn.Parameter(_fresh(k, p.shape, model.config.initializer_range), requires_grad=False)
    model.load_state_dict(full, strict=False, assign=True)
    model.tie_weights()
    if missing:
        logger.warning("Some weights of %s were not initialized from %s and are newly initialized: %s\n"
                       "You should probably TRAIN this model on a down-stream task to be able to use it for "
                       "predictions and inference.", type(model).__name__, source, missing)
    if unexpected:
        logger.warning("Some weights of %s were not used when initializing %s: %s", source, type(model).__name__, unexpected)
    return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": [], "error_msgs": []}


def load_checkpoint_into(model, model_dir: str) -> dict[str, list]:
    return load_state_dict_into(model, read_state_dict(model_dir), source=model_dir)


def save_checkpoint(model, save_directory: str, safe_serialization: bool = True) -> None:
    tied = set(model._tied_keys)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in tied}
    if safe_serialization:
        from safetensors.torch import save_file

        metadata = {"format": "pt"}
        if getattr(model, "is_int8", False):
            metadata["sqbert_fast_quantization"] = "int8"  # see config.json's quantization block
        save_file(state, os.path.join(save_directory, SAFE_WEIGHTS_NAME), metadata=metadata)
    else:
        torch.save(state, os.path.join(save_directory, WEIGHTS_NAME))

