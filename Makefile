# Two entry points, both of which set everything up first:
#   make demo   - the main job on the built-in default model
#   make test   - the test suite (what CI runs)
PY ?= python3
PIP ?= $(PY) -m pip
EXTRAS ?= test,hub,triton,bench,scoring,ray
TORCH ?= torch==2.13.0

.PHONY: setup demo bench test sanitize clean

setup:
	# CPU torch first, pinned, so no dependency can pull a CUDA build; then the build tools, and
	# SIMDe so the NEON kernels are also compiled for x86 and run in the test suite
	$(PIP) install -q "$(TORCH)" "setuptools>=64" "pybind11>=2.12" ninja "simde-py>=0.8"
	$(PIP) install -q --no-build-isolation -e ".[$(EXTRAS)]"

demo: setup
	sqbert-fast demo

bench: setup
	sqbert-fast bench --quick --out bench-out

test: setup
	$(PY) -m pytest -q tests
	# benchmark suite in smoke mode: one tiny shape per provider, every result checked against transformers
	SQBERT_FAST_BENCH_SMOKE=1 $(PY) -m pytest -q -rs benchmarks
	# aarch64: cross-build _C and run the NEON tests under qemu (default CPU and cortex-a53)
	PYTHON=$(PY) bash scripts/arm/check.sh

# _C built with -fsanitize=address,undefined (build/sanitize), the CPU kernel tests and the hypothesis
# shape fuzzer run against it (CI runs this after `make test`)
sanitize: setup
	PYTHON=$(PY) bash scripts/sanitize.sh

clean:
	rm -rf build *.egg-info sqbert_fast/*.so .pytest_cache
