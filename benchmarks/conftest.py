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

import pytest

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
        spec = ",".join(["reference", "cpu", *isas, "cuda", "triton", "transformers", "torch.compile:fp32",
                         "onnxruntime:fp32", "openvino:fp32", "openvino:default"]
                        + ([] if smoke else ["torch.compile:bf16"]))
    return parse_providers(spec, ["fp32", "bf16"])


def pytest_generate_tests(metafunc):
    smoke = metafunc.config.getoption("--smoke")
    if "cell" in metafunc.fixturenames:
        cells = provider_cells(metafunc.config, smoke)
        metafunc.parametrize("cell", cells, ids=[f"{p}-{q}" for p, q in cells])
    if "shape" in metafunc.fixturenames:
        shapes = model_shapes(_collection_config(metafunc.config), smoke)
        metafunc.parametrize("shape", shapes, ids=[s.name for s in shapes])


# ---- prepared providers and reference outputs, shared by all benchmark files --------------------
class Providers:
    """Prepares each (provider, precision) once per session; transformers fp32 outputs are the truth."""

    def __init__(self, model_dir: str, threads: int):
        self.model_dir, self.threads = model_dir, threads
        self._prepared: dict = {}
        self._refs: dict = {}

    def get(self, provider: str, precision: str):
        from sqbert_fast import peers

        key = (provider, precision)
        if key not in self._prepared:
            why = peers.reasons(provider, precision)
            if why:
                self._prepared[key] = peers.Unavailable("; ".join(why))
            else:
                try:
                    self._prepared[key] = peers.prepare(provider, self.model_dir, precision, threads=self.threads)
                except peers.Unavailable as e:
                    self._prepared[key] = e
        p = self._prepared[key]
        if isinstance(p, Exception):
            pytest.skip(f"{provider}:{precision} unavailable: {p}")
        return p

    def reference(self, shape, precision: str = "fp32"):
        """transformers' output at this precision (fp32 = the ground truth), computed once per shape."""
        key = (shape.name, precision)
        if key not in self._refs:
            ids, mask = self.inputs(shape)
            self._refs[key] = self.get("transformers", precision)(ids, mask).float()
        return self._refs[key]

    def inputs(self, shape):
        from sqbert_fast.config import SqueezeBertConfig

        vocab = SqueezeBertConfig.from_pretrained(self.model_dir).vocab_size
        return shape.inputs(vocab)

    def close(self):
        for p in self._prepared.values():
            if not isinstance(p, Exception) and p.close:
                p.close()


@pytest.fixture(scope="session")
def providers(model_dir, threads):
    ps = Providers(model_dir, threads)
    yield ps
    ps.close()


def max_abs_diff(out, ref, mask) -> float:
    return float((out.detach().float().cpu() - ref)[mask.bool()].abs().max())


def tolerance(providers, shape, precision: str, actual: str | None = None) -> float:
    """fp32: 1e-4 (DESIGN §5). bf16/fp16: 3x transformers' own error in that precision (floor 1e-3)."""
    prec = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(actual or "", precision)
    if prec == "fp32" or prec == "default":
        return 1e-4
    ids, mask = providers.inputs(shape)
    own = max_abs_diff(providers.reference(shape, prec), providers.reference(shape, "fp32"), mask)
    return max(3.0 * own, 1e-3)


def record(benchmark, provider, precision, shape, prepared, threads, diff, tol, first_call_s, cfg) -> None:
    """What a result needs to be read later: ISA, threads, dtype, GPU, setup costs, FLOPs, error."""
    import torch

    from sqbert_fast import bench
    from sqbert_fast.peers import cpu_isas

    try:
        from sqbert_fast import _C

        isa = _C.default_isa()
    except Exception:  # noqa: BLE001 - not built / forced ISA unavailable
        isa = None
    benchmark.extra_info.update({
        "provider": provider, "precision": precision, "dtype": precision, "shape": shape.name,
        "batch": shape.batch, "seq": shape.seq, "tokens": sum(shape.seqlens()), "threads": threads,
        "isa": isa, "usable_isas": cpu_isas(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "setup_s": prepared.setup_s, "notes": prepared.notes, "first_call_s": first_call_s,
        "gflop": bench.encoder_flops(cfg, shape.seqlens()) / 1e9, "max_abs_diff": diff, "tol": tol,
    })
