"""Batch offline scoring throughput: file in -> file out, against the engine alone and transformers.pipeline.

    python benchmarks/bench_scoring.py                      # 20,000 texts, default model, embed task
    python benchmarks/bench_scoring.py --rows 2000 --threads 2

Texts are made of whole-word vocabulary entries with token counts drawn log-normal (median ~25, capped
at 128), like real sentences. Three measurements in one run, same model, same threads:

1. end to end: ``Scorer.score_file`` from a JSONL file to a Parquet file (read, tokenize in the prepare
   thread, length-sorted batches, engine, mean pooling, committed parts, final merge);
2. engine: only ``model(**batch)`` on exactly the batches (1) formed, pre-tokenized and pre-padded;
3. transformers: ``pipeline("feature-extraction", batch_size=32)`` on the same checkpoint, mean-pooled.

The issue's targets: (1) >= 85% of (2), and (1) >= 3x (3). The run checks that (1) and (3) agree
(cosine of the mean-pooled embeddings), since a fast wrong answer is worthless.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time

import numpy as np
import torch


def make_texts(vocab_file: str, rows: int, median: int, cap: int, sigma: float, seed: int) -> list[str]:
    with open(vocab_file, encoding="utf-8") as f:
        words = [w.strip() for w in f if re.fullmatch(r"[a-z]{3,}", w.strip())]
    rng = random.Random(seed)
    texts = []
    for _ in range(rows):
        n = min(cap - 2, max(1, int(round(rng.lognormvariate(np.log(median), sigma)))))  # -2: [CLS], [SEP]
        texts.append(" ".join(rng.choice(words) for _ in range(n)))
    return texts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="SqueezeBERT checkpoint directory (default: the bundled default model)")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--median-tokens", type=int, default=25)
    p.add_argument("--sigma", type=float, default=0.6, help="log-normal sigma of the token counts")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-tokens", type=int, default=8192, help="padded-token budget per batch")
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: torch's)")
    p.add_argument("--pipeline-rows", type=int, default=None,
                   help="score only the first N texts with transformers.pipeline (default: all)")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--repeat", type=int, default=2, help="alternating end-to-end / engine runs (best of each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    import sqbert_fast as sqf
    from sqbert_fast.scoring import Scorer
    from sqbert_fast.scoring.readers import read_rows
    from sqbert_fast.scoring.scorer import Window

    if args.threads:
        sqf.set_num_threads(args.threads)
    if args.model is None:
        from sqbert_fast.default_model import default_model_dir

        args.model = default_model_dir()
    texts = make_texts(os.path.join(args.model, "vocab.txt"), args.rows, args.median_tokens, args.max_length,
                       args.sigma, args.seed)
    results: dict = {"rows": args.rows, "threads": sqf.get_num_threads(), "model": args.model,
                     "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        src = os.path.join(tmp, "texts.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        scorer = Scorer(args.model, "embed", max_length=args.max_length, max_tokens=args.max_tokens,
                        window=args.window)
        results["backend"] = scorer.model.backend

        # Warm-up (first-call allocations, packed weights) on a small file, then the timed run.
        warm = os.path.join(tmp, "warm.jsonl")
        with open(warm, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts[:256])
        scorer.score_file(warm, os.path.join(tmp, "warm.parquet"), progress=False)

        # The engine alone on the very same batches: every window prepared up front, forward only timed.
        rows = list(read_rows(src, columns=["text"]))
        windows = [scorer.prepare(Window(k, rows[i:i + args.window]))
                   for k, i in enumerate(range(0, len(rows), args.window))]
        batches = [tensors for w in windows for _, tensors in w.batches]
        tokens = sum(w.tokens for w in windows)

        def engine_only() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                for tensors in batches:
                    scorer.model(**tensors)
                return time.perf_counter() - t0

        out = os.path.join(tmp, "embeddings.parquet")

        def end_to_end():
            t0 = time.perf_counter()
            summary = scorer.score_file(src, out, progress=sys.stderr.isatty(), overwrite=True)
            return time.perf_counter() - t0, summary

        # On a shared machine the load drifts: alternate the two and keep each one's best run.
        e2e_runs, raw_runs = [], []
        for rep in range(args.repeat):
            first, second = (end_to_end, engine_only) if rep % 2 == 0 else (engine_only, end_to_end)
            for fn in (first, second):
                r = fn()
                if fn is end_to_end:
                    e2e_runs.append(r[0])
                    summary = r[1]
                    print(f"  end to end: {r[0]:.2f} s (model busy {r[1].model_seconds / r[0]:.1%}, "
                          f"{r[1].wait_seconds:.2f} s waiting for input)", flush=True)
                else:
                    raw_runs.append(r)
                    print(f"  engine only: {r:.2f} s", flush=True)
        e2e, raw = min(e2e_runs), min(raw_runs)
        assert summary.tokens == tokens, (summary.tokens, tokens)
        results.update(tokens=tokens, batches=len(batches), e2e_runs_s=e2e_runs, engine_runs_s=raw_runs,
                       e2e_s=e2e, e2e_rows_per_s=args.rows / e2e, e2e_tokens_per_s=tokens / e2e,
                       engine_s=raw, engine_rows_per_s=args.rows / raw, engine_tokens_per_s=tokens / raw,
                       e2e_vs_engine=raw / e2e)
        print(f"end to end (jsonl -> parquet): {e2e:.2f} s, {args.rows / e2e:,.1f} rows/s, "
              f"{tokens / e2e:,.0f} tokens/s  [{tokens:,} tokens]")
        print(f"engine only (same {len(batches)} packed batches): {raw:.2f} s, {args.rows / raw:,.1f} rows/s, "
              f"{tokens / raw:,.0f} tokens/s")
        print(f"end to end / engine throughput: {raw / e2e:.1%}  (target >= 85%)")

        if not args.skip_pipeline:
            import pyarrow.parquet as pq
            from transformers import pipeline

            n = args.pipeline_rows or args.rows
            pipe = pipeline("feature-extraction", model=args.model, tokenizer=args.model, device="cpu",
                            batch_size=32, framework="pt") if _takes_framework() else \
                pipeline("feature-extraction", model=args.model, tokenizer=args.model, device="cpu", batch_size=32)
            kw = dict(return_tensors=True, tokenize_kwargs={"truncation": True, "max_length": args.max_length})
            pipe(texts[:64], **kw)  # warm-up
            t0 = time.perf_counter()
            hf_out = list(pipe(texts[:n], **kw))
            hf_s = time.perf_counter() - t0
            # The pipeline returns each row padded to its batch's longest: pool over the real tokens only.
            lengths = [len(e.ids) for e in scorer._tok.encode_batch_fast(texts[:n])]
            hf = [o[0][:length].mean(0) for o, length in zip(hf_out, lengths)]
            ours = pq.read_table(out, columns=["embedding"]).column("embedding").to_pylist()
            a = torch.stack(hf).numpy()
            b = np.asarray(ours[:n], dtype=np.float32)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            results.update(pipeline_rows=n, pipeline_s=hf_s, pipeline_rows_per_s=n / hf_s,
                           e2e_vs_pipeline=(args.rows / e2e) / (n / hf_s), min_cosine_vs_pipeline=float(cos.min()))
            print(f"transformers.pipeline batch_size=32 ({n:,} rows): {hf_s:.2f} s, {n / hf_s:,.1f} rows/s")
            print(f"end to end / pipeline throughput: {results['e2e_vs_pipeline']:.2f}x  (target >= 3x); "
                  f"min cosine between the two embeddings: {cos.min():.6f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


def _takes_framework() -> bool:
    import inspect

    from transformers import pipeline

    return "framework" in inspect.signature(pipeline).parameters


if __name__ == "__main__":
    sys.exit(main())
