"""pytest-benchmark suite: provider x shape x precision, every result checked against transformers fp32.

    pytest benchmarks/                                  # full: default model, batch {1,8,32} x seq {32,128,512} + mixed
    pytest benchmarks/ --smoke                          # CI: tiny config, one tiny shape per provider (~1 min)
    SQBERT_FAST_BENCH_SMOKE=1 pytest benchmarks/        # the same
    pytest benchmarks/ --bench-providers cpu,onnxruntime --benchmark-json out.json

Files are named ``bench_*.py`` (one per op, one for the whole model); this conftest collects them.
Peers whose package is missing are skipped with the reason (``-rs`` prints it).
"""

from __future__ import annotations

import os

# `python -m pytest` puts the repository root on sys.path, where the Triton sources' folder `kernels/`
# would shadow PyPI's `kernels`, which transformers imports: importing sqbert_fast first drops it.
import sqbert_fast  # noqa: F401
import pytest
from sqf_bench_support import Providers

SMOKE_CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    embedding_size=64, max_position_embeddings=64)


def pytest_addoption(parser):
    g = parser.getgroup("sqbert_fast benchmarks")
    g.addoption("--smoke", action="store_true", default=os.environ.get("SQBERT_FAST_BENCH_SMOKE") == "1",
                help="tiny config, one tiny shape per provider (also SQBERT_FAST_BENCH_SMOKE=1)")
    g.addoption("--bench-providers", default=None, help="comma list of providers to run (default: all)")
    g.addoption("--bench-model", default=None, help="model directory (default: the built-in default model)")
    g.addoption("--bench-threads", type=int, default=None, help="threads for every engine (default: all cpus)")


def pytest_collect_file(file_path, parent):
    # bench_*.py are benchmark modules; a file named on the command line is collected by pytest itself
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    if config.getoption("--smoke", default=False):
        # a smoke run checks that every provider runs and is right, not how fast it is
        if hasattr(config.option, "benchmark_min_rounds"):
            config.option.benchmark_min_rounds = 1
            config.option.benchmark_max_time = 0.0
            config.option.benchmark_warmup = False


@pytest.fixture(scope="session")
def smoke(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--smoke"))


@pytest.fixture(scope="session")
def threads(pytestconfig) -> int:
    n = pytestconfig.getoption("--bench-threads") or os.cpu_count() or 1
    from sqbert_fast import set_num_threads

    set_num_threads(n)
    return n


@pytest.fixture(scope="session")
def model_dir(pytestconfig, smoke, tmp_path_factory) -> str:
    from sqbert_fast import bench

    if pytestconfig.getoption("--bench-model"):
        return pytestconfig.getoption("--bench-model")
    if smoke:
        return bench.random_model_dir(SMOKE_CONFIG, str(tmp_path_factory.mktemp("smoke-model")))
    path, note = bench.default_model()
    print(f"\nbenchmark model: {path} {note}")
    return path


# ---- parametrisation from the config (collection time) ------------------------------------------
_MODEL_DIRS: dict = {}


def _collection_config(config):
    from sqbert_fast.config import SqueezeBertConfig

    if config.getoption("--smoke"):
        return SqueezeBertConfig(**SMOKE_CONFIG)
    path = config.getoption("--bench-model")
    if not path:
        if "default" not in _MODEL_DIRS:
            from sqbert_fast import bench

            _MODEL_DIRS["default"] = bench.default_model()[0]
        path = _MODEL_DIRS["default"]
    return SqueezeBertConfig.from_pretrained(path)


def model_shapes(cfg, smoke: bool):
    """batch {1, 8, 32} x seq {32, 128, 512} (up to max_position_embeddings) + a mixed-length batch; smoke: one tiny."""
    from sqbert_fast.bench import Shape

    if smoke:
        return [Shape("mixed3x16", 3, 16, mixed=True)]
    seqs = [s for s in (32, 128, 512) if s <= cfg.max_position_embeddings] or [cfg.max_position_embeddings]
    shapes = [Shape(f"{b}x{s}", b, s) for b in (1, 8, 32) for s in seqs]
    mixed_len = min(128, cfg.max_position_embeddings)
    return shapes + [Shape(f"mixed32x{mixed_len}", 32, mixed_len, mixed=True)]


def provider_cells(config, smoke: bool):
    from sqbert_fast.bench import parse_providers
    from sqbert_fast.peers import cpu_isas

    spec = config.getoption("--bench-providers")
    if not spec:
        isas = [] if smoke else [f"cpu-{i}" for i in cpu_isas() if i != "scalar"]
        spec = ",".join(["reference", "cpu", *isas, "cpu:int8", "cuda", "triton", "transformers", "torch.compile:fp32",
                         "onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:default", "openvino:int8"]
                        + ([] if smoke else ["torch.compile:bf16"]))
    return parse_providers(spec, ["fp32", "bf16"])


def pytest_generate_tests(metafunc):
    smoke = metafunc.config.getoption("--smoke")
    if "op_provider" in metafunc.fixturenames:  # the per-op files (bench_<op>.py)
        from sqf_op_bench import op_providers

        ops = op_providers(smoke)
        metafunc.parametrize("op_provider", ops, ids=ops)
    if "cell" in metafunc.fixturenames:
        cells = provider_cells(metafunc.config, smoke)
        metafunc.parametrize("cell", cells, ids=[f"{p}-{q}" for p, q in cells])
    if "shape" in metafunc.fixturenames:
        shapes = model_shapes(_collection_config(metafunc.config), smoke)
        metafunc.parametrize("shape", shapes, ids=[s.name for s in shapes])


# ---- prepared providers and reference outputs, shared by all benchmark files ----------------------
@pytest.fixture(scope="session")
def providers(model_dir, threads):
    ps = Providers(model_dir, threads)
    yield ps
    ps.close()
