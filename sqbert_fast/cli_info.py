"""``sqbert-fast info``: version, build options, CPU/GPU features, and which backends run (and why not)."""

from __future__ import annotations

import json
import platform

import torch

from . import __version__, backends
from .threads import get_num_threads


def collect() -> dict:
    info: dict = {"sqbert_fast": __version__, "python": platform.python_version(), "torch": torch.__version__,
                  "platform": platform.platform(), "threads": get_num_threads()}
    try:
        from . import _C
    except ImportError as e:
        info["cpu_extension"] = f"not built: {e}"
    else:
        info["cpu_extension"] = dict(_C.cpu_info())
        try:
            info["cpu_extension"]["isa_in_use"] = _C.default_isa()
        except ValueError as e:
            info["cpu_extension"]["isa_in_use"] = f"error: {e}"
    try:
        from .backends.cuda import cuda_info
    except ImportError as e:
        info["cuda_extension"] = {"built": False, "error": str(e)}
    else:
        info["cuda_extension"] = cuda_info()
    info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["backends"] = {}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
            key = f"{device}/{str(dtype).replace('torch.', '')}"
            info["backends"][key] = {name: (r or "available") for name, r in backends.reasons(device, dtype).items()}
    info["auto_cuda"] = auto_cuda()
    # int8 (issue 19): the backends that run int8 models here, and the C++ int8 GEMM variant when there is one
    runs = [name for name, r in backends.reasons("cpu", torch.int8).items() if not r]
    int8: dict = {"backends": runs}
    if isinstance(info["cpu_extension"], dict) and info["cpu_extension"].get("int8_isa"):
        int8["cpu_int8_isa"] = info["cpu_extension"]["int8_isa"]
    info["int8"] = int8
    return info


def auto_cuda() -> dict:
    """Which backend ``backend="auto"`` takes on CUDA, and why: on this machine's GPU when there is one,
    else on each card of the timings file (both GPU backends assumed built and installed there)."""
    from . import gpu_timings

    out: dict = {"timings_file": "sqbert_fast/data/gpu_backend_timings.json",
                 "fallback": f"no measurement for the card and dtype: {', '.join(gpu_timings.FALLBACK)}, "
                             "first that can run"}
    if torch.cuda.is_available():
        out["here"] = {}
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            name, why = backends.choose("cuda", dtype)
            out["here"][gpu_timings.dtype_name(dtype)] = {"backend": name or None, "reason": why}
    else:
        out["here"] = None
        out["per_card"] = [row for dtype in (torch.float16, torch.bfloat16, torch.float32)
                           for row in gpu_timings.per_card(dtype)]
    return out


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"sqbert_fast {info['sqbert_fast']}  (python {info['python']}, torch {info['torch']})")
    print(f"platform: {info['platform']}")
    ext = info["cpu_extension"]
    if isinstance(ext, str):
        print(f"C++ extension: {ext}")
    else:
        feats = ", ".join(k for k, v in ext["features"].items() if v) or "none"
        print(f"CPU: {ext['brand'] or ext['vendor']}")
        print(f"CPU features: {feats}")
        print(f"ISA variants built: {', '.join(ext['built_isas'])}; usable here: {', '.join(ext['usable_isas'])}; "
              f"in use: {ext['isa_in_use']}")
        if ext.get("neon_impl") == "simde":
            print("  (neon, neon_fp16 here = the NEON kernels through SIMDe emulation: for tests, never picked "
                  "automatically)")
    cu = info["cuda_extension"]
    if cu.get("built"):
        print(f"CUDA extension: built for {cu.get('archs')}, cudart {cu.get('cudart')}" +
              (f"; {cu['error']}" if cu.get("error") else ""))
    else:
        print(f"CUDA extension: not built ({cu.get('error') or 'no nvcc at build time'})")
    print(f"CUDA device: {info['cuda_device'] or 'none'}")
    i8 = info["int8"]
    print("int8: " + (", ".join(f"{b} ({i8['cpu_int8_isa']})" if b == "cpu" and i8.get("cpu_int8_isa") else b
                                for b in i8["backends"]) or "none"))
    auto = info["auto_cuda"]
    if auto["here"] is not None:
        print("auto on this GPU:")
        for dt, c in auto["here"].items():
            print(f"  {dt:<9} {c['reason'] if c['backend'] else 'none: ' + c['reason']}")
    else:
        print(f"auto on CUDA (no GPU here; what it would take on each card of {auto['timings_file']}):")
        for row in auto["per_card"]:
            print(f"  {row['gpu']} sm_{row['capability'].replace('.', '')} {row['dtype']}: {row['reason']}")
        print(f"  other cards and dtypes: {auto['fallback']}")
    print(f"threads: {info['threads']}")
    print("backends:")
    for key, per in info["backends"].items():
        for name, status in per.items():
            text = status if isinstance(status, str) else "; ".join(status)
            print(f"  {key:<16} {name:<10} {text}")
    return 0
