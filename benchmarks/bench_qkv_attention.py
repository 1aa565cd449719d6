"""Per-op latency: `qkv_attention` of layer 0, reference (PyTorch) op vs the cpu kernels (see sqf_op_bench.py)."""

from sqf_op_bench import run_op_benchmark


def test_qkv_attention(benchmark, op_provider, shape, model_dir, threads, smoke):
    run_op_benchmark(benchmark, "qkv_attention", op_provider, shape, model_dir, threads, smoke)
