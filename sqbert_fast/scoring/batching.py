"""Length-sorted batches under a token budget, inside a bounded window of rows.

A window is a fixed run of consecutive input rows (rows ``[k*W, (k+1)*W)``). Its rows are sorted by token
length and cut greedily into batches whose *padded* size ``batch * longest`` stays within ``max_tokens``:
the engine itself is padding-free, but the padded ``[batch, seq]`` tensors handed to ``forward`` are
built, packed and unpacked at the API edge, so the budget bounds that too. Sorting within a window
keeps near-equal lengths together while memory stays bounded and rows are written back in input order.

Windows are also the unit of commit (see ``scorer.py``): because their boundaries depend only on the
window size, a resumed run forms exactly the same batches as an uninterrupted one, so every number it
computes is bit-identical and the final file is byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["plan_batches", "pad_batch"]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Positions into ``lengths``, grouped into batches, longest first (so a budget too large for memory
    fails on the first batch, not after an hour). Deterministic: ties keep input order."""
    if max_tokens < 1 or max_batch_size < 1:
        raise ValueError(f"max_tokens and max_batch_size must be >= 1, got {max_tokens} and {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        # Sorted longest first, so the first row of a batch sets its padded width.
        width = longest if current else n
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def pad_batch(encodings: Sequence, pad_id: int) -> dict[str, torch.Tensor]:
    """``tokenizers.Encoding`` objects (unpadded) -> right-padded input_ids, token_type_ids, attention_mask."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for r, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[r, :n] = enc.ids
        types[r, :n] = enc.type_ids
        mask[r, :n] = 1
    return {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask)}
