#!/usr/bin/env bash
# `make sanitize`: builds sqbert_fast._C with -fsanitize=address,undefined into build/sanitize and runs the
# CPU kernel tests against it (every usable ISA, the hypothesis shape fuzzer, bad input, reliability).
# The sanitized module is imported through a copy of the Python package under build/sanitize/site, ahead
# of the installed one on PYTHONPATH; the script checks that it is the one loaded. Any ASan/UBSan report
# aborts the run (halt_on_error, -fno-sanitize-recover).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
B=build/sanitize
SITE=$B/site
mkdir -p "$B"  # a clean checkout has no build/ yet
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSQBERT_FAST_BUILD_CUDA=OFF \
  -DSQBERT_FAST_NEON_SIMDE=OFF -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/$SITE/sqbert_fast" -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" > "$B/cmake.log"
cmake --build "$B" --target _C
# the package's Python files beside the sanitized _C (and the Triton sources as sqbert_fast._triton)
"$PY" - "$SITE" <<'PYEOF'
import shutil, sys
skip = shutil.ignore_patterns("*.so", "__pycache__")
shutil.copytree("sqbert_fast", f"{sys.argv[1]}/sqbert_fast", ignore=skip, dirs_exist_ok=True)
shutil.copytree("kernels", f"{sys.argv[1]}/sqbert_fast/_triton", ignore=skip, dirs_exist_ok=True)
PYEOF
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
# the sanitized build must be the one imported, or this run would test the normal one
(cd "$B" && "$PY" -c "import os, sqbert_fast._C as C; f = os.path.realpath(C.__file__); print('sanitized _C:', f); \
assert f.startswith(os.path.realpath('site')), f")
"$PY" -m pytest -q -p no:cacheprovider tests/test_fuzz_shapes.py \
  tests/test_cpu_kernels.py tests/test_ops.py tests/test_bad_input.py tests/test_reliability.py "$@"
