"""CPU latency table of issue 3: ``sqbert-fast bench`` with this table's settings (a front end, nothing of its own).

    python benchmarks/bench_cpu.py [any sqbert-fast bench option, e.g. --reps 10 --precisions fp32]

runs ``sqbert-fast bench`` with ``DEFAULTS`` first (options given here override them): the ``cpu`` backend
against transformers, torch.compile, ONNX Runtime and OpenVINO on SqueezeBERT's default config with random
weights, 2 threads, timed round-robin, every engine with its own defaults (ONNX Runtime's pool spinning
too); before each timed call an engine waits 100 ms and makes one untimed call (the fair method: ONNX
Runtime's pool spins for 30-50 ms after a call, and an engine timed inside that window ran up to 2x
slower); exactly ``--reps`` rounds per shape, no time limits; speed-ups as the ratio of medians and the
median (quartiles) of the per-round ratios; outputs checked against transformers fp32; the weight memory
of a loaded model. ``mixed32x128``: bench.Shape's mixed batch (lengths 16..128, padded to 128).
README table: ``sqbert-fast bench --markdown bench-out/cpu/bench.json``.
"""

from __future__ import annotations

import sys

from sqbert_fast import bench

DEFAULTS = ["--random-weights", "--threads", "2", "--shapes", "1x32,1x128,8x128,1x512,mixed32x128",
            "--providers", "cpu,transformers,torch.compile,onnxruntime:fp32,openvino:fp32,openvino:default",
            "--precisions", "fp32,bf16", "--gap-ms", "100", "--settle", "1", "--ort-spinning", "default",
            "--reps", "30", "--memory",
            "--call-limit", "600", "--shape-limit", "3600", "--out", "bench-out/cpu"]


def main(argv=None) -> int:
    return bench.main(DEFAULTS + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
