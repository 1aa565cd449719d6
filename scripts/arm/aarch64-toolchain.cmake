# Cross-compiles sqbert_fast._C for aarch64 Linux with Debian's g++-aarch64-linux-gnu (its own
# /usr/aarch64-linux-gnu sysroot provides libc/libstdc++). Python headers come from the arm64
# libpython3.11-dev unpacked by scripts/arm/sysroot.sh: pass -DSQF_ARM_SYSROOT=<that sysroot>
# (scripts/arm/check.sh does).
# The host interpreter (same 3.11) only answers CMake's Python queries; the module suffix is
# fixed up by check.sh. pybind11 headers are the host's (header-only, architecture-free).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SQF_ARM_SYSROOT)  # try_compile re-reads this file
# Without SQF_ARM_SYSROOT (e.g. benchmarks/arm, which needs no Python) only the compilers are set.
if(SQF_ARM_SYSROOT)
  # Python.h's pyconfig.h is a multiarch wrapper including <aarch64-linux-gnu/python3.11/pyconfig.h>:
  # the sysroot's /usr/include is searched last (-idirafter), never shadowing the cross libc headers.
  set(Python_INCLUDE_DIR "${SQF_ARM_SYSROOT}/usr/include/python3.11" CACHE PATH "" FORCE)
  set(CMAKE_CXX_FLAGS_INIT "-idirafter ${SQF_ARM_SYSROOT}/usr/include")
endif()
