#!/usr/bin/env python
"""GPU latency of SqueezeBERT (default config, random weights, fp16) on one CUDA device: ``sqbert-fast bench``
with this run's settings (a front end, nothing of its own).

    python benchmarks/bench_gpu.py --out bench-out/gpu [any sqbert-fast bench option]
    python -m sqbert_fast.gpu_timings merge bench-out/gpu/bench.json   # what backend="auto" goes by

runs ``sqbert-fast bench`` with ``DEFAULTS`` first (options given here override them): transformers eager and
torch.compile fp16 (padded batches, as users run them), sqbert_fast ``triton`` and ``cuda`` (padding-free)
at 1x128, 256x128 and mixed256x128 (bench.Shape's mixed batch: lengths 16..128), 5 untimed warm-up calls
(autotuning, graph capture), then 30 calls each timed by CUDA events; outputs checked against transformers
fp32 (TF32 off); the targets of issue 20 (bench.GPU_TARGETS) in the report; a per-op profile of our
backends at 256x128. Writes OUT/bench.json; ``sqbert-fast bench --markdown OUT/bench.json`` is its table.
The merge records the run (card, compute capability, the backends' correct cells) in
sqbert_fast/data/gpu_backend_timings.json, replacing that card's earlier run; commit the file with it.
"""

from __future__ import annotations

import sys

from sqbert_fast import bench

DEFAULTS = ["--device", "cuda", "--timer", "cuda-events", "--random-weights", "--precisions", "fp16",
            "--providers", "transformers,torch.compile,triton,cuda", "--shapes", "1x128,256x128,mixed256x128",
            "--warmup", "5", "--reps", "30", "--profile", "256x128", "--call-limit", "300",
            "--shape-limit", "300"]


def main(argv=None) -> int:
    return bench.main(DEFAULTS + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
