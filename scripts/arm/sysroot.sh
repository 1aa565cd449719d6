#!/usr/bin/env bash
# Builds (once) an aarch64 sysroot under $SQF_ARM_CACHE that runs Python 3.11 + numpy + pytest
# under qemu-aarch64: Debian bookworm arm64 packages unpacked with `dpkg -x` (no arm64 package
# is installed on the host), the manylinux aarch64 numpy wheel and pure-Python pytest unpacked
# into $SQF_ARM_CACHE/site. Idempotent: a stamp file (plus a check that the key files are still
# there) records a finished sysroot; downloaded .debs and wheels are kept and reused. Delete the
# cache directory to start from scratch.
#
# usage: scripts/arm/sysroot.sh            (sourced by check.sh; prints the sysroot path)
# needs: root for `dpkg --add-architecture arm64` + `apt-get update` the first time.
set -euo pipefail

CACHE="${SQF_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sqbert_fast/arm}"
SYSROOT="$CACHE/sysroot"
SITE="$CACHE/site"
STAMP="$CACHE/sysroot.v1.done"
PY=${PYTHON:-python3}

# The runtime of python3.11 + its extension modules + our _C (libstdc++), and the headers of
# libpython3.11-dev for the cross build. Names are bookworm's.
DEBS=(libc6 libgcc-s1 libstdc++6 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
      libpython3.11-dev libpython3.11 libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libssl3 libuuid1
      libcrypt1)

die() { echo "scripts/arm/sysroot.sh: $*" >&2; exit 1; }

if [[ -f "$STAMP" && -x "$SYSROOT/usr/bin/python3.11" && -f "$SYSROOT/usr/include/python3.11/Python.h" &&
      -d "$SITE/numpy" && -d "$SITE/pytest" ]]; then
  echo "$SYSROOT"
  exit 0
fi
rm -f "$STAMP"

mkdir -p "$CACHE/debs" "$CACHE/wheels"
rm -rf "$SYSROOT" "$SITE"
mkdir -p "$SYSROOT" "$SITE"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  [[ $(id -u) == 0 ]] || die "arm64 is not a dpkg architecture here; run as root once (dpkg --add-architecture arm64)"
  dpkg --add-architecture arm64
  apt-get update -qq || die "apt-get update failed after adding arm64"
fi
(
  cd "$CACHE/debs"
  missing=()
  for p in "${DEBS[@]}"; do compgen -G "${p}_*_arm64.deb" >/dev/null || missing+=("$p:arm64"); done
  if ((${#missing[@]})); then
    apt-get download "${missing[@]}" >/dev/null 2>"$CACHE/apt-download.log" || {
      # stale package lists (versions moved on): refresh once and retry
      [[ $(id -u) == 0 ]] && apt-get update -qq
      apt-get download "${missing[@]}" >/dev/null 2>"$CACHE/apt-download.log" ||
        die "apt-get download failed for ${missing[*]} (see $CACHE/apt-download.log)"
    }
  fi
  for p in "${DEBS[@]}"; do
    deb=$(compgen -G "${p}_*_arm64.deb" | head -1) || die "no arm64 .deb for $p"
    dpkg -x "$deb" "$SYSROOT"
  done
)
[[ -x "$SYSROOT/usr/bin/python3.11" ]] || die "python3.11 missing from the unpacked sysroot"

# numpy (manylinux aarch64 wheel) and pytest with its pure-Python dependencies.
# numpy >= 2.3 ships manylinux_2_28 aarch64 wheels only (bookworm's glibc 2.36 runs them).
if ! compgen -G "$CACHE/wheels/numpy-*aarch64*.whl" >/dev/null || ! compgen -G "$CACHE/wheels/pytest-*.whl" >/dev/null; then
  "$PY" -m pip download -q --dest "$CACHE/wheels" --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    numpy pytest || die "pip download of the aarch64 numpy/pytest wheels failed"
fi
"$PY" - "$CACHE/wheels" "$SITE" <<'EOF' || die "unpacking the wheels failed"
import pathlib, sys, zipfile
wheels, site = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for w in sorted(wheels.glob("*.whl")):
    if "x86_64" in w.name:
        continue
    zipfile.ZipFile(w).extractall(site)
    print("  unpacked", w.name, file=sys.stderr)
EOF
touch "$STAMP"
echo "$SYSROOT"
