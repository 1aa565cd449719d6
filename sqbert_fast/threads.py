"""Thread control: one number for the C++ pool and for torch's own ops (the task heads).

In a forked child torch runs on one thread. GNU OpenMP, which torch's MKL uses, keeps the parent's thread team
after fork(), and those threads do not exist in the child: the child's first parallel region waits for them
forever. On an AMD EPYC (Zen 4) MKL runs even a 3 x 32 x 32 sgemm (a classifier head) through its OpenMP
driver, so a fork pool's first forward hung there. torch's own DataLoader workers run on one thread too;
``set_num_threads`` in the child sets it again. The C++ pool starts fresh in the child with its thread count
(csrc/common/thread_pool.h).
"""

from __future__ import annotations

import os
import warnings

import torch


def _one_torch_thread_in_forked_child() -> None:
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_in_forked_child)


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
