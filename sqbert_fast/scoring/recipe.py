"""A sentence-transformers checkpoint's embedding recipe, read so that ``--task embed`` embeds as
``SentenceTransformer(dir).encode()`` does, by default.

sentence-transformers describes a model as a pipeline of modules (``modules.json``): a Transformer (its
``sentence_bert_config.json`` gives ``max_seq_length`` and ``do_lower_case``), a Pooling (its
``config.json`` gives the mode: cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken, or several
concatenated in that order), and optionally Normalize (L2). ``convert --from-bert`` carries these files
over. A recipe that has a module this engine does not apply (Dense, LayerNorm, ...) is refused rather than
half-followed: the embeddings would silently differ from the model's own.

Explicit options always win over the recipe (``Scorer(..., pooling=, normalize=, max_length=)`` and the
matching flags).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

__all__ = ["EmbeddingRecipe", "POOLING_MODES", "read_recipe"]

# sentence-transformers' pooling modes, in the order it concatenates them
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_APPLIED = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class EmbeddingRecipe:
    max_seq_length: int | None
    pooling: str | None          # one of POOLING_MODES, or several joined with "+" (concatenated)
    normalize: bool
    do_lower_case: bool


def _load(path: str) -> dict | list:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable sentence-transformers file ({err})") from None


def _pooling(config: dict, where: str) -> str:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for k, m in _LEGACY_KEYS.items() if config.get(k)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
        modes = [{"mean_sqrt_len": "mean_sqrt_len_tokens"}.get(m, m) for m in modes]
        unknown = [m for m in modes if m not in POOLING_MODES]
        if unknown:
            raise ValueError(f"{where}: unknown pooling mode {unknown[0]!r} (known: {', '.join(POOLING_MODES)})")
        modes = [m for m in POOLING_MODES if m in modes]
    if config.get("include_prompt") is False:
        raise ValueError(f"{where}: include_prompt=false (pooling that skips a prompt) is not supported")
    return "+".join(modes)


def read_recipe(model_dir: str | os.PathLike) -> EmbeddingRecipe | None:
    """The recipe of a checkpoint directory holding ``modules.json``; None when it has none."""
    model_dir = os.fspath(model_dir)
    modules_path = os.path.join(model_dir, "modules.json")
    if not os.path.isfile(modules_path):
        return None
    modules = _load(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{modules_path}: expected a list of modules")
    max_len, pooling, normalize, lower = None, None, False, False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = os.path.join(model_dir, module.get("path") or "")
        if kind not in _APPLIED:
            raise ValueError(f"{modules_path}: module {module.get('type')!r} is not applied by sqbert-fast, so its "
                             "embeddings would differ from SentenceTransformer's; score with --task embed on a "
                             "copy of the checkpoint without modules.json to get the plain pooled output")
        if kind == "Transformer":
            for name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
                if os.path.isfile(os.path.join(path, name)):
                    cfg = _load(os.path.join(path, name))
                    if isinstance(cfg, dict):
                        max_len = cfg.get("max_seq_length", max_len)
                        lower = bool(cfg.get("do_lower_case", False))
                    break
        elif kind == "Pooling":
            cfg_path = os.path.join(path, "config.json")
            cfg = _load(cfg_path) if os.path.isfile(cfg_path) else {}
            pooling = _pooling(cfg if isinstance(cfg, dict) else {}, cfg_path)
        else:
            normalize = True
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ValueError(f"{model_dir}: sentence_bert_config.json max_seq_length must be a whole number >= 1, "
                         f"got {max_len!r}")
    return EmbeddingRecipe(max_len, pooling, normalize, lower)
