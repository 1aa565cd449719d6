"""Resolving a model name to a local directory.

A local directory is used as is. Anything else is treated as a Hugging Face hub id and fetched
through ``huggingface_hub.snapshot_download`` when that package is installed (and online);
only weight, config and tokenizer files are requested, never code.
"""

from __future__ import annotations

import os

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.bin", "vocab.txt", "*.model"]


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> str:
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise OSError(f"{path} is a file; from_pretrained expects a model directory")
    looks_like_id = path.count("/") <= 1 and not path.startswith((".", "/", "~")) and path.strip() == path and path
    if not looks_like_id:
        raise OSError(f"model directory {path!r} does not exist")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise OSError(f"{path!r} is not a local directory, and huggingface_hub is not installed to "
                      "fetch it from the hub (pip install huggingface_hub)") from None
    try:
        return snapshot_download(repo_id=path, revision=revision, allow_patterns=ALLOW_PATTERNS)
    except Exception as e:  # network errors, unknown repo ids, offline mode
        raise OSError(f"{path!r} is not a local directory and could not be fetched from the hub: {e}") from e
