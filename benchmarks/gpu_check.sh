#!/usr/bin/env bash
# The GPU check, for a fresh H100 machine with PyTorch, Triton, transformers, pybind11, CMake and
# nvcc installed and no network: build sqbert_fast from source, run the GPU tests (Triton and
# CUDA backends), the CUDA tests once under compute-sanitizer, and the GPU benchmark. Logs and
# JSON go into the folder given as the argument. Each stage runs even if an earlier one failed;
# the exit code is non-zero if any failed. Stage time limits add up to 570 s.
#
#   benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
OUT="${1:?usage: benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export TRITON_INTERPRET=0   # tests/conftest.py defaults to the interpreter; this is a GPU run

stage() {  # stage NAME TIMEOUT_S CMD...: run with a time limit, log to $OUT/NAME.log, record rc
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-10s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$OUT/summary.txt"
  return $rc
}

: >"$OUT/summary.txt"
{ nvidia-smi; python -c "import sys, torch, triton, transformers; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); print('transformers', transformers.__version__)"; } >"$OUT/env.txt" 2>&1

# Only the local GPU's architecture (faster build); no build isolation and no deps: there is no network.
arch=$(python -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}' + ('a' if m >= 9 else ''))" 2>/dev/null || echo 90a)
CMAKE_ARGS="-DSQBERT_FAST_BUILD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$arch" \
  stage build 200 python -m pip install --no-build-isolation --no-deps -e . || { cat "$OUT/build.log" | tail -40; exit 1; }
stage info 60 python -m sqbert_fast.cli info
stage tests 100 python -m pytest -m gpu tests/test_gpu_parity.py tests/test_cuda.py tests/test_triton.py -q -rs --junitxml "$OUT/gpu-tests.xml"
rc_tests=$?
stage sanitizer 120 bash scripts/cuda_sanitizer.sh
rc_san=$?
stage bench 150 python benchmarks/bench_gpu.py --out "$OUT"
rc_bench=$?
tail -40 "$OUT/bench.log"
exit $(( rc_tests || rc_san || rc_bench ))
