"""``sqbert-fast bench``: latency of sqbert_fast's backends against the engines people would pick instead.

    sqbert-fast bench --quick --out bench-out          # a couple of minutes on 2 cores, default model
    sqbert-fast bench --providers cpu,onnxruntime --shapes 1x128,8x128,mixed8x128 --precisions fp32
    sqbert-fast bench --quick --out new --compare old/bench.json

Method. Every provider is prepared first (load, export, compile: timed per phase, reported apart
from latency). Then, shape by shape, the providers are timed *round-robin* (one call each per
round) so that the load of a shared machine falls on all of them alike and same-run ratios stay
meaningful; medians and p90 are of those per-call wall times. The first call of each provider at
each shape is timed separately (it is where torch.compile compiles) and excluded. Each output is
compared with transformers fp32 on the non-padded positions.

FLOPs are the GEMM work of the encoder counted on the real (unpadded) lengths (``encoder_flops``),
so GFLOP/s is useful work per second, and a padded engine pays for its padding. The GEMM peak of
this machine is measured in the same run (a large torch.matmul per precision, best of a few).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

SCHEMA = "sqbert_fast.bench/1"
QUICK_SHAPES = "1x128,8x128,mixed8x128"
FULL_SHAPES = "1x32,1x128,1x512,8x32,8x128,8x512,32x32,32x128,32x512,mixed32x128"
# openvino: fp32 and its own default (bf16 on AMX / AVX512-BF16 CPUs); onnxruntime's CPU EP is fp32 only
QUICK_PROVIDERS = ("reference:fp32", "cpu", "cuda", "triton", "transformers", "onnxruntime:fp32", "openvino:fp32",
                   "openvino:default")
FULL_PROVIDERS = ("reference", "cpu", "cuda", "triton", "transformers", "torch.compile", "onnxruntime:fp32",
                  "openvino:fp32", "openvino:default")
PEER_NAMES = ("transformers", "torch.compile", "onnxruntime", "openvino")
# max |diff| vs transformers fp32 on non-padded positions; bf16/fp16 get 3x transformers' own error in
# that precision when it was measured in the run (DESIGN §5), else this floor
TOL = {"fp32": 1e-4, "bf16": 0.25, "fp16": 0.05}


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
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


_PEAK_N = {"fp32": 1024, "bf16": 2048, "fp16": 2048}


def measure_gemm_peak(device: str = "cpu", dtypes=("fp32", "bf16"), budget_s: float = 1.0, prev: Optional[dict] = None) -> dict:
    """Best GFLOP/s of a square torch.matmul per precision: this machine's practical GEMM peak.

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


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


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


