"""``sqbert-fast demo``: the first-run job on the built-in default model.

Embeds a bundled text file (sentence-transformers style: mean pooling + L2 normalisation) with
every backend that runs here, and prints per backend: parity with transformers (max abs diff of
the last hidden state on real tokens, and cosine of the sentence embeddings) and time per sequence.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from . import backends
from .default_model import default_model_dir, source_bert_dir

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "sample_texts.txt")


def mean_pool(last_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(last_hidden.dtype)
    emb = (last_hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(emb, dim=-1)


def add_arguments(p) -> None:
    p.add_argument("--input", default=SAMPLE, help="text file, one text per line (default: bundled sample)")
    p.add_argument("--model", default=None, help="SqueezeBERT checkpoint directory (default: built-in model)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)


def run(args) -> int:
    from . import SqueezeBertModel, SqueezeBertTokenizerFast

    model_dir = args.model or default_model_dir()
    with open(args.input, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    tok = SqueezeBertTokenizerFast.from_pretrained(model_dir)
    batches = [tok(texts[i:i + args.batch_size], padding=True, truncation=True, return_tensors="pt")
               for i in range(0, len(texts), args.batch_size)]
    print(f"model: {model_dir}\ntexts: {len(texts)} from {args.input}, batch size {args.batch_size}")

    reference = None
    try:
        from transformers import AutoModel

        src = args.model or source_bert_dir()
        hf = AutoModel.from_pretrained(src).eval()
        with torch.no_grad():
            reference = [hf(**b).last_hidden_state for b in batches]
    except ImportError:
        print("transformers is not installed: parity columns show n/a")

    # one row per backend, printed as soon as it is measured (progress on a slow CPU); fp32 only: no
    # precision this CPU might emulate
    print(f"\n{'backend':<12}{'ms/sequence':>14}{'max |diff|':>14}{'min cosine':>14}", flush=True)
    for name in backends.available_backends("cpu", torch.float32):
        model = SqueezeBertModel.from_pretrained(model_dir, backend=name)
        outs = [model(**b).last_hidden_state for b in batches]  # warm-up and results
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for b in batches:
                model(**b)
            times.append((time.perf_counter() - t0) / len(texts))
        diff = cos = float("nan")
        if reference is not None:
            diff = max(float((o - r)[b["attention_mask"].bool()].abs().max()) for o, r, b in zip(outs, reference, batches))
            cos = min(float((mean_pool(o, b["attention_mask"]) * mean_pool(r, b["attention_mask"])).sum(-1).min())
                      for o, r, b in zip(outs, reference, batches))
        print(f"{name:<12}{statistics.median(times) * 1e3:>14.3f}{diff:>14.2e}{cos:>14.6f}", flush=True)
    if reference is not None:
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(args.repeats):
                for b in batches:
                    hf(**b)
        ms = (time.perf_counter() - t0) / args.repeats / len(texts) * 1e3
        print(f"{'transformers':<12}{ms:>14.3f}{0.0:>14.2e}{1.0:>14.6f}")
    return 0
