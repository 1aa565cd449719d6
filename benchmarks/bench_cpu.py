"""CPU latency table of issue 3: the ``cpu`` backend against the CPU engines a user would pick instead.

    python benchmarks/bench_cpu.py [--threads 2] [--reps 30] [--shapes 1x32,1x128,8x128,1x512,mixed]
                                   [--providers cpu,transformers,torch.compile,onnxruntime,openvino]

Prints, per shape: median ms of every provider x precision, the cpu backend's speed-up over
each peer, its GFLOP/s and the % of the GEMM peak measured in the same run (torch.mm on the
same threads, best of a few large shapes). Providers are timed round-robin, one call each per
round, so a noisy neighbour slows all of them alike; medians over ``--reps`` rounds. Each
speed-up is given twice: the ratio of the medians, and the median (with quartiles) of the
per-round ratios, which pairs calls made seconds apart and so cancels the
machine's slower minute-to-minute swings. In each round a provider waits ``--gap-ms``, then
makes ``--settle`` untimed calls before its timed one: it pays nothing for the engine before it
(ONNX Runtime's thread pool spins for 30-50 ms after a call by default, and another engine's
call started inside that window ran up to 2x slower here) and is timed warm. After
timing, every provider's output is checked against transformers fp32 (max abs diff on real
tokens) — a fast wrong result is flagged, not hidden.

The model is SqueezeBERT's default config (squeezebert-uncased shapes) with random weights,
written once to a temporary checkpoint; ``mixed`` is 32 sequences with lengths spread over
8..128, padded to 128 (sqbert_fast computes only the real tokens; peers run the padded batch).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path and importlib.util.find_spec("sqbert_fast") is None:
    # an uninstalled checkout; appended, not prepended: the repository's `kernels/` folder must not
    # shadow the PyPI package `kernels` that transformers imports (this file is collected by pytest too)
    sys.path.append(ROOT)

import sqbert_fast as sqf  # noqa: E402
from sqbert_fast import peers  # noqa: E402


def model_flops(cfg, seqlens) -> float:
    """Multiply-adds x 2 of the encoder on real tokens: the six grouped convs + QK^T and PV."""
    H, I = cfg.hidden_size, cfg.intermediate_size
    per_token = (H * H // cfg.q_groups + H * H // cfg.k_groups + H * H // cfg.v_groups
                 + H * H // cfg.post_attention_groups + H * I // cfg.intermediate_groups
                 + I * H // cfg.output_groups)
    macs = sum(L * per_token + 2 * L * L * H for L in seqlens) * cfg.num_hidden_layers
    return 2.0 * macs


def gemm_peak(dtype, threads, reps=15) -> float:
    """Best GFLOP/s of torch.mm (oneDNN/MKL) over a few large shapes on this many threads."""
    best = 0.0
    for m, k, n in ((1024, 768, 3072), (2048, 1024, 1024), (1024, 3072, 768)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            ts.append(time.perf_counter() - t0)
        best = max(best, 2.0 * m * k * n / statistics.median(ts) / 1e9)
    return best


def paired_ratio(mine: list, peer: list) -> tuple[float, float, float]:
    """Median and quartiles of the per-round speed-ups peer[r] / mine[r] (same-round calls)."""
    ratios = [p / m for m, p in zip(mine, peer)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return med, q1, q3


def make_inputs(shape: str, vocab: int, gen: torch.Generator):
    if shape == "mixed":
        lens = torch.linspace(8, 128, 32).round().long()
        lens = lens[torch.randperm(32, generator=gen)]
        S = 128
        mask = (torch.arange(S)[None, :] < lens[:, None]).long()
        ids = torch.randint(1, vocab, (32, S), generator=gen) * mask
        return ids, mask
    b, s = (int(x) for x in shape.split("x"))
    return torch.randint(1, vocab, (b, s), generator=gen), torch.ones(b, s, dtype=torch.long)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--shapes", default="1x32,1x128,8x128,1x512,mixed")
    ap.add_argument("--providers", default="cpu,transformers,torch.compile,onnxruntime,openvino")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--gap-ms", type=float, default=100.0,
                    help="idle time before each provider's calls in a round (other engines' threads stop spinning)")
    ap.add_argument("--settle", type=int, default=1,
                    help="untimed calls before each timed one (absorb the previous engine's spinning threads)")
    args = ap.parse_args()

    sqf.set_num_threads(args.threads)
    import transformers

    torch.manual_seed(0)
    cfg = transformers.SqueezeBertConfig()
    tmp = tempfile.mkdtemp(prefix="sqbert-bench-")
    transformers.SqueezeBertModel(cfg).eval().save_pretrained(tmp)

    wanted = []
    for prov in args.providers.split(","):
        for prec in args.precisions.split(","):
            if prov == "openvino" and prec == "bf16":
                prec = "default"  # OpenVINO's own choice: bf16 on AMX / AVX512-BF16 CPUs
            if prov in ("onnxruntime",) and prec != "fp32":
                continue
            wanted.append((prov, prec))
    prepared, skipped = {}, {}
    for prov, prec in wanted:
        try:
            prepared[(prov, prec)] = peers.prepare(prov, tmp, prec, threads=args.threads)
        except peers.Unavailable as e:
            skipped[(prov, prec)] = str(e)
        except Exception as e:  # an engine failing to load is reported, not fatal
            skipped[(prov, prec)] = f"{type(e).__name__}: {e}"
    ref = peers.prepare("transformers", tmp, "fp32")

    peak = {"fp32": gemm_peak(torch.float32, args.threads)}
    if ("cpu", "bf16") in prepared:
        peak["bf16"] = gemm_peak(torch.bfloat16, args.threads)
    isa = sqf._C.default_isa() if hasattr(sqf, "_C") else "?"
    print(f"# threads={args.threads} isa={isa} torch={torch.__version__} reps={args.reps} gap={args.gap_ms:g} ms settle={args.settle} "
          f"cpu={sqf._C.cpu_info()['brand']}")
    print("# GEMM peak (torch.mm, same threads, this run): " +
          ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    for k, why in skipped.items():
        print(f"# skipped {k[0]} {k[1]}: {why}")

    gen = torch.Generator().manual_seed(1)
    for shape in args.shapes.split(","):
        ids, mask = make_inputs(shape, cfg.vocab_size, gen)
        seqlens = mask.sum(1).tolist()
        flops = model_flops(cfg, seqlens)
        with torch.inference_mode():
            want = ref(ids, mask).float()
            errs = {}
            for k, p in prepared.items():  # warm-up (torch.compile compiles here) + check
                for _ in range(2):
                    out = p(ids, mask)
                errs[k] = ((out.float() - want).abs() * mask[..., None]).max().item()
            times = {k: [] for k in prepared}
            for _ in range(args.reps):
                for k, p in prepared.items():
                    time.sleep(args.gap_ms / 1e3)
                    for _ in range(args.settle):
                        p(ids, mask)
                    t0 = time.perf_counter()
                    p(ids, mask)
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"\n## {shape}  ({len(seqlens)} seq, {sum(seqlens)} real tokens, {flops / 1e9:.2f} GFLOP)")
        print("| provider | precision | median ms | max abs diff vs transformers fp32 | GFLOP/s | % of GEMM peak |")
        print("|---|---|---|---|---|---|")
        for k in prepared:
            gf = flops / med[k] / 1e6
            pk = peak.get(k[1] if k[1] in peak else "bf16" if k[1] == "default" else "fp32")
            pct = f"{100 * gf / pk:.0f}%" if pk else "-"
            print(f"| {k[0]} | {k[1]} | {med[k]:.2f} | {errs[k]:.1e} | {gf:.0f} | {pct} |")
        for mine in [k for k in prepared if k[0] == "cpu"]:
            ratios = []
            for k in (k for k in prepared if k[0] != "cpu"):
                pm, q1, q3 = paired_ratio(times[mine], times[k])
                ratios.append(f"{k[0]} {k[1]}: {med[k] / med[mine]:.2f}x (per round {pm:.2f}x, {q1:.2f}-{q3:.2f})")
            print(f"speed-up of cpu {mine[1]} over: " + (", ".join(ratios) or "-"))
    print_memory(tmp, [prec for prov, prec in prepared if prov == "cpu"])
    return 0


def print_memory(model_dir: str, precisions) -> None:
    """Weight memory of a loaded cpu-backend model: its parameters plus the engine's packed copies of the
    GEMM weights (the issue's bound: at most 1.3x the model's weight bytes). Workspaces grow with the batch
    and are not counted."""
    if not precisions:
        return
    print("\n## weight memory of a loaded model (cpu backend)")
    print("| precision | parameters MiB | packed copies MiB | total / parameters | total / all-in-precision bytes |")
    print("|---|---|---|---|---|")
    for prec in precisions:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[prec]
        m = sqf.SqueezeBertModel.from_pretrained(model_dir, backend="cpu", dtype=dtype)
        params = {id(p): p for p in m.parameters()}.values()
        nbytes = sum(p.numel() * p.element_size() for p in params)
        uniform = sum(p.numel() for p in params) * torch.finfo(dtype).bits // 8
        packed = m._get_runner().encoder.packed_weight_bytes
        mib = 2.0 ** 20
        print(f"| {prec} | {nbytes / mib:.1f} | {packed / mib:.1f} | {(nbytes + packed) / nbytes:.2f}x | "
              f"{(nbytes + packed) / uniform:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