def run_benchmark(model_dir: str, cells: list[tuple[str, str]], shapes: list[Shape], *, threads: int,
                  device: str = "cpu", min_reps: int = 5, max_reps: int = 100, budget_s: float = 2.0,
                  peak: bool = True, quiet: bool = False, model_note: str = "", options: Optional[dict] = None) -> dict:
    """Prepare every (provider, precision), time them round-robin per shape; return the JSON document."""
    import torch

    from . import peers
    from .config import SqueezeBertConfig
    from .threads import set_num_threads

    set_num_threads(threads)
    config = SqueezeBertConfig.from_pretrained(model_dir)
    meta = machine_info(threads, device)
    meta.update({"model_dir": os.path.abspath(model_dir), "model_note": model_note,
                 "config": {k: getattr(config, k) for k in (
                     "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "q_groups",
                     "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")},
                 "method": "round-robin per shape; median/p90 of per-call wall time; first call excluded; "
                           "FLOPs = encoder GEMM work on unpadded lengths; GEMM peak = best square torch.matmul "
                           "sampled before and between shapes",
                 "min_reps": min_reps, "budget_s_per_shape": budget_s})
    if peak:
        _log("measuring this machine's GEMM peak (torch.matmul fp32, bf16) ...", quiet)
        meta["gemm_peak_gflops"] = measure_gemm_peak(device)
        _log("  " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in meta["gemm_peak_gflops"].items()
                              if isinstance(v, float)), quiet)

    # transformers fp32 is the ground truth for every output
    ref_model = peers.prepare("transformers", model_dir, "fp32", device=device)

    prepared: list[Cell] = []
    unavailable: list[dict] = []
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
    for si, shape in enumerate(shapes, 1):
        ids, mask = shape.inputs(config.vocab_size)
        ids_d, mask_d = ids.to(device), mask.to(device)
        ref = ref_model(ids_d, mask_d).float().cpu()
        flops = encoder_flops(config, shape.seqlens())
        live, first, outs = [], {}, {}
        for cell in prepared:
            try:
                t0 = time.perf_counter()
                out = cell.prepared(ids_d, mask_d)
                cell.prepared.synchronize()
                first[cell.label] = time.perf_counter() - t0
                outs[cell.label] = _max_abs_diff(out, ref, mask)
                live.append(cell)
            except Exception as e:  # noqa: BLE001 - e.g. a shape a backend rejects
                results.append({"provider": cell.provider, "precision": cell.precision, "shape": shape.name,
                                "error": f"{type(e).__name__}: {e}"})
                _log(f"  {cell.label} {shape.name}: FAILED {type(e).__name__}: {e}", quiet)
        times: dict[str, list[float]] = {c.label: [] for c in live}
        t_start = time.perf_counter()
        rounds = 0
        while live and rounds < max_reps and (rounds < min_reps or time.perf_counter() - t_start < budget_s):
            for cell in live[rounds % len(live):] + live[:rounds % len(live)]:  # rotate who goes first
                t0 = time.perf_counter()
                cell.prepared(ids_d, mask_d)
                cell.prepared.synchronize()
                times[cell.label].append(time.perf_counter() - t0)
            rounds += 1
        _log(f"[shape {si}/{len(shapes)}] {shape.name}: {rounds} rounds x {len(live)} providers in "
             f"{time.perf_counter() - t_start:.1f} s", quiet)
        if peak:
            meta["gemm_peak_gflops"] = measure_gemm_peak(device, budget_s=0.3, prev=meta["gemm_peak_gflops"])
        for cell in live:
            s = summarize(times[cell.label])
            row = {"provider": cell.provider, "precision": cell.precision, "shape": shape.name, "batch": shape.batch,
                   "seq": shape.seq, "mixed": shape.mixed, "tokens": sum(shape.seqlens()), **s,
                   "first_call_s": first[cell.label], "seq_per_s": shape.batch / (s["median_ms"] / 1e3),
                   "gflop": flops / 1e9, "gflops": flops / 1e9 / (s["median_ms"] / 1e3),
                   "max_abs_diff": outs[cell.label]}
            if cell.actual_precision:
                row["actual_precision"] = cell.actual_precision
            results.append(row)
            _log(f"  {cell.label:<24} median {s['median_ms']:9.2f} ms  p90 {s['p90_ms']:9.2f} ms  "
                 f"diff {outs[cell.label]:.1e}", quiet)

    for cell in prepared:
        if cell.prepared is not None and cell.prepared.close:
            cell.prepared.close()
    try:
        meta["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    doc = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "meta": meta,
           "setup": [{"provider": c.provider, "precision": c.precision, "setup_s": c.setup_s, "notes": c.notes}
                     for c in prepared],
           "unavailable": unavailable, "results": results}
    derive(doc)
    return doc


def _peak_precision(row) -> str:
    p = row.get("actual_precision") or row["precision"]
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "default": "fp32"}.get(p, p)


