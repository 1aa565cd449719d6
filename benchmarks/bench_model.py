"""Whole-model latency: every provider x precision x shape, then the output checked against transformers fp32.

Providers and shapes are parametrised in conftest.py (shapes from the model's config). A provider
that cannot run here is skipped with the reason; one that runs but is wrong fails (a fast wrong
result is worthless).
"""

from __future__ import annotations

import time

import pytest
from sqf_bench_support import max_abs_diff, record, tolerance

from sqbert_fast.config import SqueezeBertConfig

# seconds of timed calls per case outside smoke mode; heavy shapes still get at least 3 rounds
BUDGET_S = 3.0


def test_model(benchmark, providers, cell, shape, smoke, threads, model_dir):
    provider, precision = cell
    p = providers.get(provider, precision)
    ids, mask = providers.inputs(shape)
    ids, mask = ids.to(p.device), mask.to(p.device)
    ref = providers.reference(shape)

    t0 = time.perf_counter()
    p(ids, mask)  # first call (torch.compile compiles here): timed, reported, kept out of the stats
    p.synchronize()
    first = time.perf_counter() - t0

    def call():
        out = p(ids, mask)
        p.synchronize()
        return out

    if smoke:
        out = benchmark.pedantic(call, rounds=1, iterations=1)
    else:
        rounds = int(max(3, min(50, BUDGET_S / max(first, 1e-4))))
        out = benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)

    actual = next((n.split("actual=")[1].split(",")[0] for n in p.notes if "actual=" in n), None)
    diff = max_abs_diff(out, ref, mask.cpu())
    tol = tolerance(providers, shape, precision, actual)
    record(benchmark, provider, precision, shape, p, threads, diff, tol, first,
           SqueezeBertConfig.from_pretrained(model_dir))
    assert diff <= tol, f"{provider}:{precision} {shape.name}: max|diff| {diff:.3e} vs transformers fp32 > {tol:.1e}"


def test_shapes_come_from_the_config(shape, model_dir):
    # a shape longer than the model's positions would make every provider fail for the wrong reason
    assert shape.seq <= SqueezeBertConfig.from_pretrained(model_dir).max_position_embeddings
    assert sum(shape.seqlens()) >= shape.batch


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
