#!/usr/bin/env bash
# Runs the cuda backend's GPU tests once under compute-sanitizer (memcheck by default) and fails
# on any reported error. Used by the GPU check script; needs a CUDA device and a build of
# sqbert_fast._C_cuda (pip install --no-build-isolation -e . with nvcc available).
#
#   scripts/cuda_sanitizer.sh                 # memcheck over `pytest -m gpu tests/test_cuda.py`
#   SANITIZER_TOOL=racecheck scripts/cuda_sanitizer.sh -k graphs   # other tool, extra pytest args
#
# PyTorch's caching allocator is switched off so every tensor is its own allocation and an
# out-of-bounds access past a tensor's end is reported instead of landing in a pooled neighbour.
set -euo pipefail
cd "$(dirname "$0")/.."

SANITIZER="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$SANITIZER" && -x "$candidate" ]] && SANITIZER="$candidate"
done
if [[ -z "$SANITIZER" || ! -x "$SANITIZER" ]]; then
  echo "compute-sanitizer not found (set COMPUTE_SANITIZER=/path/to/compute-sanitizer)" >&2
  exit 2
fi
python - <<'PY'
import sys
from sqbert_fast.backends import cuda as cb
if cb._C_cuda is None:
    sys.exit(f"sqbert_fast._C_cuda is not built: {cb._IMPORT_ERROR}")
if cb._C_cuda.device_count() == 0:
    sys.exit(f"no CUDA device: {cb._C_cuda.device_error()}")
PY

export PYTORCH_NO_CUDA_MEMORY_CACHING=1
exec "$SANITIZER" --tool "${SANITIZER_TOOL:-memcheck}" --error-exitcode 1 --target-processes all \
  python -m pytest tests/test_cuda.py -m gpu -q -x -p no:cacheprovider "$@"
