"""Which GPU backend ``backend="auto"`` takes on a CUDA device: by measurements the repo keeps.

``data/gpu_backend_timings.json`` holds runs of ``benchmarks/bench_gpu.py`` (``sqbert-fast bench --device
cuda`` with that script's shapes and providers): per card (name and compute capability) and dtype, the
median ms of each sqbert_fast backend at each shape, and where the run came from. For a device and dtype,
``rank`` takes the run that matches best (same capability and a name the device's name contains, then same
capability, then same architecture family = same major version; the newest run first among equals), orders
the backends that can run by the geometric mean of their median ms over the shapes all of them were
measured at, and puts the unmeasured ones after in the fallback order (triton, cuda, reference). With no
matching run the fallback order alone decides. The reason is text
that names the run and its numbers, or the fallback rule.

    python -m sqbert_fast.gpu_timings merge OUT_DIR/bench.json [--into FILE] [--source TEXT]
    python -m sqbert_fast.gpu_timings show

``merge`` adds a ``sqbert-fast bench --device cuda`` result (or an older bench_gpu.json) to the file
(replacing the run of the same card, capability, dtype and config); ``show`` prints what auto would take
on each card in the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "gpu_backend_timings.json")
FALLBACK = ("triton", "cuda", "reference")  # no measurement: Triton is faster wherever both were measured
BACKENDS = ("triton", "cuda")  # bench_gpu.py providers that are sqbert_fast backends
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def dtype_name(dtype) -> str:
    return dtype if isinstance(dtype, str) else _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def load(path: Optional[str] = None) -> dict:
    with open(path or DATA) as f:
        doc = json.load(f)
    if not isinstance(doc.get("runs"), list):
        raise ValueError(f"{path or DATA}: no 'runs' list")
    return doc


@dataclass
class Choice:
    name: str                      # the backend auto takes ("" when none can run)
    order: list                    # every backend that can run, best first
    reason: str                    # why, as text
    run: Optional[dict] = None     # the measurement used (None: fallback rule)
    match: str = ""                # how the run matched the device
    skipped: dict = field(default_factory=dict)  # measured backends that cannot run -> why


def _cap(text) -> tuple:
    major, minor = str(text).split(".")
    return int(major), int(minor)


def match_run(runs: list, name: str, capability: tuple, dtype: str) -> tuple[Optional[dict], str]:
    """(run, how it matched) for a device, or (None, "")."""
    major, minor = capability
    lname = (name or "").lower()
    tiers = (
        ("compute capability %d.%d and name %s" % (major, minor, "{gpu}"),
         lambda r: _cap(r["capability"]) == (major, minor) and r["gpu"].lower() in lname),
        ("compute capability %d.%d" % (major, minor), lambda r: _cap(r["capability"]) == (major, minor)),
        ("architecture family sm_%dx" % major, lambda r: _cap(r["capability"])[0] == major),
    )
    for how, ok in tiers:
        hits = [r for r in runs if r.get("dtype") == dtype and ok(r)]
        if hits:
            run = max(hits, key=lambda r: r.get("date", ""))  # newest among equals
            return run, how.replace("{gpu}", run["gpu"])
    return None, ""


def _geomean(xs) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def rank(device_name: str, capability: Optional[tuple], dtype, runnable: dict, timings: Optional[dict] = None) -> Choice:
    """Order the backends that can run (``runnable``: name -> reasons, empty = can run) for a CUDA
    device of this name and capability (None: unknown) in this dtype."""
    dt = dtype_name(dtype)
    can = [n for n, why in runnable.items() if not why]
    fallback = [n for n in FALLBACK if n in can] + sorted(n for n in can if n not in FALLBACK)
    runs = (timings if timings is not None else load())["runs"]
    run, how = match_run(runs, device_name, capability, dt) if capability else (None, "")
    skipped = {}
    if run is not None:
        measured = {n: v for n, v in run["ms"].items() if v}
        skipped = {n: runnable.get(n) or ["not registered here"] for n in measured if n not in can}
        cands = [n for n in measured if n in can]
        shapes = sorted(set.intersection(*(set(measured[n]) for n in cands))) if cands else []
        if cands and shapes:
            score = {n: _geomean([measured[n][s] for s in shapes]) for n in cands}
            best = sorted(cands, key=lambda n: score[n])
            order = best + [n for n in fallback if n not in best]
            per = "; ".join(f"{n} {'/'.join(f'{measured[n][s]:g}' for s in shapes)} ms" for n in best)
            what = "fastest measured" if len(best) > 1 else "the only measured backend that can run here,"
            text = (f"{order[0]}: {what} on {run['gpu']} (sm_{run['capability'].replace('.', '')}, {dt}; "
                    f"matched by {how}): {per} at {'/'.join(shapes)}")
            if len(best) > 1:
                text += f" (geometric mean {' vs '.join(f'{score[n]:.3g}' for n in best)} ms)"
            if skipped:
                text += "; measured but cannot run here: " + "; ".join(f"{n}: {', '.join(w)}" for n, w in skipped.items())
            text += f"; source: {run.get('source', '?')}"
            return Choice(order[0], order, text, run, how, skipped)
    if not fallback:
        return Choice("", [], "no backend can run", None, "", skipped)
    where = (f"{device_name or 'this GPU'} (sm_{capability[0]}{capability[1]})" if capability else "this device")
    why = f"no {dt} measurement for {where} or its family in the timings file"
    if run is not None:
        why = f"the {run['gpu']} {dt} run measured none of the backends that can run here"
    text = f"{fallback[0]}: {why}; fallback order {', '.join(FALLBACK)}, first that can run"
    before = FALLBACK[:FALLBACK.index(fallback[0])] if fallback[0] in FALLBACK else FALLBACK
    passed = [f"{n}: {', '.join(runnable.get(n) or ['not registered here'])}" for n in before]
    if passed:
        text += f" ({'; '.join(passed)})"
    return Choice(fallback[0], fallback, text, None, "", skipped)


def device_identity(device) -> tuple[str, Optional[tuple]]:
    """(name, (major, minor)) of a CUDA device; ("", None) when it cannot be queried."""
    device = torch.device(device)
    try:
        index = device.index if device.index is not None else 0
        return torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index))
    except Exception:  # no driver, no device: the backends' reasons say so
        return "", None


def per_card(dtype=torch.float16, timings: Optional[dict] = None) -> list:
    """What auto would take on each card of the file (both GPU backends assumed built and installed)."""
    timings = timings if timings is not None else load()
    out = []
    for run in timings["runs"]:
        if run.get("dtype") != dtype_name(dtype):
            continue
        runnable = {n: [] for n in FALLBACK}
        c = rank(run["gpu"], _cap(run["capability"]), dtype, runnable, timings)
        out.append(dict(gpu=run["gpu"], capability=run["capability"], dtype=run["dtype"], backend=c.name,
                        reason=c.reason))
    return out


# ---- adding a benchmark result ------------------------------------------------------------------
_BENCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def _from_bench_json(doc: dict) -> dict:
    """A ``sqbert-fast bench`` document (schema sqbert_fast.bench/1) in the form run_from_bench reads: one
    precision's rows, ``correct`` being the row's tolerance verdict."""
    rows = [r for r in doc["results"] if "error" not in r]
    precs = sorted({r["precision"] for r in rows})
    if len(precs) != 1 or precs[0] not in _BENCH_DTYPES:
        raise ValueError(f"a timings run is one precision of fp16, bf16, fp32; this bench.json has {precs or 'none'}")
    m = doc["meta"]
    note = m.get("model_note") or ""
    return dict(meta=dict(gpu=m.get("gpu"), capability=m.get("capability"), commit=m.get("commit"),
                          date=str(doc.get("created", ""))[:10] or None, dtype=_BENCH_DTYPES[precs[0]],
                          reps=max(r["reps"] for r in rows), timer=m.get("timer", "wall"),
                          config="SqueezeBERT default config, random weights" if "random weights" in note
                          else m.get("model_dir")),
                results=[dict(provider=r["provider"], shape=r["shape"], median_ms=r["median_ms"], correct=r.get("ok"))
                         for r in rows])


def run_from_bench(doc: dict, source: Optional[str] = None) -> dict:
    """A timings-file run from a benchmark result (bench.json, or an older bench_gpu.json): only the cells whose
    output was correct."""
    if str(doc.get("schema", "")).startswith("sqbert_fast.bench/"):
        doc = _from_bench_json(doc)
    meta = doc["meta"]
    if not meta.get("capability"):
        raise ValueError("the result has no meta.capability (not run on a CUDA device, or by an older bench_gpu.py)")
    ms: dict = {}
    peers: dict = {}
    for r in doc["results"]:
        if r.get("median_ms") is None or not r.get("correct"):
            continue
        (ms if r["provider"] in BACKENDS else peers).setdefault(r["provider"], {})[r["shape"]] = round(r["median_ms"], 4)
    if not ms:
        raise ValueError("the result has no correct sqbert_fast backend cell to record")
    commit = meta.get("commit")
    src = source or ("benchmarks/bench_gpu.py on one %s%s" % (meta["gpu"], f" on commit {commit}" if commit else ""))
    return dict(gpu=meta["gpu"], capability=meta["capability"], dtype=meta.get("dtype", "float16"),
                config=meta.get("config", "SqueezeBERT default config, random weights"),
                stat=f"median ms of {meta.get('reps', '?')} "
                     + ("wall-clock-timed calls" if meta.get("timer") == "wall" else "CUDA-event-timed calls"), source=src,
                date=meta.get("date") or datetime.date.today().isoformat(), ms=ms, peers_ms=peers)


def merge(timings: dict, run: dict) -> dict:
    """timings with `run` added, replacing the run of the same card, capability, dtype and config."""
    same = ("gpu", "capability", "dtype", "config")
    runs = [r for r in timings["runs"] if any(r.get(k) != run.get(k) for k in same)]
    return dict(timings, runs=runs + [run])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sqbert_fast.gpu_timings", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="add a bench.json run (sqbert-fast bench --device cuda) to the timings file")
    m.add_argument("bench_json")
    m.add_argument("--into", default=DATA, help="timings file to update (default: the package's)")
    m.add_argument("--out", help="write the result here instead of updating --into")
    m.add_argument("--source", help="how to name the run (default: card and commit from the JSON)")
    s = sub.add_parser("show", help="what auto takes on each card of the file")
    s.add_argument("--file", default=DATA)
    args = p.parse_args(argv)
    if args.cmd == "merge":
        with open(args.bench_json) as f:
            run = run_from_bench(json.load(f), args.source)
        doc = merge(load(args.into), run)
        dest = args.out or args.into
        with open(dest, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"{dest}: {run['gpu']} sm_{run['capability'].replace('.', '')} {run['dtype']}: " +
              "; ".join(f"{n} {v}" for n, v in run["ms"].items()))
        return 0
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        rows = per_card(dt, load(args.file))
        for r in rows:
            print(f"{r['gpu']} (sm_{r['capability'].replace('.', '')}) {r['dtype']}: {r['reason']}")
        if not rows:
            print(f"{dtype_name(dt)}: no run in the file; auto takes {FALLBACK[0]} when installed, else "
                  f"{', then '.join(FALLBACK[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
