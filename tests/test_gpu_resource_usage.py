"""scripts/gpu_resource_usage.py: its parsers and occupancy arithmetic, and a run on the built CUDA module
(no GPU needed: cuobjdump and ptxas read the cubins and PTX inside it)."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil

import pytest

import sqbert_fast

_PATH = os.path.join(os.path.dirname(__file__), "..", "scripts", "gpu_resource_usage.py")
_spec = importlib.util.spec_from_file_location("gpu_resource_usage", _PATH)
gru = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gru)


def test_parsers():
    dump = ("Fatbin elf code:\n================\narch = sm_90a\n\nResource usage:\n Common:\n  GLOBAL:0\n"
            " Function _Z3fooPf:\n  REG:40 STACK:8 SHARED:1024 LOCAL:0 CONSTANT[0]:600 TEXTURE:0\n")
    assert gru.parse_resource_usage(dump) == {("sm_90a", "_Z3fooPf"): dict(REG=40, STACK=8, SHARED=1024, LOCAL=0,
                                                                          TEXTURE=0)}
    log = ("ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90a'\n"
           "ptxas info    : Function properties for _Z3fooPf\n"
           "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers\n")
    assert gru.parse_ptxas(log) == {"_Z3fooPf": dict(stack=8, spill_stores=4, spill_loads=12, regs=40)}
    ptx = ".visible .entry _Z3fooPf(\n .param .u64 p\n)\n.maxntid 256, 1, 1\n{\n ret;\n}\n"
    assert gru.parse_maxntid(ptx) == {"_Z3fooPf": 256}


@pytest.mark.parametrize("regs,threads,smem,blocks,occ,limit", [
    (32, 128, 0, 16, 1.0, "threads"),          # 16 x 4 warps = 64: the thread limit
    (255, 128, 0, 2, 0.125, "registers"),      # 8192 registers a warp -> 8 warps
    (128, 256, 106624, 2, 0.25, "registers"),  # 16 warps by registers, 2 blocks by shared memory too
    (72, 128, 72960, 3, 0.1875, "shared_memory"),
])
def test_occupancy_on_h100(regs, threads, smem, blocks, occ, limit):
    o = gru.occupancy(regs, threads, smem, smem_includes_reserve=True)
    assert (o["blocks_per_sm"], o["occupancy"]) == (blocks, occ) and limit in o["limited_by"]


def test_roofline_counts():
    rows = {r["kernel"]: r for r in gru.roofline(256, 128)}
    T = 256 * 128
    assert rows["ffn_ln"]["gflop"] == pytest.approx(4 * T * 3072 * 192 / 1e9)
    assert rows["ffn_ln"]["bound"] == "compute" and rows["attn_out_ln"]["bound"] == "memory"
    assert {r["bound"] for r in gru.roofline(1, 128)} == {"memory"}


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc: the CUDA module is not built here")
def test_cuda_module_resources_from_cubins():
    so = glob.glob(os.path.join(os.path.dirname(sqbert_fast.__file__), "_C_cuda*.so"))
    assert so, "nvcc is present, so _C_cuda should be built"
    rows = gru.cuda_usage(so[0], "sm_90a", os.path.join(gru.tool_dir(), "cuobjdump"), shutil.which("ptxas"))
    by = {(r["kernel"], r["variant"]): r for r in rows}
    ffn, attn = by[("ffn_fused_kernel", "__half, 64")], by[("attention_kernel", "__half, 64")]
    assert (ffn["threads"], attn["threads"]) == (256, 128)  # __launch_bounds__
    assert ffn["dynamic_smem"] > 64 * 1024 and attn["dynamic_smem"] > 32 * 1024
    for r in rows:  # re-assembling the embedded PTX with the build's flags reproduces the build's cubin
        assert r["regs"] > 0 and r["ptxas_regs"] == r["regs"] and r["spill_stores"] is not None, r
