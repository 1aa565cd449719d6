"""Builds the C++/CUDA extensions through CMake (pybind/cmake_example style).

Options pass through the environment: CMAKE_ARGS (e.g. "-DSQBERT_FAST_BUILD_CUDA=OFF"),
CMAKE_BUILD_PARALLEL_LEVEL, SQBERT_FAST_BUILD_CUDA=0 as a shortcut to skip CUDA.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """One CMake run builds every module; _C_cuda is kept only when CMake produced it (nvcc found)."""

    def build_extension(self, ext: CMakeExtension) -> None:
        if ext.name != "sqbert_fast._C":
            return  # produced by the CMake run of sqbert_fast._C
        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        import pybind11

        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('SQBERT_FAST_BUILD_TYPE', 'Release')}",
        ]
        if os.environ.get("SQBERT_FAST_BUILD_CUDA", "").lower() in ("0", "off", "false", "no"):
            args.append("-DSQBERT_FAST_BUILD_CUDA=OFF")
        if shutil.which("ninja"):
            args.append("-GNinja")
        args += [a for a in os.environ.get("CMAKE_ARGS", "").split() if a]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", str(Path(__file__).parent.resolve()), *args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp, check=True)
        cuda = [e for e in self.extensions if e.name == "sqbert_fast._C_cuda"]
        if cuda and not Path(self.get_ext_fullpath(cuda[0].name)).exists():
            self.extensions.remove(cuda[0])  # CUDA not built here: nothing to install for it


setup(ext_modules=[CMakeExtension("sqbert_fast._C"), CMakeExtension("sqbert_fast._C_cuda")],
      cmdclass={"build_ext": CMakeBuild})