def derive(doc: dict) -> dict:
    """Fill the columns computed across rows: % of peak, ratios, tolerance verdicts (in place)."""
    peak = doc.get("meta", {}).get("gemm_peak_gflops") or {}
    rows = [r for r in doc["results"] if "error" not in r]
    by_shape: dict[str, list[dict]] = {}
    for r in rows:
        by_shape.setdefault(r["shape"], []).append(r)
    for shape_rows in by_shape.values():
        eager = next((r for r in shape_rows if r["provider"] == "transformers" and r["precision"] == "fp32"), None)
        peer_rows = [r for r in shape_rows if r["provider"] in PEER_NAMES]
        best_peer = min(peer_rows, key=lambda r: r["median_ms"]) if peer_rows else None
        own_err = {r["precision"]: r["max_abs_diff"] for r in shape_rows if r["provider"] == "transformers"}
        for r in shape_rows:
            pk = peak.get(_peak_precision(r))
            r["pct_peak"] = 100.0 * r["gflops"] / pk if pk else None
            r["speedup_vs_eager"] = eager["median_ms"] / r["median_ms"] if eager else None
            r["speedup_vs_best_peer"] = best_peer["median_ms"] / r["median_ms"] if best_peer else None
            r["best_peer"] = f"{best_peer['provider']}:{best_peer['precision']}" if best_peer else None
            prec = _peak_precision(r)
            tol = TOL.get(prec, TOL["bf16"])
            if prec != "fp32" and own_err.get(prec):
                tol = max(3.0 * own_err[prec], TOL["fp32"])
            r["tol"] = tol
            r["ok"] = bool(r["max_abs_diff"] <= tol)
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


RESULT_HEADERS = ["provider", "prec", "shape", "median ms", "p90 ms", "seq/s", "GFLOP/s", "% peak",
                  "x eager", "x best peer", "max|diff|", "first call s"]


