"""sqbert_fast: a fused-kernel inference engine for SqueezeBERT.

Drop-in for the transformers classes::

    import sqbert_fast as sqf
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path)   # backend="auto"
    out = model(**tokenizer(texts, padding=True, return_tensors="pt"))
"""

from __future__ import annotations

__version__ = "0.1.0"

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
