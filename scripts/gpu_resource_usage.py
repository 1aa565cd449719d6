#!/usr/bin/env python
"""Registers, spills and shared memory of every GPU kernel, from compiled cubins: no GPU or driver needed.

cuda backend: the cubins and PTX inside the built sqbert_fast._C_cuda (`cuobjdump --dump-resource-usage`
for registers, stack, local and static shared memory; `ptxas -v` on the embedded PTX, with the flags the
build used, for spill stores/loads; `.maxntid` of the PTX for threads per block; the launch planners of
_C_cuda for dynamic shared memory at the default config). triton backend: every kernel of
sqbert_fast._triton.compile_gpu compiled in each of its GPU autotune configs for sm_<arch> (triton.compile
with an explicit GPUTarget), read the same way (`ptxas -v` re-run with Triton's own flags; dynamic shared
memory from the compiled metadata). Then the theoretical occupancy on an H100 SXM of each.

    python scripts/gpu_resource_usage.py [--arch 90] [--dtype fp16] [--out DIR] [--no-triton] [--no-cuda]

Prints a Markdown table; --out also writes gpu_resource_usage.{md,json}. Tools: cuobjdump and ptxas from
Triton's bundled CUDA tools (or --cuobjdump / --ptxas; the cuda backend's PTX is assembled with the ptxas
next to nvcc on PATH when there is one, i.e. the build's).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# H100 SXM5 (compute capability 9.0) limits the occupancy below uses (CUDA occupancy calculator values)
H100 = dict(name="H100 SXM", sms=132, regs_per_sm=65536, reg_unit=256, max_regs_per_thread=255,
            smem_per_sm=228 * 1024, smem_per_block=227 * 1024, smem_unit=128, smem_reserved_per_block=1024,
            threads_per_sm=2048, warps_per_sm=64, blocks_per_sm=32)


def tool_dir() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def run(cmd, **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout + r.stderr


# ---- parsing ---------------------------------------------------------------------------------------
def parse_resource_usage(text: str) -> dict:
    """cuobjdump --dump-resource-usage -> {(arch, mangled function): {REG, STACK, SHARED, LOCAL}}."""
    out, arch, fn = {}, None, None
    for line in text.splitlines():
        m = re.match(r"\s*arch = (sm_\w+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            fn = m.group(1)
            continue
        if fn and "REG:" in line:
            out[(arch, fn)] = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", line)}
            fn = None
    return out


def parse_ptxas(text: str) -> dict:
    """ptxas -v output -> {function: {stack, spill_stores, spill_loads, regs}}."""
    out, fn = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line) or re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            fn = m.group(1)
            out.setdefault(fn, {})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and fn:
            out[fn].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and fn:
            out[fn]["regs"] = int(m.group(1))
    return out


def parse_maxntid(ptx: str) -> dict:
    """PTX entry -> threads per block from .maxntid (launch bounds)."""
    out = {}
    for m in re.finditer(r"\.entry\s+(\S+)\s*\((.*?)\)\s*((?:\.\w+[^{]*)?)\{", ptx, re.S):
        t = re.search(r"\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", m.group(3))
        if t:
            out[m.group(1)] = int(t.group(1)) * int(t.group(2)) * int(t.group(3))
    return out


def demangle(names: list) -> dict:
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt:
        return {n: n for n in names}
    out = run([cxxfilt], input="\n".join(names)).splitlines()
    return dict(zip(names, out))


def short_name(demangled: str) -> tuple[str, str]:
    """'void sqf::cuda::(anonymous namespace)::ffn_fused_kernel<__half, 64>(...)' -> ('ffn_fused_kernel', '__half, 64')."""
    m = re.search(r"(\w+)<(.*?)>\(", demangled)
    return (m.group(1), m.group(2)) if m else (demangled.split("(")[0].split("::")[-1], "")


# ---- occupancy -------------------------------------------------------------------------------------
def occupancy(regs: int, threads: int, smem_block: int, smem_includes_reserve: bool, gpu: dict = H100) -> dict:
    """Theoretical occupancy (resident warps / max warps per SM) and what limits it."""
    warps = -(-threads // 32)
    reg_per_warp = -(-max(regs, 1) * 32 // gpu["reg_unit"]) * gpu["reg_unit"]
    by_regs = (gpu["regs_per_sm"] // reg_per_warp) // warps
    smem = smem_block + (0 if smem_includes_reserve else gpu["smem_reserved_per_block"])
    smem = -(-smem // gpu["smem_unit"]) * gpu["smem_unit"]
    by_smem = gpu["smem_per_sm"] // smem if smem else gpu["blocks_per_sm"]
    by_threads = gpu["threads_per_sm"] // (warps * 32)
    limits = dict(registers=by_regs, shared_memory=by_smem, threads=by_threads, blocks=gpu["blocks_per_sm"])
    blocks = min(limits.values())
    return dict(blocks_per_sm=blocks, warps_per_sm=blocks * warps, occupancy=blocks * warps / gpu["warps_per_sm"],
                limited_by=",".join(k for k, v in limits.items() if v == blocks), smem_per_block=smem)


# ---- cuda backend ----------------------------------------------------------------------------------
def cuda_dynamic_smem() -> dict:
    """kernel short name + dtype -> dynamic shared memory at the default config (the launch planners)."""
    from sqbert_fast import _C_cuda

    out = {}
    for dt, tname in (("float16", "__half"), ("bfloat16", "__nv_bfloat16"), ("float32", "float")):
        out[("ffn_fused_kernel", tname)] = _C_cuda.plan_ffn(128, 768, 3072, 4, 4, dt, 227 * 1024, 132)["smem_bytes"]
        out[("attention_kernel", tname)] = _C_cuda.plan_attention(1, 128, 12, 64, dt)["smem_bytes"]
        out[("embed_ln_kernel", tname)] = 4 * 768 * 4  # kEmbedWarps rows of fp32
        out[("grouped_gemm_kernel", tname)] = 0
    return out


def cuda_usage(so: str, arch: str, cuobjdump: str, ptxas: str) -> list:
    usage = parse_resource_usage(run([cuobjdump, "--dump-resource-usage", so]))
    spills, ntid = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        run([cuobjdump, "-xptx", "all", os.path.abspath(so)], cwd=tmp)
        for ptx in glob.glob(os.path.join(tmp, f"*.{arch}.ptx")):
            with open(ptx) as f:
                text = f.read()
            ntid.update(parse_maxntid(text))
            if ".entry" not in text:
                continue
            # the build's ptxas flags: -O3 (default) and --generate-line-info (-lineinfo in CMakeLists.txt)
            spills.update(parse_ptxas(run([ptxas, "-v", "-lineinfo", f"-arch={arch}", ptx, "-o", os.devnull])))
    names = [fn for (a, fn) in usage if a == arch]
    dem = demangle(names)
    dyn = cuda_dynamic_smem()
    rows = []
    for fn in names:
        u, s = usage[(arch, fn)], spills.get(fn, {})
        kernel, targs = short_name(dem[fn])
        tname = targs.split(",")[0].strip()
        threads = ntid.get(fn)
        rows.append(dict(backend="cuda", kernel=kernel, variant=targs, arch=arch, threads=threads, regs=u["REG"],
                         ptxas_regs=s.get("regs"), stack=u["STACK"], local=u["LOCAL"],
                         spill_stores=s.get("spill_stores"), spill_loads=s.get("spill_loads"),
                         static_smem=u["SHARED"], dynamic_smem=dyn.get((kernel, tname))))
    return sorted(rows, key=lambda r: (r["kernel"], r["variant"]))


# ---- triton backend --------------------------------------------------------------------------------
def triton_usage(capability: int, dtype: str, cuobjdump: str) -> list:
    from triton import knobs

    from sqbert_fast._triton import compile_gpu

    ptxas = knobs.nvidia.ptxas.path
    arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in compile_gpu.cases():
            for config in case.configs:
                c = compile_gpu.compile_case(case, config, dtype, capability)
                cubin, ptx = os.path.join(tmp, "k.cubin"), os.path.join(tmp, "k.ptx")
                with open(cubin, "wb") as f:
                    f.write(c.asm["cubin"])
                with open(ptx, "w") as f:
                    f.write(c.asm["ptx"])
                u = next(iter(parse_resource_usage(run([cuobjdump, "--dump-resource-usage", cubin])).values()))
                # Triton's own ptxas call (backends/nvidia/compiler.py make_cubin), -v kept
                s = next(iter(parse_ptxas(run([ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}",
                                               ptx, "-o", os.path.join(tmp, "k2.cubin")])).values()))
                cfg = ", ".join(f"{k}={v}" for k, v in config.kwargs.items()) if config else ""
                warps = c.metadata.num_warps
                rows.append(dict(backend="triton", kernel=c.metadata.name, variant=case.label, config=cfg,
                                 num_warps=warps, num_stages=c.metadata.num_stages, arch=arch, threads=warps * 32,
                                 regs=u["REG"], ptxas_regs=s.get("regs"), stack=u["STACK"], local=u["LOCAL"],
                                 spill_stores=s.get("spill_stores"), spill_loads=s.get("spill_loads"),
                                 static_smem=u["SHARED"], dynamic_smem=c.metadata.shared))
    return rows


# ---- roofline (estimates from the shapes; nothing here is measured) -------------------------------
PEAK = dict(flops=989e12, bytes=3.35e12)  # H100 SXM: dense fp16 tensor-core FLOP/s, HBM3 bytes/s


def roofline(batch: int, seq: int, e: int = 2, H: int = 768, heads: int = 12, G: int = 4, inter: int = 3072,
             block_m: int = 64) -> list:
    """Per kernel call of one encoder layer (and the embeddings, once per forward) at batch x seq, default
    config, e-byte activations: the FLOPs the op needs, the bytes it must move to and from HBM at least
    (every operand read once, every output written once), what each backend adds, and the time at peak."""
    T, Hg, Ig = batch * seq, H // G, inter // G
    qb = -(-seq // block_m)  # query blocks per sequence: triton recomputes K/V projections for each
    rows = []

    def add(kernel, flops, nbytes, note):
        t_c, t_m = flops / PEAK["flops"], nbytes / PEAK["bytes"]
        rows.append(dict(shape=f"{batch}x{seq}", kernel=kernel, gflop=flops / 1e9, mbytes=nbytes / 1e6,
                         intensity=flops / nbytes, bound="compute" if t_c > t_m else "memory",
                         best_us=max(t_c, t_m) * 1e6, note=note))

    proj, attn = 3 * 2 * T * H * Hg, 4 * batch * seq * seq * H
    add("qkv_attention", proj + attn, e * (2 * T * H + 3 * H * Hg + 3 * H) + T + 8 * (batch + 1),
        f"triton recomputes K/V per {block_m}-query block: {(proj / 3 * (1 + 2 * qb) + attn) / 1e9:.3g} GFLOP executed; "
        f"cuda writes and re-reads Q/K/V: +{e * 2 * 3 * T * H / 1e6:.3g} MB")
    add("attn_out_ln", 2 * T * H * Hg, e * (3 * T * H + H * Hg + 3 * H), "LayerNorm FLOPs ignored")
    add("ffn_ln", 4 * T * inter * Hg, e * (2 * T * H + 2 * inter * Hg + inter + 3 * H),
        f"a split small batch adds fp32 partials: n_split x {4 * 2 * T * H / 1e6:.3g} MB")
    add("embed_ln (once per forward)", 10 * T * H, 3 * 8 * T + e * (2 * T * H + min(T, seq) * H + 2 * H),
        "word rows gathered once each")
    return rows


def roofline_table(rows: list) -> str:
    lines = ["| shape | kernel | GFLOP | MB moved (min) | FLOP/B | bound | best us (at peak) | note |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['kernel']} | {r['gflop']:.3g} | {r['mbytes']:.3g} | {r['intensity']:.0f} | "
                     f"{r['bound']} | {r['best_us']:.3g} | {r['note']} |")
    return "\n".join(lines)


# ---- report ----------------------------------------------------------------------------------------
def add_occupancy(rows: list) -> list:
    for r in rows:
        if r["threads"]:
            # sm_90 cubins count the 1 KB per-block system reserve in their static shared memory; sm_80 ones do not
            o = occupancy(r["regs"], r["threads"], r["static_smem"] + (r["dynamic_smem"] or 0),
                          smem_includes_reserve=r["arch"].startswith("sm_9"))
            r.update(o)
    return rows


def table(rows: list) -> str:
    head = ("| backend | kernel | variant | config | threads | regs | spill st/ld B | stack B | smem static + dyn B "
            "| blocks/SM | occupancy (H100) | limited by |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        spill = "?" if r["spill_stores"] is None else f"{r['spill_stores']}/{r['spill_loads']}"
        cfg = r.get("config") or ""
        if r.get("num_warps"):
            cfg = (cfg + ", " if cfg else "") + f"w{r['num_warps']} s{r['num_stages']}"
        dyn = "?" if r["dynamic_smem"] is None else r["dynamic_smem"]
        occ = f"{r['occupancy']:.0%} ({r['warps_per_sm']} warps)" if "occupancy" in r else "?"
        lines.append(f"| {r['backend']} | {r['kernel']} | {r['variant']} | {cfg} | {r['threads'] or '?'} | {r['regs']} "
                     f"| {spill} | {r['stack']} | {r['static_smem']} + {dyn} | {r.get('blocks_per_sm', '?')} | {occ} "
                     f"| {r.get('limited_by', '?')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    os.environ["TRITON_INTERPRET"] = "0"  # compile, not interpret (before anything imports triton)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (default 90: sm_90a)")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"), help="Triton activation dtype")
    p.add_argument("--so", help="the built _C_cuda module (default: next to the imported sqbert_fast)")
    p.add_argument("--cuobjdump", default=os.path.join(tool_dir(), "cuobjdump"))
    p.add_argument("--ptxas", default=shutil.which("ptxas") or os.path.join(tool_dir(), "ptxas"),
                   help="ptxas for the cuda backend's PTX (default: the one on PATH, the build's)")
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--out", help="also write gpu_resource_usage.md and .json here")
    p.add_argument("--roofline", action="store_true", help="only print the roofline estimate (1x128, 256x128)")
    args = p.parse_args(argv)
    if args.roofline:
        print(roofline_table(roofline(1, 128) + roofline(256, 128)))
        return 0
    arch = f"sm_{args.arch}a" if args.arch >= 90 else f"sm_{args.arch}"
    rows = []
    if not args.no_cuda:
        so = args.so
        if so is None:
            import sqbert_fast

            found = glob.glob(os.path.join(os.path.dirname(sqbert_fast.__file__), "_C_cuda*.so"))
            if not found:
                print("no _C_cuda module built (build with -DSQBERT_FAST_BUILD_CUDA=ON, or --no-cuda)", file=sys.stderr)
                return 2
            so = found[0]
        rows += cuda_usage(so, arch, args.cuobjdump, args.ptxas)
        if not any(r["arch"] == arch for r in rows):
            print(f"the module has no {arch} code (built for other CUDA architectures)", file=sys.stderr)
            return 2
    if not args.no_triton:
        rows += triton_usage(args.arch, args.dtype, args.cuobjdump)
    add_occupancy(rows)
    text = table(rows)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_resource_usage.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out, "gpu_resource_usage.json"), "w") as f:
            json.dump(dict(gpu_limits=H100, arch=arch, triton_dtype=args.dtype, kernels=rows), f, indent=2)
    mismatch = [r for r in rows if r["ptxas_regs"] is not None and r["ptxas_regs"] != r["regs"]]
    for r in mismatch:
        print(f"note: {r['kernel']} {r['variant']}: ptxas -v says {r['ptxas_regs']} registers, the cubin {r['regs']} "
              "(spill counts come from the ptxas run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
