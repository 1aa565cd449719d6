"""Thread control: one number for the C++ pool and for torch's own ops (the task heads)."""

from __future__ import annotations

import warnings

import torch


def set_num_threads(n: int) -> None:
    """Use exactly n threads for the kernels (the C++ pool) and for torch's intra-op pool."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    try:
        from . import _C
    except ImportError:
        _C = None
    if _C is not None:
        limit = _C.max_threads()
        if n > limit:
            warnings.warn(f"set_num_threads({n}): capped at {limit} threads (a few per hardware thread; more only "
                          "add context switches)", RuntimeWarning, stacklevel=2)
            n = limit
        _C.set_num_threads(n)
    torch.set_num_threads(n)


def get_num_threads() -> int:
    try:
        from . import _C
    except ImportError:
        return torch.get_num_threads()
    return _C.get_num_threads()
