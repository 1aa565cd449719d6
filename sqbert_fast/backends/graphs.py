"""The CUDA-graph cache both GPU backends (cuda, triton) use: one policy, one setting.

A small batch's forward is ~50 dependent kernels whose launches cost more than their work; replaying a
captured graph removes that. A key (whatever makes two calls replay the same graph: the cuda backend's
shape bucket, the triton backend's exact lengths) is captured the second time it is seen, never the first:
the first call runs eagerly, which also compiles or loads the kernels and keeps one-off shapes from
costing a capture. At most ``GRAPH_CACHE`` graphs are kept per runner (least recently used dropped); the
set of keys seen once is forgotten when it grows past 64 times that (many one-off shapes).

``SQBERT_FAST_GRAPH_MAX_TOKENS`` (default 4096): batches with more tokens always run eagerly (their launch
overhead is negligible beside the work, and their graphs would pin large buffers).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Hashable, Optional

GRAPH_CACHE = 16


def graph_max_tokens() -> int:
    v = os.environ.get("SQBERT_FAST_GRAPH_MAX_TOKENS", "") or "4096"
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"SQBERT_FAST_GRAPH_MAX_TOKENS={v!r}: expected a number of tokens") from None
    if n < 0:
        raise ValueError(f"SQBERT_FAST_GRAPH_MAX_TOKENS={n}: expected >= 0 (0 turns CUDA graphs off)")
    return n


GRAPH_MAX_TOKENS = graph_max_tokens()


class GraphCache:
    def __init__(self, size: int = GRAPH_CACHE):
        self.size = size
        self._graphs: OrderedDict = OrderedDict()
        self._seen: set = set()

    def __len__(self) -> int:
        return len(self._graphs)

    def get(self, key: Hashable, capture: Callable[[], object]) -> Optional[object]:
        """The captured entry for ``key`` (``capture()`` makes it on the key's second sighting), or None:
        run this call eagerly."""
        entry = self._graphs.get(key)
        if entry is None:
            if key not in self._seen:
                if len(self._seen) > 64 * self.size:
                    self._seen.clear()
                self._seen.add(key)
                return None
            entry = self._graphs[key] = capture()
            while len(self._graphs) > self.size:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        return entry
