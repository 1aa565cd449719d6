"""``sqbert-fast bench``: latency of sqbert_fast's backends against the engines people would pick instead.

    sqbert-fast bench --quick --out bench-out          # a couple of minutes on 2 cores, default model
    sqbert-fast bench --providers cpu,onnxruntime --shapes 1x128,8x128,mixed8x128 --precisions fp32
    sqbert-fast bench --quick --out new --compare old/bench.json

Method. Every provider is prepared first (load, export, compile: timed per phase, reported apart
from latency). Then, shape by shape, the providers are timed *round-robin* (one call each per
round) so that the load of a shared machine falls on all of them alike and same-run ratios stay
meaningful; medians and p90 are of those per-call wall times. The first call of each provider at
each shape is timed separately (it is where torch.compile compiles) and excluded. Each output is
compared with transformers fp32 on the non-padded positions. Each row keeps its per-round times, and our
rows get, per peer, the median and quartiles of the per-round ratios (calls seconds apart) beside the
ratio of medians. ``--gap-ms``/``--settle`` give each timed call an idle gap and untimed calls before it
(the fair method of benchmarks/bench_cpu.py); ``--timer cuda-events`` times GPU work by CUDA events
(benchmarks/bench_gpu.py). ``--markdown bench.json`` renders a saved run's README table.

FLOPs are the GEMM work of the encoder counted on the real (unpadded) lengths (``encoder_flops``),
so GFLOP/s is useful work per second, and a padded engine pays for its padding. Each row is given as
% of two ceilings of this machine: the theoretical peak (cores x clock x FLOPs/cycle of the ISA in
use, ``theoretical_peak``) and our own kernel's best GFLOP/s on a large GEMM-bound op
(``measure_kernel_peak``: the practical peak). torch.matmul is shown as a peer's number only: on some
CPUs (MKL on AMD) it is far below what the CPU can do.

Any CPU, in minutes. Precisions this CPU would emulate (bf16 without AVX512-BF16/AMX, where PyTorch
runs about 0.2 GFLOP/s) are left out before anything runs, each with the reason (``select_cells``);
``SQBERT_FAST_FORCE_CPU_ISA`` makes the run behave as on a CPU whose best ISA is the forced one. A
provider whose first call at a shape exceeds ``--call-limit`` is reported and dropped from later
shapes; timing at a shape stops at ``--shape-limit`` even below ``--min-reps``. Progress lines (with
the elapsed time) go to stderr as the run goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

SCHEMA = "sqbert_fast.bench/1"
QUICK_SHAPES = "1x128,8x128,mixed8x128"
FULL_SHAPES = "1x32,1x128,1x512,8x32,8x128,8x512,32x32,32x128,32x512,mixed32x128"
# openvino: fp32, its own default (bf16 on AMX / AVX512-BF16 CPUs) and int8 (NNCF); onnxruntime's CPU EP: fp32 and
# int8 (quantize_dynamic). int8 peers quantize with their own recipe (peers.prepare_int8).
QUICK_PROVIDERS = ("reference:fp32", "cpu", "cuda", "triton", "transformers", "onnxruntime:fp32", "onnxruntime:int8",
                   "openvino:fp32", "openvino:default", "openvino:int8")
FULL_PROVIDERS = ("reference", "cpu", "cuda", "triton", "transformers", "torch.compile", "onnxruntime:fp32",
                  "onnxruntime:int8", "openvino:fp32", "openvino:default", "openvino:int8")
DEFAULT_PRECISIONS = "fp32,bf16,int8"
PEER_NAMES = ("transformers", "torch.compile", "onnxruntime", "openvino")
# max |diff| vs transformers fp32 on non-padded positions; bf16/fp16 get 3x transformers' own error in
# that precision when it was measured in the run (DESIGN §5), else this floor
# int8: a gate against garbage only (per-token activation quantization moves hidden states by ~0.1 on real
# weights); int8 accuracy is proven on real text by sqbert_fast.int8_eval (cosine, retrieval overlap)
TOL = {"fp32": 1e-4, "bf16": 0.25, "fp16": 0.05, "int8": 2.0}


# ---- FLOPs ------------------------------------------------------------------------------------
def encoder_flops(config, seqlens) -> int:
    """GEMM FLOPs (2 per multiply-add) of one encoder forward over sequences of these lengths.

    Per token per layer: each grouped 1x1 conv costs in_per_group * out * 2 (q, k, v, post-attention,
    intermediate, output); attention costs 4 * L * d per head (QK^T and PV, L = that sequence's
    length). Embeddings, LayerNorm, softmax, GELU and the pooler are left out: they are not GEMM work.
    """
    h, i = config.hidden_size, config.intermediate_size
    conv = 2 * (h * h // config.q_groups + h * h // config.k_groups + h * h // config.v_groups
                + h * h // config.post_attention_groups + h * i // config.intermediate_groups
                + i * h // config.output_groups)
    total = 0
    for n in seqlens:
        n = int(n)
        total += n * conv + 4 * n * n * h  # 4 * L * d * heads per token, heads * d = hidden
    return total * config.num_hidden_layers


# ---- shapes -----------------------------------------------------------------------------------
@dataclass
class Shape:
    name: str
    batch: int
    seq: int
    mixed: bool = False

    def seqlens(self) -> list[int]:
        if not self.mixed:
            return [self.seq] * self.batch
        # deterministic spread from seq/8 to seq, one full-length row (it sets the padded width)
        lo = max(1, self.seq // 8)
        if self.batch == 1:
            return [self.seq]
        return [self.seq] + [lo + (self.seq - lo) * k // (self.batch - 1) for k in range(self.batch - 1)]

    def inputs(self, vocab_size: int, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, vocab_size, (self.batch, self.seq), generator=g)
        mask = torch.zeros(self.batch, self.seq, dtype=torch.long)
        for b, n in enumerate(self.seqlens()):
            mask[b, :n] = 1
        ids = ids * mask  # pad id 0 where masked
        return ids, mask


def parse_shapes(spec: str, max_len: Optional[int] = None) -> list[Shape]:
    """"8x128,mixed32x128" -> shapes; batch x padded sequence length."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        mixed = item.startswith("mixed")
        body = item[5:] if mixed else item
        try:
            b, s = (int(v) for v in body.lower().split("x"))
        except ValueError:
            raise ValueError(f"bad shape {item!r}: use BATCHxSEQ or mixedBATCHxSEQ, e.g. 8x128") from None
        if b < 1 or s < 1:
            raise ValueError(f"bad shape {item!r}: batch and sequence length must be >= 1")
        if max_len is not None and s > max_len:
            raise ValueError(f"shape {item!r}: sequence length {s} > max_position_embeddings {max_len}")
        out.append(Shape(item, b, s, mixed))
    if not out:
        raise ValueError("no shapes given")
    return out


