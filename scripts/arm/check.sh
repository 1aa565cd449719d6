#!/usr/bin/env bash
# CI stage "arm": a real aarch64 build of sqbert_fast._C (g++-aarch64-linux-gnu + the project's
# CMakeLists via scripts/arm/aarch64-toolchain.cmake) and tests/arm/test_neon_qemu.py run under
# qemu-aarch64 with an aarch64 Python 3.11 + numpy + pytest sysroot (scripts/arm/sysroot.sh),
# twice: on qemu's default CPU (ARMv8.x "max": fp16 + dotprod + i8mm HWCAPs, so the smmla and sdot
# int8 GEMMs run and are checked bit for bit against i8_scalar) and as a Cortex-A53 (ARMv8.0), which
# proves the run-time dispatch falls back. Nothing is written into the repo;
# everything lives under $SQF_ARM_CACHE (default ~/.cache/sqbert_fast/arm) and is reused, so a
# second run only rebuilds what changed. Installs the cross tools with apt when run as root.
#
# usage: scripts/arm/check.sh [--bench]   env: SQF_ARM_CACHE, PYTHON (host python3.11 with pybind11)
#   --bench: also cross-build benchmarks/arm/bench_encoder and run tiny cases under qemu -cpu max (a
#            smoke test of the benchmark, fp32 and int8 on i8_neon_i8mm, plus --int8-gemm, which checks
#            every int8 variant against i8_scalar; ~1-2 more minutes on a cold cache; qemu timings mean
#            nothing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SQF_ARM_CACHE="${SQF_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sqbert_fast/arm}"
CACHE=$SQF_ARM_CACHE
SYSROOT="$CACHE/sysroot"
BUILD="$CACHE/build"
PKG="$CACHE/pkg"
START=$SECONDS
BENCH=0
for a in "$@"; do
  case $a in
    --bench) BENCH=1 ;;
    *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
  esac
done

say() { echo "== arm [$((SECONDS - START))s]: $*"; }
die() { echo "scripts/arm/check.sh: FAILED: $*" >&2; exit 1; }

# ---- tools -----------------------------------------------------------------------------------
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  [[ $(id -u) == 0 ]] || die "needs aarch64-linux-gnu-g++ and qemu-aarch64: apt-get install -y g++-aarch64-linux-gnu qemu-user"
  say "installing g++-aarch64-linux-gnu qemu-user"
  apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null; } ||
    die "apt-get install g++-aarch64-linux-gnu qemu-user failed"
fi
PY=${PYTHON:-python3}
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "no host python ($PY)"
[[ $PYVER == 3.11 ]] || die "host python must be 3.11 like the arm64 sysroot's (got $PY = $PYVER); set PYTHON"
PYBIND11_DIR=$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())' 2>/dev/null) ||
  die "pybind11 is not importable by $PY (pip install pybind11)"

# ---- aarch64 Python sysroot (cached) ---------------------------------------------------------
say "sysroot"
PYTHON="$PY" bash "$ROOT/scripts/arm/sysroot.sh" >/dev/null || die "could not build the aarch64 sysroot"

# ---- cross build (incremental) ---------------------------------------------------------------
say "cross-building _C for aarch64"
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if [[ -f "$BUILD/CMakeCache.txt" ]] && ! grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT\$" "$BUILD/CMakeCache.txt"; then
  rm -rf "$BUILD"  # configured for another checkout
fi
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/scripts/arm/aarch64-toolchain.cmake" -DSQF_ARM_SYSROOT="$SYSROOT" \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$PYBIND11_DIR" \
  -DSQBERT_FAST_BUILD_CUDA=OFF -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$BUILD/out" >"$CACHE/cmake-configure.log" 2>&1 ||
  { tail -30 "$CACHE/cmake-configure.log" >&2; die "CMake configure for aarch64 failed (log: $CACHE/cmake-configure.log)"; }
cmake --build "$BUILD" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" >"$CACHE/cmake-build.log" 2>&1 ||
  { grep -m20 -B2 -A8 "error" "$CACHE/cmake-build.log" >&2 || tail -30 "$CACHE/cmake-build.log" >&2
    die "aarch64 build failed (log: $CACHE/cmake-build.log)"; }
SO=$(compgen -G "$BUILD/out/_C*.so" | head -1) || die "the build produced no _C*.so in $BUILD/out"
aarch64-linux-gnu-readelf -h "$SO" | grep -q "AArch64" || die "$SO is not an AArch64 ELF"
rm -rf "$PKG" && mkdir -p "$PKG"
# Imported as the top-level module `_C` (the package __init__ imports torch, which qemu cannot run).
cp "$SO" "$PKG/_C.cpython-311-aarch64-linux-gnu.so"

# ---- tests under qemu ------------------------------------------------------------------------
run_tests() {  # $1: qemu CPU model ("max" is qemu-aarch64's default)
  say "pytest tests/arm under qemu-aarch64 -cpu $1"
  env -i PATH="$PATH" HOME="$HOME" PYTHONHOME="$SYSROOT/usr" PYTHONPATH="$PKG:$CACHE/site" \
    PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 SQF_ARM_QEMU_CPU="$1" \
    qemu-aarch64 -L "$SYSROOT" -cpu "$1" "$SYSROOT/usr/bin/python3.11" -m pytest -q -p no:cacheprovider \
    --noconftest --rootdir "$ROOT/tests/arm" -c /dev/null -W error "$ROOT/tests/arm/test_neon_qemu.py" ||
    die "tests/arm/test_neon_qemu.py failed under qemu-aarch64 -cpu $1"
}
run_tests max
run_tests cortex-a53

if ((BENCH)); then
  say "benchmarks/arm/bench_encoder (cross-built, smoke run under qemu)"
  cmake -S "$ROOT/benchmarks/arm" -B "$CACHE/build-bench" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/scripts/arm/aarch64-toolchain.cmake" >"$CACHE/bench-configure.log" 2>&1 &&
    cmake --build "$CACHE/build-bench" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" >"$CACHE/bench-build.log" 2>&1 ||
    die "benchmarks/arm build failed (logs: $CACHE/bench-configure.log, $CACHE/bench-build.log)"
  BENCH_BIN=(qemu-aarch64 -L "$SYSROOT" -cpu max "$CACHE/build-bench/bench_encoder")
  "${BENCH_BIN[@]}" --seq 8 --iters 1 --warmup 0 || die "bench_encoder failed under qemu-aarch64"
  "${BENCH_BIN[@]}" --seq 8 --iters 1 --warmup 0 --layers 2 --int8 --int8-isa i8_neon_i8mm ||
    die "bench_encoder --int8 --int8-isa i8_neon_i8mm failed under qemu-aarch64"
  "${BENCH_BIN[@]}" --list | grep -qx i8_neon_i8mm || die "bench_encoder --list: i8_neon_i8mm not usable on qemu's max CPU"
  "${BENCH_BIN[@]}" --int8-gemm --seq 13 --iters 1 ||
    die "bench_encoder --int8-gemm: an int8 variant differs from i8_scalar under qemu-aarch64"
fi
say "ok"
