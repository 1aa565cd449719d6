"""Model outputs with transformers' field names and behaviour.

Like ``transformers.utils.ModelOutput``: a dataclass whose non-None fields can also be read by
key (``out["logits"]``), by position (``out[0]``, skipping None fields, so ``loss`` comes first
only when present) and unpacked with ``to_tuple()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Optional

import torch


class ModelOutput(OrderedDict):
    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return dict(self.items())[key]
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def to_tuple(self) -> tuple:
        return tuple(self[k] for k in self.keys())

    def __reduce__(self):  # picklable like a dataclass
        return (self.__class__, tuple(getattr(self, f.name) for f in fields(self)))


_T = Optional[torch.Tensor]
_TT = Optional[tuple]


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: _T = None
    pooler_output: _T = None
    hidden_states: _TT = None
    attentions: _TT = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: _T = None
    logits: _T = None
    hidden_states: _TT = None
    attentions: _TT = None


@dataclass
class SequenceClassifierOutput(MaskedLMOutput):
    pass


@dataclass
class MultipleChoiceModelOutput(MaskedLMOutput):
    pass


@dataclass
class TokenClassifierOutput(MaskedLMOutput):
    pass


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: _T = None
    start_logits: _T = None
    end_logits: _T = None
    hidden_states: _TT = None
    attentions: _TT = None