def parse_providers(spec, precisions: list[str]) -> list[tuple[str, str]]:
    """"cpu,openvino:default" -> [(provider, precision)]; entries without ':' take every precision."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str]] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if ":" in item:
            name, prec = item.split(":", 1)
            cells = [(name, prec)]
        else:
            cells = [(item, p) for p in precisions]
        for c in cells:
            if c not in out:
                out.append(c)
    return out


# ---- timing statistics --------------------------------------------------------------------------
def percentile(values, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(times_s: list[float]) -> dict:
    return {"median_ms": statistics.median(times_s) * 1e3, "p90_ms": percentile(times_s, 90) * 1e3,
            "mean_ms": statistics.fmean(times_s) * 1e3, "min_ms": min(times_s) * 1e3, "reps": len(times_s)}


def paired_ratio(mine: list, peer: list) -> tuple[float, float, float]:
    """(median, first quartile, third quartile) of the per-round speed-ups peer[r] / mine[r].

    Round r's two calls were made seconds apart, so the machine's slower minute-to-minute swings cancel
    in each ratio, where the ratio of two medians keeps them."""
    ratios = [p / m for m, p in zip(mine, peer)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return med, q1, q3


# ---- machine ----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int, device: str) -> dict:
    import torch

    from .peers import versions

    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads, "device": device,
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions()}
    try:
        from . import _C

        ci = _C.cpu_info()
        info["isa"] = {"best": ci.get("best_isa"), "usable": ci.get("usable_isas"),
                       "features": [k for k, v in ci.get("features", {}).items() if v]}
        try:
            info["isa"]["in_use"] = _C.default_isa()
        except Exception as e:  # noqa: BLE001 - a bad SQBERT_FAST_FORCE_CPU_ISA is reported, not fatal
            info["isa"]["in_use"] = f"error: {e}"
    except ImportError as e:
        info["isa"] = {"error": f"C++ extension not built: {e}"}
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if info["gpu"] is not None:
        info["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    info["commit"] = git_commit()
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def git_commit() -> Optional[str]:
    """Short hash of the checkout being measured (None outside a git checkout): a result names its code."""
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


# ---- this CPU: which precisions it runs natively, and its peak ---------------------------------
# features each ISA variant of the cpu backend implies; SQBERT_FAST_FORCE_CPU_ISA=<variant> makes the
# benchmark treat the CPU as having only these (the run behaves as on a CPU whose best variant it is)
ISA_FEATURES = {
    "scalar": frozenset(),
    "avx2": frozenset({"avx2", "fma"}),
    "avx512": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni"}),
    "avx512_bf16": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni",
                              "avx512_bf16"}),
    "amx": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni",
                      "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "amx_permitted"}),
    "neon": frozenset({"neon", "asimddp"}),
    "neon_fp16": frozenset({"neon", "asimdhp", "asimddp"}),
}
# flags read from /proc/cpuinfo that _C.cpu_info() does not report (ARM bf16, x86 fp16 arithmetic)
_EXTRA_FLAGS = ("bf16", "avx512_fp16", "amx_fp16")


# (precision, arch) -> (feature sets any one of which runs it natively, what happens without, what is missing)
_NATIVE_WITH = {
    ("bf16", "x86"): ((("avx512_bf16",), ("amx_bf16", "amx_permitted")), "be emulated", "AVX512-BF16/AMX"),
    ("bf16", "arm"): ((("bf16",),), "be emulated", "ARM BF16 extension"),
    ("fp16", "x86"): ((("avx512_fp16",), ("amx_fp16",)), "be emulated", "AVX512-FP16/AMX-FP16"),
    ("fp16", "arm"): ((("asimdhp",),), "be emulated", "ARMv8.2-A FP16 arithmetic"),
    ("int8", "x86"): ((("avx2",), ("avx512_vnni",), ("amx_int8", "amx_permitted")), "run the scalar variant",
                      "AVX2/VNNI/AMX-INT8"),
    ("int8", "arm"): ((("asimddp",),), "run the scalar variant", "NEON dot product"),
}


@dataclass
class CpuCaps:
    """What the benchmark believes this CPU runs: features (after a forced ISA), vendor, family/model."""

    arch: str                      # "x86" or "arm"
    features: frozenset
    vendor: str = ""
    family: Optional[int] = None
    model: Optional[int] = None
    isa: Optional[str] = None      # the cpu backend's variant in use
    forced: Optional[str] = None   # SQBERT_FAST_FORCE_CPU_ISA, when it names a known variant
    neon_impl: Optional[str] = None

    def has(self, *names: str) -> bool:
        return all(n in self.features for n in names)

    def restricted(self, isa: str) -> "CpuCaps":
        """These caps as seen by one ISA variant (features above it hidden)."""
        keep = ISA_FEATURES.get(isa, frozenset())
        if isa in ("amx", "neon_fp16"):  # the top variants hide nothing
            keep = keep | frozenset(_EXTRA_FLAGS)
        feats = frozenset(f for f in self.features if f in keep)
        return CpuCaps(self.arch, feats, self.vendor, self.family, self.model, isa, self.forced, self.neon_impl)

    def native(self) -> list[str]:
        """The precisions this CPU runs natively, in the order reports list them."""
        return [p for p in ("fp32", "bf16", "fp16", "int8") if self.emulated(p) is None]

    def emulated(self, precision: str) -> Optional[str]:
        """None when ``precision`` runs natively here, else why it would be emulated."""
        if (precision, self.arch) not in _NATIVE_WITH:
            return None  # fp32 (and "default") run natively everywhere
        feature_sets, fallback, missing = _NATIVE_WITH[precision, self.arch]
        if any(self.has(*names) for names in feature_sets):
            return None
        forced = f"; SQBERT_FAST_FORCE_CPU_ISA={self.forced}" if self.forced else ""
        return f"{precision} would {fallback} on this CPU (no {missing}{forced})"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict:
    """The first processor block of /proc/cpuinfo as {key: value}."""
    out: dict = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def cpu_caps(info: Optional[dict] = None, cpuinfo_text: Optional[str] = None,
             forced: Optional[str] = "env") -> CpuCaps:
    """This CPU's capabilities: ``info`` is ``_C.cpu_info()`` (read when None), ``cpuinfo_text`` the text of
    /proc/cpuinfo (read when None), ``forced`` the forced ISA variant (default: $SQBERT_FAST_FORCE_CPU_ISA).
    Tests pass all three to stand in for another CPU."""
    if info is None:
        try:
            from . import _C

            info = _C.cpu_info()
        except ImportError:
            info = {}
    if cpuinfo_text is None:
        cpuinfo_text = _read("/proc/cpuinfo")
    if forced == "env":
        forced = os.environ.get("SQBERT_FAST_FORCE_CPU_ISA") or None
    fields = _cpuinfo_fields(cpuinfo_text)
    feats = {k for k, v in (info.get("features") or {}).items() if v}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    feats |= {f for f in _EXTRA_FLAGS if f in flags}
    vendor = info.get("vendor") or fields.get("vendor_id") or ""
    arm = "neon" in feats or "asimd" in flags or (not fields and platform.machine().lower() in ("aarch64", "arm64"))

    def num(key):
        try:
            return int(fields[key], 0)
        except (KeyError, ValueError):
            return None

    caps = CpuCaps("arm" if arm else "x86", frozenset(feats), vendor, num("cpu family"), num("model"),
                   info.get("best_isa"), None, info.get("neon_impl"))
    if forced in ISA_FEATURES:
        caps = caps.restricted(forced)
        caps.forced = forced
    return caps


def openvino_default_precision(caps: CpuCaps) -> str:
    """What OpenVINO's CPU plugin runs without a precision hint: bf16 where bf16 is native on x86, fp16 on
    ARM cores with fp16 arithmetic, fp32 elsewhere."""
    if caps.arch == "x86":
        return "bf16" if caps.emulated("bf16") is None else "fp32"
    return "fp16" if caps.emulated("fp16") is None else "fp32"


def skip_reason(provider: str, precision: str, caps: CpuCaps, device: str = "cpu",
                cells=()) -> Optional[str]:
    """Why the benchmark leaves (provider, precision) out on this CPU (None: run it).

    Left out: a precision this CPU would emulate (emulated bf16 runs at a fraction of a GFLOP/s, a single
    call can take minutes); an ISA variant above a forced one, or NEON emulated through SIMDe; OpenVINO's
    "default" where it would be fp32 and openvino:fp32 is run anyway."""
    from .peers import split_isa

    backend, isa = split_isa(provider)
    if backend in ("cuda", "triton") or (str(device).startswith("cuda") and provider in ("transformers", "torch.compile")):
        return None  # GPU work: the CPU's features do not matter (off a GPU these say why themselves)
    if isa is not None:
        if caps.forced and isa in ISA_FEATURES and not ISA_FEATURES[isa] <= ISA_FEATURES[caps.forced]:
            return f"ISA variant {isa} is above the forced SQBERT_FAST_FORCE_CPU_ISA={caps.forced}"
        if isa.startswith("neon") and caps.neon_impl == "simde":
            return f"{isa} runs emulated through SIMDe on this x86 CPU"
        caps = caps.restricted(isa)
    if provider == "openvino" and precision == "default":
        ov = openvino_default_precision(caps)
        if ov == "fp32" and ("openvino", "fp32") in list(cells):
            why = caps.emulated("bf16" if caps.arch == "x86" else "fp16")
            return f"openvino's default precision here is fp32, the same run as openvino:fp32 ({why})"
        return None
    return caps.emulated(precision)


def select_cells(cells, caps: CpuCaps, device: str = "cpu") -> tuple[list, list]:
    """(cells to run, [{"provider", "precision", "reason"}] left out and why)."""
    keep, skipped = [], []
    for prov, prec in cells:
        why = skip_reason(prov, prec, caps, device, cells)
        if why:
            skipped.append({"provider": prov, "precision": prec, "reason": f"skipped: {why}"})
        else:
            keep.append((prov, prec))
    return keep, skipped


def cpu_clock_ghz(max_freq_text: Optional[str] = None, lscpu_text: Optional[str] = None,
                  cpuinfo_text: Optional[str] = None) -> tuple[Optional[float], str]:
    """(GHz, where it came from): cpufreq's cpuinfo_max_freq, else lscpu's "CPU max MHz", else /proc/cpuinfo's
    "cpu MHz" (the current clock of cpu0, what a VM shows). Texts are read when None."""
    if max_freq_text is None:
        max_freq_text = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        khz = float(max_freq_text.strip())
        if khz > 0:
            return khz / 1e6, "cpufreq cpuinfo_max_freq"
    except ValueError:
        pass
    if lscpu_text is None:
        lscpu_text = ""
        if shutil.which("lscpu"):
            try:
                lscpu_text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                            env={**os.environ, "LC_ALL": "C"}).stdout
            except (OSError, subprocess.SubprocessError):
                pass
    for line in lscpu_text.splitlines():
        if line.startswith("CPU max MHz:"):
            try:
                return float(line.split(":", 1)[1]) / 1e3, "lscpu CPU max MHz"
            except ValueError:
                pass
    if cpuinfo_text is None:
        cpuinfo_text = _read("/proc/cpuinfo")
    try:
        return float(_cpuinfo_fields(cpuinfo_text)["cpu MHz"]) / 1e3, "/proc/cpuinfo cpu MHz"
    except (KeyError, ValueError):
        return None, "no clock found (no cpufreq, lscpu max MHz or /proc/cpuinfo cpu MHz)"


def flops_per_cycle(caps: CpuCaps) -> dict:
    """{precision: (FLOPs per cycle per core, basis)} for the precisions this CPU runs natively."""
    out = {}
    zen1 = caps.vendor == "AuthenticAMD" and caps.family == 0x17 and (caps.model or 0) < 0x30
    zen4 = caps.vendor == "AuthenticAMD" and caps.family == 0x19
    if caps.arch == "arm":
        out["fp32"] = (16, "NEON, two 128-bit FMA pipes")
        if caps.emulated("int8") is None:
            out["int8"] = (64, "NEON SDOT, two 128-bit pipes (int8 ops)")
        if caps.emulated("fp16") is None:
            out["fp16"] = (32, "NEON FP16, two 128-bit FMA pipes")
        if caps.emulated("bf16") is None:
            out["bf16"] = (32, "NEON BFDOT, two 128-bit pipes")
        return out
    if caps.has("avx512f"):
        out["fp32"] = (32, "AVX-512 on Zen 4's 256-bit FMA pipes") if zen4 else (64, "AVX-512, two FMA ports")
    elif caps.has("avx2", "fma"):
        out["fp32"] = (16, "AMD Zen 1/Zen+: two 128-bit FMA pipes") if zen1 else (32, "AVX2, two 256-bit FMA pipes")
    else:
        out["fp32"] = (8, "SSE, no FMA: one 128-bit add + one 128-bit multiply")
    if caps.has("amx_bf16", "amx_permitted"):
        out["bf16"] = (1024, "AMX-BF16 tile multiply")
    elif caps.has("avx512_bf16"):
        out["bf16"] = (128, "AVX512-BF16 VDPBF16PS, two ports")
    # int8: OPS per cycle (2 per multiply-add), the int8 variant the cpu backend would pick
    if caps.has("amx_int8", "amx_permitted"):
        out["int8"] = (2048, "AMX-INT8 tile multiply (int8 ops)")
    elif caps.has("avx512_vnni"):
        out["int8"] = (256, "AVX512-VNNI VPDPBUSD, two ports (int8 ops)")
    elif caps.has("avx_vnni"):
        out["int8"] = (128, "AVX-VNNI VPDPBUSD ymm, two ports (int8 ops)")
    elif caps.has("avx2"):
        out["int8"] = ((32, "AMD Zen 1/Zen+: VPMADDWD on two 128-bit pipes (int16 products, int8 ops)") if zen1
                       else (64, "AVX2 VPMADDWD, two ports (int16 products of int8 values, int8 ops)"))
    return out


def physical_cores() -> int:
    """Physical cores (SMT siblings counted once), from sysfs; os.cpu_count() if unknown."""
    seen = set()
    base = "/sys/devices/system/cpu"
    try:
        cpus = [d for d in os.listdir(base) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        cpus = []
    for d in cpus:
        core = _read(f"{base}/{d}/topology/core_id").strip()
        pkg = _read(f"{base}/{d}/topology/physical_package_id").strip()
        if core:
            seen.add((pkg, core))
    return len(seen) or os.cpu_count() or 1


def theoretical_peak(caps: CpuCaps, cores: int, ghz: Optional[float], clock_source: str = "") -> dict:
    """cores x clock x FLOPs/cycle per native precision: {"gflops": {prec: x}, "basis": {prec: text}}."""
    out: dict = {"cores": cores, "clock_ghz": ghz, "clock_source": clock_source, "gflops": {}, "basis": {}}
    for prec, (fpc, what) in flops_per_cycle(caps).items():
        out["basis"][prec] = f"{cores} cores x {ghz or 0:.2f} GHz x {fpc} FLOP/cycle ({what})"
        out["gflops"][prec] = cores * ghz * fpc if ghz else None
    return out


KERNEL_PEAK_TOKENS = 256


def measure_kernel_peak(precisions=("fp32",), budget_s: float = 1.0, prev: Optional[dict] = None) -> dict:
    """Best GFLOP/s of our own engine's ``ffn_ln`` op (a 1-layer, groups=1, 768 -> 3072 -> 768 config,
    KERNEL_PEAK_TOKENS rows): two back-to-back GEMMs of the cpu backend's micro-kernel, this machine's
    practical peak for it. ``prev`` is kept where it was higher (the run samples again between shapes)."""
    import numpy as np
    import torch

    from .backends.cpu import CpuRunner
    from .config import SqueezeBertConfig
    from .modeling import SqueezeBertModel

    out = dict(prev or {})
    h, i, t = 768, 3072, KERNEL_PEAK_TOKENS
    flop = 4.0 * t * h * i  # two GEMMs, 2 FLOPs per multiply-add
    for prec in precisions:
        try:
            enc = _KERNEL_ENCODERS.get(prec)
            if enc is None:
                cfg = SqueezeBertConfig(vocab_size=8, hidden_size=h, intermediate_size=i, num_hidden_layers=1,
                                        num_attention_heads=12, embedding_size=h, max_position_embeddings=8,
                                        q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1,
                                        intermediate_groups=1, output_groups=1)
                torch.manual_seed(0)
                with torch.device("cpu"):
                    model = SqueezeBertModel(cfg, backend="reference").eval()
                if prec == "bf16":
                    model = model.to(torch.bfloat16)
                elif prec == "int8":
                    model = model.quantize_int8()
                enc = _KERNEL_ENCODERS[prec] = CpuRunner(model).encoder
            x = np.random.default_rng(0).standard_normal((t, h), dtype=np.float32)
            y = np.empty_like(x)
            enc.ffn_ln(0, x, y)  # warm-up
            best, reps, t_end = 0.0, 0, time.perf_counter() + budget_s
            while reps < 3 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                enc.ffn_ln(0, x, y)
                best = max(best, flop / (time.perf_counter() - t0) / 1e9)
                reps += 1
            out[prec] = max(best, out.get(prec) or 0.0)
            out["isa"] = enc.isa
        except Exception as e:  # noqa: BLE001 - e.g. the extension not built; reported, not fatal
            out.setdefault(prec, None)
            out[f"{prec}_error"] = f"{type(e).__name__}: {e}"
    return out


_KERNEL_ENCODERS: dict = {}
KERNEL_PEAK_OP = (f"ffn_ln of our cpu backend: 1 layer, groups=1, 768 -> 3072 -> 768, {KERNEL_PEAK_TOKENS} tokens, "
                  "best call")


_PEAK_N = {"fp32": 1024, "bf16": 2048, "fp16": 2048}


def measure_gemm_peak(device: str = "cpu", dtypes=("fp32", "bf16"), budget_s: float = 1.0, prev: Optional[dict] = None) -> dict:
    """Best GFLOP/s of a square torch.matmul per precision (a peer's number on CPUs; the ceiling on GPUs).

    Best-of many short calls, so that on a shared machine some land in a quiet moment; ``prev``
    (an earlier measurement) is kept where it was higher — the run samples the peak again between
    shapes and keeps the maximum.
    """
    import torch

    out = dict(prev or {})
    for name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        n = _PEAK_N[name]
        try:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            torch.matmul(a, b)  # warm-up (oneDNN / cuBLAS pick their kernels here)
            best, t_end = 0.0, time.perf_counter() + budget_s
            reps = 0
            while reps < 3 or time.perf_counter() < t_end:
                if device != "cpu":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                torch.matmul(a, b)
                if device != "cpu":
                    torch.cuda.synchronize()
                best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
                reps += 1
                if reps >= 200:
                    break
            out[name] = max(best, out.get(name) or 0.0)
        except Exception as e:  # noqa: BLE001 - e.g. no bf16 matmul on this CPU
            out[name] = out.get(name)
            out[f"{name}_error"] = f"{type(e).__name__}: {e}"
    return out


# ---- the run ----------------------------------------------------------------------------------
@dataclass
class Cell:
    provider: str
    precision: str
    prepared: object = None
    setup_s: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    error: Optional[str] = None
    actual_precision: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.precision}"


_T0: list = [None]  # start of the current run, for the elapsed time on progress lines


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        stamp = "" if _T0[0] is None else f"[{time.perf_counter() - _T0[0]:6.1f} s] "
        print(stamp + msg, file=sys.stderr, flush=True)


def _max_abs_diff(out, ref, mask) -> float:
    import torch

    out = out.detach().float().cpu()
    if out.shape != ref.shape:
        return float("inf")
    m = mask.bool()
    d = (out - ref)[m].abs()
    if not torch.isfinite(d).all():
        return float("inf")
    return float(d.max()) if d.numel() else 0.0


def measure_peaks(caps: CpuCaps, threads: int, device: str = "cpu", budget_s: float = 1.0,
                  prev: Optional[dict] = None) -> dict:
    """The ceilings a row is compared with, for the precisions this CPU runs natively:
    ``theoretical`` (cores x clock x FLOPs/cycle), ``kernel`` (our own ffn_ln, best call: the practical
    peak) and ``torch_matmul`` (a peer's number, not the ceiling). With ``prev`` only the kernel is
    sampled again and the best kept. On a GPU the kernel peak is torch.matmul's."""
    native = caps.native()
    if device != "cpu":
        out = prev or {"theoretical": {"gflops": {}, "basis": {}, "note": "not computed for GPUs"},
                       "kernel_op": "torch.matmul on the GPU (no own-kernel microbenchmark for GPUs)"}
        out["kernel"] = measure_gemm_peak(device, ("fp32", "bf16"), budget_s, prev=out.get("kernel"))
        return out
    kernel_precs = ["fp32"] + [p for p in native if (p, caps.arch) in (("bf16", "x86"), ("fp16", "arm"))
                               or p == "int8"]
    if prev is not None:
        prev["kernel"] = measure_kernel_peak(kernel_precs, budget_s, prev=prev.get("kernel"))
        return prev
    cores = max(1, min(threads, physical_cores()))
    ghz, source = cpu_clock_ghz()
    return {"theoretical": theoretical_peak(caps, cores, ghz, source), "forced_isa": caps.forced,
            "kernel": measure_kernel_peak(kernel_precs, budget_s), "kernel_op": KERNEL_PEAK_OP,
            "torch_matmul": measure_gemm_peak(device, [p for p in native if p in ("fp32", "bf16")], budget_s / 3)}


TIMERS = ("wall", "cuda-events")


def timer_reason(timer: str, device: str = "cpu") -> Optional[str]:
    """None when ``timer`` can time calls on ``device`` here, else why not (a usage error, said before any work)."""
    if timer not in TIMERS:
        return f"unknown timer {timer!r} (known: {', '.join(TIMERS)})"
    if timer == "cuda-events":
        if not str(device).startswith("cuda"):
            return "--timer cuda-events times GPU work: use it with --device cuda"
        import torch

        if not torch.cuda.is_available():
            return "--timer cuda-events needs a CUDA device, and torch.cuda.is_available() is False on this machine"
    return None


def time_call(prepared, ids, mask, timer: str = "wall") -> float:
    """Seconds of one call: wall time until its work is done, or the GPU time between two CUDA events
    recorded on the current stream around it (``cuda-events``: no host-side timer or sync in the interval)."""
    if timer == "cuda-events":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        prepared(ids, mask)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    prepared(ids, mask)
    prepared.synchronize()
    return time.perf_counter() - t0


def profile_table(prepared, ids, mask, calls: int = 3, rows: int = 15) -> str:
    """The ops of ``calls`` calls by total time (device time on a GPU; torch.profiler): where a provider's time
    goes. Extra information: a profiler failure is returned as text, never a reason to lose the run."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = ids.device.type == "cuda"
    try:
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            for _ in range(calls):
                prepared(ids, mask)
            prepared.synchronize()
        return prof.key_averages().table(sort_by="device_time_total" if cuda else "cpu_time_total", row_limit=rows,
                                         max_name_column_width=60)
    except Exception as e:  # noqa: BLE001
        return f"profile failed: {type(e).__name__}: {e}"


def weight_memory(model_dir: str, precisions) -> list[dict]:
    """Per precision, the weight memory of a loaded cpu-backend model: its parameters plus the engine's packed
    copies of the GEMM weights (the issue's bound: at most 1.3x the parameter bytes), and that total over the
    bytes of every parameter stored in the precision. Workspaces grow with the batch and are not counted."""
    import torch

    from .modeling import SqueezeBertModel

    out = []
    for prec in precisions:
        row: dict = {"precision": prec}
        try:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}[prec]
            m = SqueezeBertModel.from_pretrained(model_dir, backend="cpu", dtype=dtype)
            params = {id(p): p for p in m.parameters()}.values()
            nbytes = sum(p.numel() * p.element_size() for p in params)
            uniform = sum(p.numel() for p in params) * torch.empty((), dtype=dtype).element_size()
            packed = int(m._get_runner().encoder.packed_weight_bytes)
            row.update(parameter_bytes=nbytes, packed_bytes=packed, total_over_parameters=(nbytes + packed) / nbytes,
                       total_over_uniform=(nbytes + packed) / uniform)
        except Exception as e:  # noqa: BLE001 - e.g. the extension not built; reported, not fatal
            row["error"] = f"{type(e).__name__}: {e}"
        out.append(row)
    return out


# Targets of issue 20 (fp16 rows on one card, one run): max ms, min seq/s, min speed-up over a peer; the cuda
# backend must be at least as fast as triton at every shape. A run on a CUDA device reports each.
GPU_TARGET_SHAPES = ("1x128", "256x128", "mixed256x128")
GPU_TARGETS = [
    dict(shape="1x128", provider="triton", max_ms=0.35),
    dict(shape="256x128", provider="triton", min_seq_per_s=30000),
    dict(shape="256x128", provider="triton", faster_than="torch.compile", by=2.0),
    dict(shape="mixed256x128", provider="triton", faster_than="torch.compile", by=2.5),
] + [dict(shape=s, provider="cuda", faster_than="triton", by=1.0) for s in GPU_TARGET_SHAPES]


def check_targets(results: list, precision: str = "fp16") -> list:
    """Each of GPU_TARGETS with the measured value and ok: True/False (a wrong output fails), None when not run."""
    cell = {(r["provider"], r["shape"]): r for r in results
            if "error" not in r and r.get("precision", precision) == precision}
    out = []
    for t in GPU_TARGETS:
        r = cell.get((t["provider"], t["shape"]))
        row = dict(t, measured=None, ok=None)
        peer = cell.get((t.get("faster_than"), t["shape"]))
        if r is not None and "max_ms" in t:
            row.update(measured=r["median_ms"], ok=r["median_ms"] <= t["max_ms"])
        elif r is not None and "min_seq_per_s" in t:
            row.update(measured=r["seq_per_s"], ok=r["seq_per_s"] >= t["min_seq_per_s"])
        elif r is not None and peer is not None:
            ratio = peer["median_ms"] / r["median_ms"]
            row.update(measured=ratio, ok=ratio >= t["by"])
        if row["ok"] is not None:
            row["ok"] = row["ok"] and r.get("ok", False)
        out.append(row)
    return out


def targets_text(targets: list) -> str:
    lines = []
    for t in targets:
        what = (f"<= {t['max_ms']:.2f} ms" if "max_ms" in t else f">= {t['min_seq_per_s']} seq/s"
                if "min_seq_per_s" in t else f">= {t['by']}x {t['faster_than']}")
        got = "not run" if t["measured"] is None else f"{t['measured']:.3f}"
        lines.append(f"target {t['provider']} {t['shape']} {what}: {got} -> "
                     + {True: "PASS", False: "FAIL", None: "n/a"}[t["ok"]])
    return "\n".join(lines)


def run_benchmark(model_dir: str, cells: list[tuple[str, str]], shapes: list[Shape], *, threads: int,
                  device: str = "cpu", min_reps: int = 5, max_reps: int = 100, budget_s: float = 2.0,
                  call_limit_s: float = 60.0, shape_limit_s: float = 60.0, peak: bool = True, quiet: bool = False,
                  model_note: str = "", options: Optional[dict] = None, caps: Optional[CpuCaps] = None,
                  gap_ms: float = 0.0, settle: int = 0, warmup: int = 0, timer: str = "wall",
                  profile: Optional[str] = None, memory: bool = False) -> dict:
    """Prepare every (provider, precision), time them round-robin per shape; return the JSON document.

    Precisions this CPU would emulate are left out first (``select_cells``; ``caps`` defaults to
    ``cpu_caps()``). A provider whose first call at a shape takes longer than ``call_limit_s`` (or whose
    call there is predicted to, from its previous shape and the FLOP ratio) gets an error row and is
    dropped from later shapes. Timing at a shape stops at ``budget_s`` once every provider has
    ``min_reps`` calls, and at ``shape_limit_s`` after at least one round even below ``min_reps``.
    ``gap_ms`` / ``settle``: before each timed call, an idle gap and untimed calls of the same provider, so
    that nothing an engine before it leaves running (a spinning pool, caches it evicted) is charged to it
    (the fair method of benchmarks/bench_cpu.py; the gap and settle calls are not part of the time budget's
    accounting of rounds but do take wall time). ``warmup``: untimed calls after each provider's first call at a
    shape (autotuning, CUDA graph capture). ``timer``: "wall" (perf_counter around the call and a synchronize)
    or "cuda-events" (the GPU time between CUDA events recorded around the call; ``timer_reason``).
    ``profile``: a shape name at which our backends' calls are profiled per kernel (``profile_table``).
    ``memory``: add the weight memory of a loaded cpu-backend model per precision run (``weight_memory``)."""
    why = timer_reason(timer, device)
    if why:
        raise ValueError(why)
    from . import peers
    from .config import SqueezeBertConfig
    from .threads import set_num_threads

    _T0[0] = time.perf_counter()
    set_num_threads(threads)
    config = SqueezeBertConfig.from_pretrained(model_dir)
    caps = caps or cpu_caps()
    meta = machine_info(threads, device)
    meta.update({"model_dir": os.path.abspath(model_dir), "model_note": model_note,
                 "config": {k: getattr(config, k) for k in (
                     "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "q_groups",
                     "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")},
                 "method": "round-robin per shape; median/p90 of per-call wall time; first call excluded; "
                           "FLOPs = encoder GEMM work on unpadded lengths; % peak = of cores x clock x FLOP/cycle "
                           "of the ISA; % kernel = of our own ffn_ln's best GFLOP/s, sampled before and between "
                           "shapes",
                 "min_reps": min_reps, "budget_s_per_shape": budget_s, "call_limit_s": call_limit_s,
                 "shape_limit_s": shape_limit_s, "gap_ms": gap_ms, "settle": settle, "warmup": warmup, "timer": timer,
                 "profile": profile,
                 "cpu_caps": {"arch": caps.arch, "vendor": caps.vendor, "family": caps.family, "model": caps.model,
                              "features": sorted(caps.features), "forced_isa": caps.forced,
                              "native": caps.native()}})
    cells, unavailable = select_cells(cells, caps, device)
    for u in unavailable:
        _log(f"{u['provider']}:{u['precision']}: {u['reason']}", quiet)
    if peak:
        _log(f"peaks: theoretical from ISA and clock; our ffn_ln kernel for ~{1.0:.0f} s per precision "
             f"({', '.join(meta['cpu_caps']['native'])}) ...", quiet)
        meta["peak"] = measure_peaks(caps, threads, device)
        _log("  " + peak_text(meta["peak"]).replace("\n", "\n  "), quiet)

    # transformers fp32 is the ground truth for every output
    _log("[prepare] transformers:fp32 (the reference outputs) ...", quiet)
    if str(device).startswith("cuda"):
        peers.strict_fp32()  # the ground truth is true fp32, not cuDNN's TF32 convolutions
    ref_model = peers.prepare("transformers", model_dir, "fp32", device=device)

    prepared: list[Cell] = []
    for i, (prov, prec) in enumerate(cells, 1):
        cell = Cell(prov, prec)
        t0 = time.perf_counter()
        _log(f"[prepare {i}/{len(cells)}] {cell.label} ...", quiet)
        try:
            # spinning off: in round-robin timing a busy-waiting pool would slow whoever runs next
            p = peers.prepare(prov, model_dir, prec, device=device, threads=threads,
                              **{"ort_spinning": False, **(options or {})})
        except peers.Unavailable as e:
            unavailable.append({"provider": prov, "precision": prec, "reason": str(e)})
            _log(f"  skipped: {e}", quiet)
            continue
        except Exception as e:  # noqa: BLE001 - one broken peer must not end the whole run
            unavailable.append({"provider": prov, "precision": prec, "reason": f"failed: {type(e).__name__}: {e}"})
            _log(f"  FAILED: {type(e).__name__}: {e}", quiet)
            continue
        cell.prepared, cell.setup_s, cell.notes = p, dict(p.setup_s), list(p.notes)
        for n in p.notes:
            if "actual=" in n:
                cell.actual_precision = n.split("actual=")[1].split(",")[0]
        _log(f"  ready in {time.perf_counter() - t0:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in p.setup_s.items())})"
             + (f"; {'; '.join(p.notes)}" if p.notes else ""), quiet)
        prepared.append(cell)

    results = []
    profiles: dict = {}  # label -> kernel table at the --profile shape
    dropped: set = set()
    last: dict = {}  # label -> (seconds per call, flops) at the previous shape, to predict the next

    def fail(cell, shape, msg):
        results.append({"provider": cell.provider, "precision": cell.precision, "shape": shape.name, "error": msg})
        _log(f"  {cell.label} {shape.name}: {msg}", quiet)

    for si, shape in enumerate(shapes, 1):
        ids, mask = shape.inputs(config.vocab_size)
        ids_d, mask_d = ids.to(device), mask.to(device)
        flops = encoder_flops(config, shape.seqlens())
        _log(f"[shape {si}/{len(shapes)}] {shape.name} ({flops / 1e9:.3g} GFLOP): reference output, then the "
             "first call of each provider ...", quiet)
        ref = ref_model(ids_d, mask_d).float().cpu()
        live, first, outs = [], {}, {}
        for cell in prepared:
            if cell.label in dropped:
                continue
            if cell.label in last:
                per_call, prev_flops = last[cell.label]
                guess = per_call * flops / prev_flops
                if guess > call_limit_s:
                    dropped.add(cell.label)
                    fail(cell, shape, f"too slow: a call would take ~{guess:.0f} s (from the last shape) > call "
                                      f"limit {call_limit_s:g} s; dropped from this and later shapes")
                    continue
            try:
                t0 = time.perf_counter()
                out = cell.prepared(ids_d, mask_d)
                cell.prepared.synchronize()
                first[cell.label] = time.perf_counter() - t0
                for _ in range(warmup):
                    cell.prepared(ids_d, mask_d)
                cell.prepared.synchronize()
            except Exception as e:  # noqa: BLE001 - e.g. a shape a backend rejects
                fail(cell, shape, f"FAILED {type(e).__name__}: {e}")
                continue
            if first[cell.label] > call_limit_s:
                dropped.add(cell.label)
                fail(cell, shape, f"too slow: first call took {first[cell.label]:.1f} s > call limit "
                                  f"{call_limit_s:g} s; dropped from this and later shapes")
                continue
            outs[cell.label] = _max_abs_diff(out, ref, mask)
            live.append(cell)
            _log(f"  {cell.label:<24} first call {first[cell.label]:.2f} s", quiet)
        times: dict[str, list[float]] = {c.label: [] for c in live}
        t_start = t_said = time.perf_counter()
        rounds = 0
        while live and rounds < max_reps:
            elapsed = time.perf_counter() - t_start
            if rounds >= min_reps and elapsed >= budget_s:
                break
            if rounds >= 1 and elapsed + elapsed / rounds > shape_limit_s:
                break  # the next round would end past the shape's time limit
            for cell in live[rounds % len(live):] + live[:rounds % len(live)]:  # rotate who goes first
                if gap_ms > 0:
                    time.sleep(gap_ms / 1e3)
                for _ in range(settle):
                    cell.prepared(ids_d, mask_d)
                    cell.prepared.synchronize()
                times[cell.label].append(time_call(cell.prepared, ids_d, mask_d, timer))
            rounds += 1
            if time.perf_counter() - t_said > 5.0:  # slow rounds: say so as they go
                _log(f"  round {rounds} done ({time.perf_counter() - t_start:.0f} s into this shape)", quiet)
                t_said = time.perf_counter()
        cut = f" (cut below --min-reps {min_reps} by the shape limit {shape_limit_s:g} s)" if live and rounds < min_reps else ""
        _log(f"  timed {rounds} rounds x {len(live)} providers in {time.perf_counter() - t_start:.1f} s{cut}", quiet)
        if shape.name == profile:
            for cell in live:
                if peers.split_isa(cell.provider)[0] in peers.SQBERT_BACKENDS:
                    _log(f"  profiling {cell.label} at {shape.name} ...", quiet)
                    profiles[cell.label] = profile_table(cell.prepared, ids_d, mask_d)
        if peak and device == "cpu" and si < len(shapes):
            meta["peak"] = measure_peaks(caps, threads, device, budget_s=0.3, prev=meta["peak"])
        for cell in live:
            s = summarize(times[cell.label])
            last[cell.label] = (s["median_ms"] / 1e3, flops)
            row = {"provider": cell.provider, "precision": cell.precision, "shape": shape.name, "batch": shape.batch,
                   "seq": shape.seq, "mixed": shape.mixed, "tokens": sum(shape.seqlens()), **s,
                   "first_call_s": first[cell.label], "seq_per_s": shape.batch / (s["median_ms"] / 1e3),
                   "gflop": flops / 1e9, "gflops": flops / 1e9 / (s["median_ms"] / 1e3),
                   "max_abs_diff": outs[cell.label], "round_ms": [round(t * 1e3, 4) for t in times[cell.label]]}
            if cell.actual_precision:
                row["actual_precision"] = cell.actual_precision
            results.append(row)
            _log(f"  {cell.label:<24} median {s['median_ms']:9.2f} ms  p90 {s['p90_ms']:9.2f} ms  "
                 f"diff {outs[cell.label]:.1e}", quiet)

    for cell in prepared:
        if cell.prepared is not None and cell.prepared.close:
            cell.prepared.close()
    if memory:
        precs = [c.precision for c in prepared if peers.split_isa(c.provider)[0] == "cpu"]
        _log(f"weight memory of a loaded cpu-backend model ({', '.join(dict.fromkeys(precs)) or 'no cpu rows'}) ...",
             quiet)
        meta["weight_memory"] = weight_memory(model_dir, list(dict.fromkeys(precs)))
    try:
        meta["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    meta["wall_s"] = time.perf_counter() - _T0[0]
    doc = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "meta": meta,
           "setup": [{"provider": c.provider, "precision": c.precision, "setup_s": c.setup_s, "notes": c.notes}
                     for c in prepared],
           "unavailable": unavailable, "results": results}
    if profiles:
        doc["profiles"] = profiles
    derive(doc)
    return doc


def _peak_precision(row) -> str:
    p = row.get("actual_precision") or row["precision"]
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "default": "fp32"}.get(p, p)


def _peaks(doc: dict) -> tuple[dict, dict]:
    """({precision: theoretical GFLOP/s}, {precision: kernel GFLOP/s}) of a document (older documents:
    the torch.matmul peak they measured counts as the kernel peak)."""
    meta = doc.get("meta", {})
    pk = meta.get("peak") or {}
    theo = {k: v for k, v in ((pk.get("theoretical") or {}).get("gflops") or {}).items() if v}
    kern = pk.get("kernel") if "kernel" in pk else meta.get("gemm_peak_gflops") or {}
    return theo, {k: v for k, v in kern.items() if isinstance(v, float) and v > 0}


def derive(doc: dict) -> dict:
    """Fill the columns computed across rows: % of peaks, ratios, tolerance verdicts (in place)."""
    theo, kern = _peaks(doc)
    rows = [r for r in doc["results"] if "error" not in r]
    by_shape: dict[str, list[dict]] = {}
    for r in rows:
        by_shape.setdefault(r["shape"], []).append(r)
    for shape_rows in by_shape.values():
        eager = next((r for r in shape_rows if r["provider"] == "transformers" and r["precision"] == "fp32"), None)
        peer_rows = [r for r in shape_rows if r["provider"] in PEER_NAMES]
        best_peer = min(peer_rows, key=lambda r: r["median_ms"]) if peer_rows else None
        best_same: dict = {}  # precision -> the fastest peer row in that precision
        for r in peer_rows:  # openvino's "default" counts in the precision it ran (bf16 on AMX CPUs)
            p = _peak_precision(r)
            if p not in best_same or r["median_ms"] < best_same[p]["median_ms"]:
                best_same[p] = r
        own_err = {r["precision"]: r["max_abs_diff"] for r in shape_rows if r["provider"] == "transformers"}
        for r in shape_rows:
            prec = _peak_precision(r)
            r["pct_peak"] = 100.0 * r["gflops"] / theo[prec] if theo.get(prec) else None
            r["pct_kernel_peak"] = 100.0 * r["gflops"] / kern[prec] if kern.get(prec) else None
            r["speedup_vs_eager"] = eager["median_ms"] / r["median_ms"] if eager else None
            r["speedup_vs_best_peer"] = best_peer["median_ms"] / r["median_ms"] if best_peer else None
            r["best_peer"] = f"{best_peer['provider']}:{best_peer['precision']}" if best_peer else None
            same = best_same.get(_peak_precision(r))
            r["speedup_vs_best_peer_same_precision"] = same["median_ms"] / r["median_ms"] if same else None
            r["best_peer_same_precision"] = f"{same['provider']}:{same['precision']}" if same else None
            tol = TOL.get(prec, TOL["bf16"])
            if prec != "fp32" and own_err.get(prec):
                tol = max(3.0 * own_err[prec], TOL["fp32"])
            r["tol"] = tol
            r["ok"] = bool(r["max_abs_diff"] <= tol)
            if r["provider"] not in PEER_NAMES and r.get("round_ms"):  # rounds pair the calls of one run
                r["per_round_vs_peers"] = {f"{p['provider']}:{p['precision']}": list(paired_ratio(r["round_ms"], p["round_ms"]))
                                           for p in peer_rows if len(p.get("round_ms") or ()) == len(r["round_ms"])}
    return doc


# ---- report -----------------------------------------------------------------------------------
def _fmt(v, spec: str) -> str:
    """format(v, spec); '-' for None; spec 'g3' = 3 significant digits without exponent for >= 1."""
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "inf" if math.isinf(v) else "nan"
    if spec == "g3":
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return format(v, spec)


def format_table(headers: list[str], rows: list[list[str]], align: Optional[str] = None) -> str:
    """A Markdown (GitHub) pipe table, columns padded; align: 'l'/'r' per column (default: first two left)."""
    align = align or "ll" + "r" * (len(headers) - 2)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join((":" + "-" * (w + 1)) if a == "l" else ("-" * (w + 1) + ":") for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


RESULT_HEADERS = ["provider", "prec", "shape", "median ms", "p90 ms", "seq/s", "GFLOP/s", "% peak", "% kernel",
                  "x eager", "x best peer", "x peer same prec", "max|diff|", "first call s"]


def results_table(doc: dict) -> str:
    rows = []
    for r in doc["results"]:
        if "error" in r:
            rows.append([r["provider"], r["precision"], r["shape"], "error", "-", "-", "-", "-", "-", "-", "-", "-",
                         r["error"][:40], "-"])
            continue
        prec = r["precision"] + (f"({r['actual_precision']})" if r.get("actual_precision") and r["precision"] == "default" else "")
        rows.append([r["provider"], prec, r["shape"], _fmt(r["median_ms"], ".2f"), _fmt(r["p90_ms"], ".2f"),
                     _fmt(r["seq_per_s"], "g3"), _fmt(r["gflops"], "g3"), _fmt(r.get("pct_peak"), "g3"),
                     _fmt(r.get("pct_kernel_peak"), "g3"), _fmt(r.get("speedup_vs_eager"), ".2f"), _fmt(r.get("speedup_vs_best_peer"), ".2f"),
                     _fmt(r.get("speedup_vs_best_peer_same_precision"), ".2f"),
                     _fmt(r["max_abs_diff"], ".1e") + ("" if r.get("ok", True) else " FAIL"),
                     _fmt(r["first_call_s"], ".2f")])
    return format_table(RESULT_HEADERS, rows, "lll" + "r" * (len(RESULT_HEADERS) - 3))


def setup_table(doc: dict) -> str:
    rows = []
    for s in doc.get("setup", []):
        total = sum(s["setup_s"].values())
        rows.append([s["provider"], s["precision"], _fmt(total, ".2f"),
                     ", ".join(f"{k} {v:.2f}" for k, v in s["setup_s"].items())])
    return format_table(["provider", "prec", "setup s", "phases (s)"], rows, "llrl")


def header_text(doc: dict) -> str:
    m = doc["meta"]
    isa = m.get("isa", {})
    v = m.get("versions", {})
    lines = [f"machine: {m.get('cpu_model')} ({m.get('cpu_count')} cpus), threads={m.get('threads')}, "
             f"device={m.get('device')}, gpu={m.get('gpu') or 'none'}",
             f"isa: in use {isa.get('in_use', '?')}, usable {isa.get('usable', '?')}",
             peak_text(m.get("peak")) if m.get("peak") else "peak: not measured (--no-peak)",
             "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"model: {m.get('model_dir')} {m.get('model_note') or ''}".rstrip(),
             f"load average start {_fmt_load(m.get('loadavg_start'))} end {_fmt_load(m.get('loadavg_end'))}: "
             "numbers are medians of round-robin runs, ratios are within this run"]
    load = max((m.get("loadavg_start") or [0])[0], (m.get("loadavg_end") or [0])[0])
    if m.get("cpu_count") and load > m["cpu_count"]:
        lines.append(f"WARNING: the machine was busy (load {load:.1f} on {m['cpu_count']} cpus): absolute latencies are "
                     "inflated, torch eager's the most (its threads wait on each other); compare ratios, rerun when quiet")
    return "\n".join(lines)


def peak_text(pk: dict) -> str:
    """The peaks of a run, one line each: theoretical (with its basis), our kernel's, torch.matmul's."""
    theo = pk.get("theoretical") or {}
    lines = []
    for prec, basis in (theo.get("basis") or {}).items():
        g = (theo.get("gflops") or {}).get(prec)
        lines.append(f"peak {prec} (theoretical): {_fmt(g, '.0f')} GFLOP/s = {basis}")
    if theo.get("clock_source"):
        lines.append(f"  clock from {theo['clock_source']}; cores = min(threads, physical cores)"
                     + ("; a VM's current/nominal clock: turbo can run above it, and % peak above 100"
                        if "cpu MHz" in theo["clock_source"] else ""))
    if pk.get("forced_isa"):
        lines.append(f"  SQBERT_FAST_FORCE_CPU_ISA={pk['forced_isa']} limits our kernels and the peaks above, not the "
                     "peers' own kernels: their % peak can exceed 100")
    if theo.get("note"):
        lines.append(f"peak (theoretical): {theo['note']}")
    kern = pk.get("kernel") or {}
    tg = theo.get("gflops") or {}
    vals = [f"{p} {v:.0f} GFLOP/s" + (f" ({100 * v / tg[p]:.0f}% of theoretical)" if tg.get(p) else "")
            for p, v in kern.items() if isinstance(v, float)]
    errs = [f"{k[:-6]}: {v}" for k, v in kern.items() if k.endswith("_error")]
    lines.append(f"kernel peak ({pk.get('kernel_op', '?')}" + (f", isa {kern['isa']}" if kern.get("isa") else "")
                 + "): " + (", ".join(vals) or "not measured") + (f" [{'; '.join(errs)}]" if errs else ""))
    mm = {p: v for p, v in (pk.get("torch_matmul") or {}).items() if isinstance(v, float)}
    if mm:
        lines.append("torch.matmul (a peer's number, not the ceiling): " + ", ".join(f"{p} {v:.0f} GFLOP/s"
                                                                              for p, v in mm.items()))
    return "\n".join(lines)


def _fmt_load(v) -> str:
    return "?" if not v else "/".join(f"{x:.1f}" for x in v)


def report_text(doc: dict) -> str:
    parts = [header_text(doc), "", results_table(doc), "", "x eager / x best peer / x peer same prec: how many "
             "times faster than transformers fp32 eager / than the fastest peer at that shape / than the fastest peer "
             "in the row's precision (>1 = faster). max|diff| vs "
             "transformers fp32, padded positions excluded. % peak: of the theoretical peak above; % kernel: of "
             "our own ffn_ln kernel's best GFLOP/s (the practical peak), in the row's precision.", "",
             "one-time setup (not in latency):", setup_table(doc)]
    errors = [r for r in doc["results"] if "error" in r]
    if errors:
        parts += ["", "failed or dropped:"] + [f"  {r['provider']}:{r['precision']} {r['shape']}: {r['error']}"
                                                for r in errors]
    if doc.get("unavailable"):
        parts += ["", "not run:"] + [f"  {u['provider']}:{u['precision']}: {u['reason']}" for u in doc["unavailable"]]
    paired = per_round_text(doc)
    if paired:
        parts += ["", "speed-ups over each peer: ratio of the medians (per round: median and quartiles of the "
                      "per-round ratios, calls seconds apart)", paired]
    if doc.get("meta", {}).get("weight_memory"):
        parts += ["", "weight memory of a loaded model (cpu backend; workspaces not counted):", memory_table(doc)]
    for label, table in (doc.get("profiles") or {}).items():
        parts += ["", f"profile of {label} at {doc['meta'].get('profile')} (3 calls):", table]
    if str(doc.get("meta", {}).get("device", "")).startswith("cuda"):
        parts += ["", "targets of issue 20 (fp16):", targets_text(check_targets(doc["results"]))]
    return "\n".join(parts)


def per_round_text(doc: dict) -> str:
    """One line per our row with per-round ratios: each peer's ratio of medians and its per-round median (q1-q3)."""
    lines = []
    for r in doc.get("results", []):
        if "error" in r or not r.get("per_round_vs_peers"):
            continue
        med = {f"{p['provider']}:{p['precision']}": p["median_ms"] for p in doc["results"]
               if "error" not in p and p["shape"] == r["shape"]}
        lines.append(f"  {r['provider']}:{r['precision']} {r['shape']} over " + ", ".join(
            f"{k} {med[k] / r['median_ms']:.2f}x (per round {m:.2f}x, {q1:.2f}-{q3:.2f})"
            for k, (m, q1, q3) in r["per_round_vs_peers"].items()))
    return "\n".join(lines)


def memory_table(doc: dict) -> str:
    mib = 2.0 ** 20
    rows = [[m["precision"], "error", m["error"][:60], "-", "-"] if "error" in m else
            [m["precision"], _fmt(m["parameter_bytes"] / mib, ".1f"), _fmt(m["packed_bytes"] / mib, ".1f"),
             _fmt(m["total_over_parameters"], ".2f") + "x", _fmt(m["total_over_uniform"], ".2f") + "x"]
            for m in doc["meta"]["weight_memory"]]
    return format_table(["precision", "parameters MiB", "packed copies MiB", "total / parameters",
                         "total / all-in-precision bytes"], rows, "lrrrr")


def markdown_table(doc: dict) -> str:
    """The README form of a run: one line naming the machine (CPU model, ISA in use, int8 variant, threads, load,
    model, date), then median ms per shape (rows) and provider:precision (columns), and our rows' speed-up over
    the fastest peer in the same precision. ``sqbert-fast bench --markdown bench.json`` prints it."""
    m = doc.get("meta", {})
    ok_rows = [r for r in doc.get("results", []) if "error" not in r]
    cols: list[str] = []
    label_of: dict = {}
    for r in ok_rows:
        label = f"{r['provider']} {r['precision']}"
        if r.get("actual_precision") and r["precision"] == "default":
            label += f" ({r['actual_precision']})"
        label_of[id(r)] = label  # not stored in the row: the document stays as it was read
        if label not in cols:
            cols.append(label)
    shapes = list(dict.fromkeys(r["shape"] for r in ok_rows))
    cell = {(r["shape"], label_of[id(r)]): r for r in ok_rows}
    ours = [c for c in cols if c.split()[0] not in PEER_NAMES and c.split()[0] != "reference"]
    headers = ["shape"] + cols + [f"{c}: x best {c.split()[1]} peer" for c in ours
                                  if any(cell.get((s, c), {}).get("speedup_vs_best_peer_same_precision")
                                         for s in shapes)]
    rows = []
    for sh in shapes:
        row = [sh] + [_fmt(cell[(sh, c)]["median_ms"], "g3") if (sh, c) in cell else "-" for c in cols]
        for h in headers[1 + len(cols):]:
            c = h.split(":")[0]
            r = cell.get((sh, c))
            row.append(_fmt(r.get("speedup_vs_best_peer_same_precision"), ".2f") if r else "-")
        rows.append(row)
    isa = m.get("isa", {})
    load = max((m.get("loadavg_start") or [0])[0], (m.get("loadavg_end") or [0])[0])
    int8 = next((n.split("int8=")[1].split(",")[0] for s in doc.get("setup", []) for n in s.get("notes", [])
                 if "int8=" in n), None)
    head = (f"{m.get('cpu_model', '?')}, ISA {isa.get('in_use', '?')}" + (f", int8 {int8}" if int8 else "")
            + f", {m.get('threads', '?')} threads, load {load:.1f}, {os.path.basename(str(m.get('model_dir', '')))}"
            f" ({doc.get('created', '?')[:10]}); median ms, every engine in the same round-robin run")
    return head + "\n\n" + format_table(headers, rows, "l" + "r" * (len(headers) - 1))


def compare(old: dict, new: dict, threshold: float = 0.10) -> tuple[str, list[dict]]:
    """Regression table of new vs old medians, matched by (provider, precision, shape).

    A row is a regression when new is more than ``threshold`` slower, an improvement when more than
    ``threshold`` faster, else within noise. Returns (text, rows).
    """
    def key(r):
        return (r["provider"], r["precision"], r["shape"])

    old_rows = {key(r): r for r in old.get("results", []) if "error" not in r}
    out = []
    for r in new.get("results", []):
        if "error" in r:
            continue
        o = old_rows.get(key(r))
        if o is None:
            out.append({"provider": r["provider"], "precision": r["precision"], "shape": r["shape"],
                        "old_ms": None, "new_ms": r["median_ms"], "change": None, "verdict": "new"})
            continue
        change = r["median_ms"] / o["median_ms"] - 1.0
        verdict = "REGRESSION" if change > threshold else ("faster" if change < -threshold else "same")
        out.append({"provider": r["provider"], "precision": r["precision"], "shape": r["shape"],
                    "old_ms": o["median_ms"], "new_ms": r["median_ms"], "change": change, "verdict": verdict})
    new_keys = {key(r) for r in new.get("results", []) if "error" not in r}
    for k, o in old_rows.items():
        if k not in new_keys:
            out.append({"provider": k[0], "precision": k[1], "shape": k[2], "old_ms": o["median_ms"],
                        "new_ms": None, "change": None, "verdict": "missing"})
    rows = [[c["provider"], c["precision"], c["shape"], _fmt(c["old_ms"], ".2f"), _fmt(c["new_ms"], ".2f"),
             "-" if c["change"] is None else f"{100 * c['change']:+.1f}%", c["verdict"]] for c in out]
    text = format_table(["provider", "prec", "shape", "old ms", "new ms", "change", "verdict"], rows, "lllrrrl")
    om, nm = old.get("meta", {}), new.get("meta", {})
    notes = []
    for k in ("cpu_model", "threads", "device"):
        if om.get(k) != nm.get(k):
            notes.append(f"{k} differs: old {om.get(k)!r}, new {nm.get(k)!r}")
    if notes:
        text = "WARNING: runs are from different setups (" + "; ".join(notes) + ")\n" + text
    text += f"\nthreshold {100 * threshold:.0f}%: a shared machine's medians move by that much on their own"
    return text, out


def plot(doc: dict, path: str) -> str:
    """Latency vs batch per provider (log-log), one panel per sequence length; mixed batches left out."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [r for r in doc["results"] if "error" not in r and not r.get("mixed")]
    seqs = sorted({r["seq"] for r in rows}) or [0]
    fig, axes = plt.subplots(1, len(seqs), figsize=(max(7.5, 5.5 * len(seqs)), 5.0), squeeze=False)
    labels = sorted({(r["provider"], r["precision"]) for r in rows})
    providers = sorted({p for p, _ in labels})
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(providers)}
    styles = {"fp32": "-", "bf16": "--", "fp16": ":", "default": "-."}
    for ax, seq in zip(axes[0], seqs):
        for prov, prec in labels:
            pts = sorted((r["batch"], r["median_ms"]) for r in rows
                         if r["seq"] == seq and r["provider"] == prov and r["precision"] == prec)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(prec, "-"), color=colors[prov],
                        marker="s" if prov in PEER_NAMES else "o", label=f"{prov} {prec}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("median latency (ms)")
        ax.set_title(f"seq len {seq}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    m = doc.get("meta", {})
    fig.suptitle(f"SqueezeBERT encoder latency: {m.get('cpu_model', '?')}, {m.get('threads')} threads\n"
                 "circles: sqbert_fast, squares: peers; solid fp32, dashed bf16, dash-dot engine default", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- model -----------------------------------------------------------------------------------
def default_model() -> tuple[str, str]:
    """(directory, note): the built-in default model, or a random-weight default-config one if absent."""
    try:
        from .default_model import default_model_dir

        return default_model_dir(), "(built-in default: all-MiniLM-L6-v2 as SqueezeBERT)"
    except Exception as e:  # noqa: BLE001 - ImportError, or the source package missing
        reason = f"{type(e).__name__}: {e}"
    return random_model_dir(), f"(random weights, default SqueezeBERT config; built-in default unavailable: {reason})"


def random_model_dir(config_kwargs: Optional[dict] = None, path: Optional[str] = None) -> str:
    """Save a random-weight SqueezeBertModel (default config unless overridden) and return its directory, with a
    vocab.txt of the config's size (special tokens, then the corpus's most frequent words) so that engines that
    tokenize text (int8 calibration) can."""
    import collections

    import torch

    from .config import SqueezeBertConfig
    from .corpus import real_sentences
    from .modeling import SqueezeBertModel

    path = path or tempfile.mkdtemp(prefix="sqbert_fast-bench-model-")
    torch.manual_seed(0)
    config = SqueezeBertConfig(**(config_kwargs or {}))
    with torch.device("cpu"):
        model = SqueezeBertModel(config, backend="reference")
    model.save_pretrained(path)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = collections.Counter(w for s in real_sentences(500) for w in s.lower().split() if w.isalpha())
    words = [w for w, _ in counts.most_common()][:max(0, config.vocab_size - len(special))]
    words += [f"[unused{i}]" for i in range(config.vocab_size - len(special) - len(words))]
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join((special + words)[:config.vocab_size]) + "\n")
    return path


# ---- CLI -------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"a couple of minutes: shapes {QUICK_SHAPES}, fp32 (+bf16, int8 where native), no torch.compile")
    p.add_argument("--model", help="model directory (default: the built-in default model)")
    p.add_argument("--random-weights", action="store_true",
                   help="SqueezeBERT's default config with random weights (squeezebert-uncased shapes); "
                        "a --model given too wins")
    p.add_argument("--providers", help="comma list; provider or provider:precision "
                   f"(default: {','.join(QUICK_PROVIDERS)} [+torch.compile without --quick]; "
                   "ones that cannot run here are skipped with the reason)")
    p.add_argument("--precisions", default=DEFAULT_PRECISIONS,
                   help=f"for providers given without :precision (default {DEFAULT_PRECISIONS}; int8: ours quantized on "
                        "load, the int8 peers with their own recipes)")
    p.add_argument("--shapes", help=f"BATCHxSEQ or mixedBATCHxSEQ list (default {FULL_SHAPES}; --quick {QUICK_SHAPES})")
    p.add_argument("--threads", type=_at_least(1, int), default=os.cpu_count() or 1, help="threads for every engine (default: all cpus)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--min-reps", type=_at_least(1, int), default=None,
                   help="timed calls per provider and shape, at least (default 5, --quick 3), within --shape-limit")
    p.add_argument("--max-reps", type=_at_least(1, int), default=200)
    p.add_argument("--reps", type=_at_least(1, int),
                   help="exactly this many timed rounds per shape (sets --min-reps and --max-reps; --shape-limit "
                        "still applies)")
    p.add_argument("--budget", type=_at_least(0, float), default=None,
                   help="seconds of round-robin timing per shape (default 5, --quick 2)")
    p.add_argument("--call-limit", type=_at_least(0, float), default=None,
                   help="seconds one call may take: a provider whose first call at a shape takes longer (or is "
                        "predicted to) is reported and dropped from later shapes (default 120, --quick 20)")
    p.add_argument("--shape-limit", type=_at_least(0, float), default=None,
                   help="seconds of timing per shape after which it stops even below --min-reps, after at least "
                        "one round (default 60, --quick 15)")
    p.add_argument("--out", default="bench-out", help="directory for bench.json and bench.png (default bench-out)")
    p.add_argument("--compare", metavar="OLD_JSON", help="print a regression table against an earlier bench.json")
    p.add_argument("--current", metavar="NEW_JSON", help="with --compare: compare this file instead of running")
    p.add_argument("--threshold", type=float, default=0.10, help="--compare: relative change counted (default 0.10)")
    p.add_argument("--fail-on-regression", action="store_true", help="--compare: exit 1 if any row regressed")
    p.add_argument("--gap-ms", type=_at_least(0, float), default=0.0,
                   help="idle milliseconds before each timed call (the fair method: nothing the engine before "
                        "leaves running is charged to the next; e.g. 100)")
    p.add_argument("--settle", type=_at_least(0, int), default=0,
                   help="untimed calls of the same engine right before each timed one (e.g. 1)")
    p.add_argument("--warmup", type=_at_least(0, int), default=0,
                   help="untimed calls after each provider's first call at a shape (autotuning, CUDA graph capture)")
    p.add_argument("--timer", choices=TIMERS, default="wall",
                   help="wall: perf_counter around each call and a synchronize (default); cuda-events: the GPU time "
                        "between CUDA events recorded around each call (--device cuda only)")
    p.add_argument("--memory", action="store_true",
                   help="also report the weight memory of a loaded cpu-backend model in each precision its rows ran")
    p.add_argument("--profile", metavar="SHAPE",
                   help="profile our backends' calls at this shape per op (torch.profiler, 3 calls; the report lists them)")
    p.add_argument("--compile-mode", help="torch.compile mode for the torch.compile provider (default: its default)")
    p.add_argument("--ort-spinning", choices=("off", "default"), default="off",
                   help="ONNX Runtime's pool spinning: off (default: a busy-waiting pool would slow whoever is timed "
                        "next), or ONNX Runtime's own default (on; with --gap-ms the pool stops before the next engine)")
    p.add_argument("--markdown", metavar="JSON",
                   help="render the README table of a saved bench.json (no run): sqbert-fast bench --markdown bench-out/bench.json")
    p.add_argument("--onnx-exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                   help="torch.onnx exporter for onnxruntime (auto: dynamo, legacy if it fails)")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the peaks (theoretical, our kernel's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(_bench_parser=p)


def _at_least(lo, kind):
    """argparse type: a number >= lo (a clean usage error, not a traceback, otherwise)."""
    def check(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v >= lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text}")
        return v
    check.__name__ = kind.__name__  # argparse names the type in its messages
    return check


def check_cells(cells) -> None:
    """ValueError for a provider or precision name nobody knows (a typo must not give an empty table)."""
    from .peers import PRECISIONS, PROVIDERS, split_isa

    for prov, prec in cells:
        backend, isa = split_isa(prov)
        if backend not in PROVIDERS or (isa is not None and isa not in ISA_FEATURES):
            known = ", ".join(PROVIDERS) + ", cpu-<isa> with <isa> in " + ", ".join(ISA_FEATURES)
            raise ValueError(f"unknown provider {prov!r} (known: {known})")
        if prec not in PRECISIONS:
            raise ValueError(f"unknown precision {prec!r} for {prov} (known: {', '.join(PRECISIONS)})")
    if not cells:
        raise ValueError("no providers given")


def _load_json(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or "results" not in doc:
        raise ValueError(f"{path} is not a sqbert-fast bench JSON (schema {SCHEMA})")
    return doc


def run(args) -> int:
    if args.markdown:
        print(markdown_table(derive(_load_json(args.markdown))))  # derived again: older files get new columns
        return 0
    if args.compare and args.current:
        text, rows = compare(_load_json(args.compare), _load_json(args.current), args.threshold)
        print(text)
        return 1 if args.fail_on_regression and any(r["verdict"] == "REGRESSION" for r in rows) else 0
    old = _load_json(args.compare) if args.compare else None  # fail before a long run, not after
    # bad names and shapes are usage errors, found before the default model is resolved
    if args.providers:
        providers = args.providers
    elif args.quick:
        providers = ",".join(QUICK_PROVIDERS)
    else:  # every ISA variant of the cpu backend too, except scalar (minutes per call at full size)
        from .peers import cpu_isas

        providers = ",".join(FULL_PROVIDERS + tuple(f"cpu-{i}" for i in cpu_isas() if i != "scalar"))
    try:
        cells = parse_providers(providers, [p.strip() for p in args.precisions.split(",") if p.strip()])
        check_cells(cells)
        names = [s.name for s in parse_shapes(args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES))]
    except ValueError as e:
        return _usage_error(args, str(e))
    if args.profile and args.profile not in names:
        return _usage_error(args, f"--profile {args.profile}: not one of the shapes ({', '.join(names)})")
    why = timer_reason(args.timer, args.device)
    if why:
        return _usage_error(args, why)

    if args.random_weights and not args.model:
        _log("writing a random-weight default-config model ...", args.quiet)
        model_dir, note = random_model_dir(), "(random weights, default SqueezeBERT config)"
    elif args.model:
        model_dir, note = args.model, ""
    else:
        _log("resolving the default model ...", args.quiet)
        model_dir, note = default_model()
        _log(f"  {model_dir} {note}", args.quiet)
    from .config import SqueezeBertConfig

    config = SqueezeBertConfig.from_pretrained(model_dir)
    try:
        shapes = parse_shapes(args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES),
                              config.max_position_embeddings)
    except ValueError as e:
        return _usage_error(args, str(e))
    _quiet_third_party()
    budget = args.budget if args.budget is not None else (2.0 if args.quick else 5.0)
    doc = run_benchmark(model_dir, cells, shapes, threads=args.threads, device=args.device,
                        min_reps=args.reps or args.min_reps or (3 if args.quick else 5), max_reps=args.reps or args.max_reps,
                        budget_s=budget,
                        call_limit_s=args.call_limit if args.call_limit is not None else (20.0 if args.quick else 120.0),
                        shape_limit_s=max(budget, args.shape_limit if args.shape_limit is not None
                                          else (15.0 if args.quick else 60.0)),
                        peak=not args.no_peak, quiet=args.quiet, model_note=note,
                        options={"exporter": args.onnx_exporter, "compile_mode": args.compile_mode,
                                 "ort_spinning": False if args.ort_spinning == "off" else None}, gap_ms=args.gap_ms,
                        settle=args.settle, warmup=args.warmup, timer=args.timer, profile=args.profile,
                        memory=args.memory)
    doc["meta"]["argv"] = sys.argv
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "bench.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    png_path = os.path.join(args.out, "bench.png")
    try:
        plot(doc, png_path)
    except ImportError as e:
        png_path = f"not written ({e}; pip install matplotlib)"
    print(report_text(doc))
    print(f"\nJSON: {json_path}\nplot: {png_path}")
    failed = [r for r in doc["results"] if "error" not in r and not r.get("ok", True)]
    if failed:
        print("\nWRONG RESULTS (max|diff| over tolerance): " +
              ", ".join(f"{r['provider']}:{r['precision']} {r['shape']} {r['max_abs_diff']:.2e} > {r['tol']:.1e}"
                        for r in failed))
    if old is not None:
        text, rows = compare(old, doc, args.threshold)
        print("\ncompared with " + args.compare + ":\n" + text)
        if args.fail_on_regression and any(r["verdict"] == "REGRESSION" for r in rows):
            return 1
    return 1 if failed else 0


def main(argv) -> int:
    """``sqbert-fast bench ARGV...``: what the front ends in benchmarks/ call with their defaults first."""
    from .cli import main as cli_main

    return cli_main(["bench", *argv])


def _usage_error(args, msg: str) -> int:
    """``sqbert-fast bench: error: MSG`` with the usage, exit status 2 (argparse's own convention)."""
    parser = getattr(args, "_bench_parser", None)
    if parser is not None:
        parser.error(msg)  # raises SystemExit(2)
    print(f"sqbert-fast bench: error: {msg}", file=sys.stderr)
    return 2


def _quiet_third_party() -> None:
    """Progress bars and exporter chatter would bury the progress lines."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("torch.onnx", "torch._dynamo", "torch._inductor", "onnxscript", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


__all__ = ["encoder_flops", "Shape", "parse_shapes", "parse_providers", "run_benchmark", "derive", "compare",
           "format_table", "results_table", "report_text", "markdown_table", "plot", "measure_gemm_peak", "add_arguments", "run",
           "CpuCaps", "cpu_caps", "select_cells", "skip_reason", "openvino_default_precision", "cpu_clock_ghz",
           "flops_per_cycle", "theoretical_peak", "measure_kernel_peak", "measure_peaks", "peak_text", "check_cells",
           "paired_ratio", "timer_reason", "time_call", "profile_table", "weight_memory", "check_targets", "git_commit"]
