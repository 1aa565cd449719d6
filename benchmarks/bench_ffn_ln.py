"""Per-op latency: `ffn_ln` of layer 0, reference (PyTorch) op vs the cpu kernels (see sqf_op_bench.py)."""

from sqf_op_bench import run_op_benchmark


def test_ffn_ln(benchmark, op_provider, shape, model_dir, threads, smoke):
    run_op_benchmark(benchmark, "ffn_ln", op_provider, shape, model_dir, threads, smoke)
