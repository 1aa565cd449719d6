#!/usr/bin/env bash
# The GPU check, for a fresh H100/H200 machine with PyTorch, Triton, transformers, pybind11, CMake and
# nvcc installed and no network: build sqbert_fast from source, run the GPU tests (Triton and CUDA
# backends), the GPU benchmark, and the CUDA tests under compute-sanitizer (memcheck, then racecheck on a
# few shapes). Logs, bench.json, bench.md (the table) and gpu_backend_timings.json (the package's
# timings file with this card's run merged in) go into the folder given as the argument; the `resources`
# stage, not run by default (it needs no GPU: scripts/gpu_resource_usage.py), adds registers, spills and
# occupancy of every kernel as built there. Each stage runs even if an earlier one failed; the exit code is
# non-zero if any failed.
#
#   benchmarks/gpu_check.sh OUT_DIR [STAGE ...]   # stages: build info tests bench sanitizer racecheck [resources]
#
# GPU_CHECK_BUDGET_S (default 540) bounds the whole run: each stage gets its own limit or what is
# left of the budget, whichever is less, and a stage with under 20 s left is skipped (and counts
# as failed). The benchmark runs before the sanitizer stages so that a short budget keeps the numbers;
# on a warm machine `benchmarks/gpu_check.sh OUT sanitizer racecheck` runs them on the same build.
# PYTHON picks the interpreter (default: python3, else python).
set -uo pipefail
OUT="${1:?usage: benchmarks/gpu_check.sh OUT_DIR [STAGE ...]}"
shift
STAGES=("${@:-build info tests bench sanitizer racecheck}")
STAGES=(${STAGES[*]})
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export TRITON_INTERPRET=0   # tests/conftest.py defaults to the interpreter; this is a GPU run
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
BUDGET="${GPU_CHECK_BUDGET_S:-540}"
# the scripts and tests below call `python`: make it this interpreter (a wrapper, not a symlink: a
# venv's python found through a link elsewhere does not see its venv)
BIN="$(mktemp -d)" && printf '#!/bin/sh\nexec "%s" "$@"\n' "$PYTHON" >"$BIN/python" && chmod +x "$BIN/python"
export PATH="$BIN:$PATH"

wanted() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }
stage() {  # stage NAME LIMIT_S CMD...: run with a time limit, log to $OUT/NAME.log, record rc
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS))
  ((left < limit)) && limit=$left
  if ((limit < 20)); then
    printf '%-10s skipped: %ss of the budget left\n' "$name" "$left" | tee -a "$OUT/summary.txt"
    return 124
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-10s rc=%-3s %4ss (limit %ss)\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" | tee -a "$OUT/summary.txt"
  return $rc
}

: >"$OUT/summary.txt"
{ nvidia-smi; "$PYTHON" -c "import sys, torch, triton, transformers; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); print('transformers', transformers.__version__)"; nproc; } >"$OUT/env.txt" 2>&1

rc=0
if wanted build; then
  # Only the local GPU's architecture (faster build); no build isolation and no deps: there is no network.
  arch=$("$PYTHON" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}' + ('a' if m >= 9 else ''))" 2>/dev/null || echo 90a)
  CMAKE_ARGS="-DSQBERT_FAST_BUILD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$arch" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    stage build 240 "$PYTHON" -m pip install --no-build-isolation --no-deps -e . || { tail -40 "$OUT/build.log"; exit 1; }
fi
wanted info && { stage info 60 "$PYTHON" -m sqbert_fast.cli info || rc=1; }
# registers/spills/shared memory from the cubins just built (no GPU needed; Triton kernels compiled for this card)
wanted resources && { stage resources 150 "$PYTHON" scripts/gpu_resource_usage.py --out "$OUT" \
  --arch "$("$PYTHON" -c "import torch; m, n = torch.cuda.get_device_capability(); print(10 * m + n)" 2>/dev/null || echo 90)" \
  || rc=1; }
if wanted tests; then
  # pytest-xdist spreads the Triton autotuning compiles over the cores when it is installed
  # (pytest-benchmark warns under xdist, and warnings are errors here: it is not needed for tests)
  xdist=(); "$PYTHON" -c "import xdist" 2>/dev/null && xdist=(-n 8 -p no:benchmark)
  stage tests 240 "$PYTHON" -m pytest -m gpu tests/test_gpu_parity.py tests/test_cuda.py tests/test_triton.py \
    tests/test_backend_order.py \
    -q -rs "${xdist[@]}" || rc=1
fi
if wanted bench; then
  TRITON_PRINT_AUTOTUNING=1 stage bench 300 "$PYTHON" benchmarks/bench_gpu.py --out "$OUT" || rc=1
  # the package's timings file with this card's run merged in (what backend="auto" goes by): copy it over
  # sqbert_fast/data/gpu_backend_timings.json to keep it
  [[ -f "$OUT/bench.json" ]] && { "$PYTHON" -m sqbert_fast.cli bench --markdown "$OUT/bench.json" >"$OUT/bench.md" \
    && "$PYTHON" -m sqbert_fast.gpu_timings merge "$OUT/bench.json" \
    --out "$OUT/gpu_backend_timings.json" >>"$OUT/bench.log" 2>&1 || rc=1; }
fi
wanted sanitizer && { stage sanitizer 180 bash scripts/cuda_sanitizer.sh || rc=1; }
# racecheck (shared-memory hazards) is slow: the tensor-core and fp32 tile paths at lengths past one tile
wanted racecheck && { SANITIZER_TOOL=racecheck stage racecheck 150 bash scripts/cuda_sanitizer.sh \
  -k "lengths_match_reference and (97 or 512) or graphs" || rc=1; }
wanted tests && grep -E "passed|failed|error|skipped" "$OUT/tests.log" | tail -3
wanted bench && tail -30 "$OUT/bench.log"
rm -rf "$BIN"
exit $rc
