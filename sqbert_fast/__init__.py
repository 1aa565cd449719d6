"""sqbert_fast: a fused-kernel inference engine for SqueezeBERT.

Drop-in for the transformers classes::

    import sqbert_fast as sqf
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path)   # backend="auto"
    out = model(**tokenizer(texts, padding=True, return_tensors="pt"))
"""

from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _unshadow_pypi_kernels() -> None:
    """``python -m sqbert_fast.<tool>`` or ``python -m pytest`` run in a source checkout puts its root on
    sys.path, where the Triton sources' folder ``kernels/`` (installed as sqbert_fast._triton) shadows PyPI's
    ``kernels``, which transformers imports: drop every checkout root from sys.path (the test conftests import
    this package first for it)."""
    def checkout_root(p: str) -> bool:
        d = _os.path.abspath(p or _os.curdir)
        return _os.path.isfile(_os.path.join(d, "kernels", "common.py")) and \
            _os.path.isfile(_os.path.join(d, "sqbert_fast", "__init__.py"))

    _sys.path[:] = [p for p in _sys.path if not checkout_root(p)]


_unshadow_pypi_kernels()

from .backends import available_backends
from .config import SqueezeBertConfig
from .modeling import (
    SqueezeBertForMaskedLM,
    SqueezeBertForMultipleChoice,
    SqueezeBertForQuestionAnswering,
    SqueezeBertForSequenceClassification,
    SqueezeBertForTokenClassification,
    SqueezeBertModel,
    SqueezeBertPreTrainedModel,
    from_transformers,
)
from .threads import get_num_threads, set_num_threads


def __getattr__(name: str):
    # The tokenizer pulls in `tokenizers` and scoring pulls in readers/writers: import on first use.
    if name in ("SqueezeBertTokenizer", "SqueezeBertTokenizerFast"):
        from . import tokenization

        return getattr(tokenization, name)
    if name in ("score", "Scorer"):
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'sqbert_fast' has no attribute {name!r}")


__all__ = [
    "SqueezeBertConfig", "SqueezeBertModel", "SqueezeBertForMaskedLM", "SqueezeBertForSequenceClassification",
    "SqueezeBertForMultipleChoice", "SqueezeBertForTokenClassification", "SqueezeBertForQuestionAnswering",
    "SqueezeBertPreTrainedModel", "SqueezeBertTokenizer", "SqueezeBertTokenizerFast", "from_transformers",
    "available_backends", "set_num_threads", "get_num_threads", "score", "Scorer",
]