def results_table(doc: dict) -> str:
    rows = []
    for r in doc["results"]:
        if "error" in r:
            rows.append([r["provider"], r["precision"], r["shape"], "error", "-", "-", "-", "-", "-", "-",
                         r["error"][:40], "-"])
            continue
        prec = r["precision"] + (f"({r['actual_precision']})" if r.get("actual_precision") and r["precision"] == "default" else "")
        rows.append([r["provider"], prec, r["shape"], _fmt(r["median_ms"], ".2f"), _fmt(r["p90_ms"], ".2f"),
                     _fmt(r["seq_per_s"], "g3"), _fmt(r["gflops"], "g3"), _fmt(r.get("pct_peak"), "g3"),
                     _fmt(r.get("speedup_vs_eager"), ".2f"), _fmt(r.get("speedup_vs_best_peer"), ".2f"),
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
    peak = m.get("gemm_peak_gflops") or {}
    v = m.get("versions", {})
    lines = [f"machine: {m.get('cpu_model')} ({m.get('cpu_count')} cpus), threads={m.get('threads')}, "
             f"device={m.get('device')}, gpu={m.get('gpu') or 'none'}",
             f"isa: in use {isa.get('in_use', '?')}, usable {isa.get('usable', '?')}",
             "GEMM peak (best torch.matmul sampled through this run): " + (", ".join(f"{k} {val:.0f} GFLOP/s" for k, val in peak.items()
                                                         if isinstance(val, float)) or "not measured"),
             "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"model: {m.get('model_dir')} {m.get('model_note') or ''}".rstrip(),
             f"load average start {_fmt_load(m.get('loadavg_start'))} end {_fmt_load(m.get('loadavg_end'))}: "
             "numbers are medians of round-robin runs, ratios are within this run"]
    load = max((m.get("loadavg_start") or [0])[0], (m.get("loadavg_end") or [0])[0])
    if m.get("cpu_count") and load > m["cpu_count"]:
        lines.append(f"WARNING: the machine was busy (load {load:.1f} on {m['cpu_count']} cpus): absolute latencies are "
                     "inflated, torch eager's the most (its threads wait on each other); compare ratios, rerun when quiet")
    return "\n".join(lines)


def _fmt_load(v) -> str:
    return "?" if not v else "/".join(f"{x:.1f}" for x in v)


def report_text(doc: dict) -> str:
    parts = [header_text(doc), "", results_table(doc), "", "x eager / x best peer: how many times faster than "
             "transformers fp32 eager / than the fastest peer at that shape (>1 = faster). max|diff| vs "
             "transformers fp32, padded positions excluded.", "", "one-time setup (not in latency):",
             setup_table(doc)]
    if doc.get("unavailable"):
        parts += ["", "not run:"] + [f"  {u['provider']}:{u['precision']}: {u['reason']}" for u in doc["unavailable"]]
    return "\n".join(parts)


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
    """Save a random-weight SqueezeBertModel (default config unless overridden) and return its directory."""
    import torch

    from .config import SqueezeBertConfig
    from .modeling import SqueezeBertModel

    path = path or tempfile.mkdtemp(prefix="sqbert_fast-bench-model-")
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = SqueezeBertModel(SqueezeBertConfig(**(config_kwargs or {})), backend="reference")
    model.save_pretrained(path)
    return path


# ---- CLI -------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"a couple of minutes: shapes {QUICK_SHAPES}, fp32+bf16, no torch.compile")
    p.add_argument("--model", help="model directory (default: the built-in default model)")
    p.add_argument("--providers", help="comma list; provider or provider:precision "
                   f"(default: {','.join(QUICK_PROVIDERS)} [+torch.compile without --quick]; "
                   "ones that cannot run here are skipped with the reason)")
    p.add_argument("--precisions", default="fp32,bf16", help="for providers given without :precision (default fp32,bf16)")
    p.add_argument("--shapes", help=f"BATCHxSEQ or mixedBATCHxSEQ list (default {FULL_SHAPES}; --quick {QUICK_SHAPES})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every engine (default: all cpus)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--min-reps", type=int, default=None, help="timed calls per provider and shape, at least (default 5, --quick 3)")
    p.add_argument("--max-reps", type=int, default=200)
    p.add_argument("--budget", type=float, default=None, help="seconds of round-robin timing per shape (default 5, --quick 2)")
    p.add_argument("--out", default="bench-out", help="directory for bench.json and bench.png (default bench-out)")
    p.add_argument("--compare", metavar="OLD_JSON", help="print a regression table against an earlier bench.json")
    p.add_argument("--current", metavar="NEW_JSON", help="with --compare: compare this file instead of running")
    p.add_argument("--threshold", type=float, default=0.10, help="--compare: relative change counted (default 0.10)")
    p.add_argument("--fail-on-regression", action="store_true", help="--compare: exit 1 if any row regressed")
    p.add_argument("--onnx-exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                   help="torch.onnx exporter for onnxruntime (auto: dynamo, legacy if it fails)")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the GEMM peak")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _load_json(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or "results" not in doc:
        raise ValueError(f"{path} is not a sqbert-fast bench JSON (schema {SCHEMA})")
    return doc


def run(args) -> int:
    if args.compare and args.current:
        text, rows = compare(_load_json(args.compare), _load_json(args.current), args.threshold)
        print(text)
        return 1 if args.fail_on_regression and any(r["verdict"] == "REGRESSION" for r in rows) else 0
    old = _load_json(args.compare) if args.compare else None  # fail before a long run, not after

    if args.model:
        model_dir, note = args.model, ""
    else:
        _log("resolving the default model ...", args.quiet)
        model_dir, note = default_model()
        _log(f"  {model_dir} {note}", args.quiet)
    from .config import SqueezeBertConfig

    config = SqueezeBertConfig.from_pretrained(model_dir)
    shapes = parse_shapes(args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES), config.max_position_embeddings)
    if args.providers:
        providers = args.providers
    elif args.quick:
        providers = ",".join(QUICK_PROVIDERS)
    else:  # every ISA variant of the cpu backend too, except scalar (minutes per call at full size)
        from .peers import cpu_isas

        providers = ",".join(FULL_PROVIDERS + tuple(f"cpu-{i}" for i in cpu_isas() if i != "scalar"))
    cells = parse_providers(providers, [p.strip() for p in args.precisions.split(",") if p.strip()])
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    _quiet_third_party()
    doc = run_benchmark(model_dir, cells, shapes, threads=args.threads, device=args.device,
                        min_reps=args.min_reps or (3 if args.quick else 5), max_reps=args.max_reps,
                        budget_s=args.budget if args.budget is not None else (2.0 if args.quick else 5.0),
                        peak=not args.no_peak, quiet=args.quiet, model_note=note,
                        options={"exporter": args.onnx_exporter})
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
           "format_table", "results_table", "report_text", "plot", "measure_gemm_peak", "add_arguments", "run"]
