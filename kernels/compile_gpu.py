# Ahead-of-time compilation of every Triton kernel for a GPU target, without a GPU or a driver.
#
# triton.compile on an ASTSource with an explicit GPUTarget runs the whole pipeline (TTIR -> TTGIR ->
# LLVM -> PTX -> cubin through Triton's bundled ptxas) on the CPU. tests/test_triton.py uses it to
# catch what only code generation sees (layouts, shared memory, constexpr misuse); and
# scripts/gpu_resource_usage.py reads registers, spills and shared memory from the cubins.
# Needs TRITON_INTERPRET=0 (under the interpreter the kernels are not JIT functions).
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import triton


@dataclass
class Case:
    """One kernel specialisation: the constexprs a launch of the default config passes."""
    label: str                 # what the specialisation is (the path of the op it serves)
    kernel: object             # the @triton.jit (or autotuned) function
    pointers: dict             # pointer arguments that are not of the activation dtype
    consts: dict               # constexpr arguments besides the autotuned ones
    configs: list              # the GPU autotune configs ([None]: not autotuned, num_warps/num_stages below)
    num_warps: int = 4
    num_stages: int = 1


def cases() -> list:
    """Every kernel of the triton backend, specialised as the default SqueezeBERT config launches it."""
    from . import attn_out_ln as aol, common, embed_ln as emb, ffn_ln as ffn, qkv_attention as qkv

    return [
        Case("attn_out_ln, rows owned (LayerNorm fused)", aol._linear_kernel, dict(lo_ptr="*i32"),
             dict(BLOCK_N=64, ACT=-1, HAS_RES=True, FUSE_LN=True, BLOCK_C=256), aol._GPU_CONFIGS),
        Case("attn_out_ln, column-split (small batch)", aol._linear_kernel, dict(lo_ptr="*i32"),
             dict(BLOCK_N=64, ACT=-1, HAS_RES=True, FUSE_LN=False, BLOCK_C=256), aol._GPU_CONFIGS),
        Case("grouped linear + GELU (unfused FFN path, not the default config's)", aol._linear_kernel,
             dict(lo_ptr="*i32"), dict(BLOCK_N=128, ACT=0, HAS_RES=False, FUSE_LN=False, BLOCK_C=256),
             aol._GPU_CONFIGS),
        Case("ffn_ln, rows owned (LayerNorm fused)", ffn._ffn_ln_kernel, dict(loi_ptr="*i32", part_ptr="*fp32"),
             dict(BI=64, BLOCK_O=256, ACT=0, FUSE_LN=True, SPLIT_K=False, BLOCK_C=256), ffn._GPU_CONFIGS),
        Case("ffn_ln, intermediate split (small batch)", ffn._ffn_ln_kernel, dict(loi_ptr="*i32", part_ptr="*fp32"),
             dict(BI=64, BLOCK_O=256, ACT=0, FUSE_LN=False, SPLIT_K=True, BLOCK_C=256), ffn._GPU_CONFIGS),
        Case("ffn_ln split sum + LayerNorm", ffn._split_sum_ln_kernel, dict(part_ptr="*fp32"),
             dict(BLOCK_T=4, BLOCK_C=1024), [None]),
        Case("qkv_attention", qkv._qkv_attention_kernel,
             dict(loq_ptr="*i32", lok_ptr="*i32", lov_ptr="*i32", cu_ptr="*i64", kv_ptr="*u8", soff_ptr="*i64"),
             dict(BLOCK_D=64, WANT_SCORES=False), qkv._GPU_CONFIGS),
        Case("qkv_attention with scores", qkv._qkv_attention_kernel,
             dict(loq_ptr="*i32", lok_ptr="*i32", lov_ptr="*i32", cu_ptr="*i64", kv_ptr="*u8", soff_ptr="*i64"),
             dict(BLOCK_D=64, WANT_SCORES=True), qkv._GPU_CONFIGS),
        Case("embed_ln", emb._embed_ln_kernel, dict(ids_ptr="*i64", pos_ptr="*i64", typ_ptr="*i64"),
             dict(HAS_IDS=True, BLOCK_T=8, BLOCK_C=256), [None]),
        Case("row LayerNorm (after a column-split GEMM)", common._layer_norm_kernel, {},
             dict(BLOCK_T=4, BLOCK_C=1024), [None]),
    ]


def jit_function(kernel):
    fn = kernel
    while not isinstance(fn, triton.runtime.JITFunction):  # unwrap the autotuner
        fn = fn.fn
    return fn


def compile_case(case: Case, config: Optional[triton.Config], dtype: str = "fp16", capability: int = 90):
    """triton.compile of one case and config ("fp16" / "bf16" / "fp32" activations) for sm_<capability>."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = jit_function(case.kernel)
    p, prec = "*" + dtype, "ieee" if dtype == "fp32" else "tf32"
    consts = dict(case.consts, **(dict(config.kwargs) if config else {}))
    if "PREC" in fn.arg_names:
        consts["PREC"] = prec
    sig = {a: "constexpr" if a in consts else case.pointers.get(a, p if a.endswith("_ptr") else "i32")
           for a in fn.arg_names}
    sig.update({a: "fp32" for a in ("eps", "sm_scale", "lowest") if a in sig})
    src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    warps = config.num_warps if config else case.num_warps
    stages = config.num_stages if config else case.num_stages
    return triton.compile(src, target=GPUTarget("cuda", capability, 32), options=dict(num_warps=warps, num_stages=stages))
