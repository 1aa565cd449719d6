"""int8 accuracy on real weights and real text (issue 19): int8 against fp32, by sentence embeddings and retrieval.

The model is a float checkpoint (default: the built-in all-MiniLM-L6-v2 converted into a SqueezeBERT, see
``default_model``); the text is ``corpus.real_sentences(n)``, prose nobody here wrote. Each engine embeds every
sentence (mean-pooled last hidden state over the real tokens); the figures, for int8 against our fp32:

- ``mean_cos`` / ``min_cos``: cosine of each sentence's int8 embedding to its fp32 embedding, mean and worst;
- ``top10_overlap``: each sentence's 10 nearest other sentences by cosine, int8 list against fp32 list, the
  fraction in common averaged over all sentences.

Targets (DESIGN.md §5): mean >= 0.995, min >= 0.98, overlap >= 0.90, and no worse than the best int8 peer.

    from sqbert_fast.int8_eval import evaluate
    report = evaluate(n=2000, backend="reference", peers=("onnxruntime", "openvino"))
    python -m sqbert_fast.int8_eval --n 2000 --peers onnxruntime openvino
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

TARGETS = {"mean_cos": 0.995, "min_cos": 0.98, "top10_overlap": 0.90}
CONV_KINDS = ("q", "k", "v", "post", "inter", "out")
_CONV_MODULES = dict(zip(CONV_KINDS, ("attention.query", "attention.key", "attention.value", "post_attention.conv1d",
                                      "intermediate.conv1d", "output.conv1d")))

Run = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input_ids, attention_mask) -> last hidden [B, S, H]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1)


def tokenize(model_dir: str, texts: Sequence[str], max_length: int = 128) -> list[dict]:
    """Batches of (input_ids, attention_mask) for ``texts``, sorted by length (little padding), each with the
    positions of its sentences in ``texts``."""
    from .tokenization import SqueezeBertTokenizerFast

    tok = SqueezeBertTokenizerFast.from_pretrained(model_dir)
    lens = [len(x) for x in tok(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lens[i])
    batches, step = [], 64
    for s in range(0, len(order), step):
        idx = order[s:s + step]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batches.append({"idx": idx, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return batches


def embed(run: Run, batches: list[dict]) -> torch.Tensor:
    """[N, H] mean-pooled sentence embeddings, in the order of the texts ``batches`` came from."""
    n = sum(len(b["idx"]) for b in batches)
    out: Optional[torch.Tensor] = None
    with torch.inference_mode():
        for b in batches:
            e = mean_pool(run(b["input_ids"], b["attention_mask"]), b["attention_mask"])
            if out is None:
                out = torch.empty(n, e.shape[1])
            out[b["idx"]] = e
    return out


def neighbours(emb: torch.Tensor, k: int = 10) -> torch.Tensor:
    """[N, k] indices of each row's k nearest other rows by cosine."""
    e = F.normalize(emb.double(), dim=1)
    sim = e @ e.t()
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def compare(ref: torch.Tensor, emb: torch.Tensor, k: int = 10, ref_neighbours: Optional[torch.Tensor] = None) -> dict:
    """Cosine to the reference embeddings (mean, min, 1st percentile) and top-k retrieval overlap."""
    cos = F.cosine_similarity(emb.double(), ref.double(), dim=1)
    a = ref_neighbours if ref_neighbours is not None else neighbours(ref, k)
    b = neighbours(emb, k)
    overlap = torch.tensor([len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(a, b)])
    return {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()), "p01_cos": float(cos.quantile(0.01)),
            "worst_sentence": int(cos.argmin()), f"top{k}_overlap": float(overlap.mean()),
            f"top{k}_overlap_min": float(overlap.min())}


def meets_targets(figures: dict) -> list[str]:
    """The targets ``figures`` misses (empty: all met)."""
    return [f"{key} {figures[key]:.4f} < {bound}" for key, bound in TARGETS.items() if figures[key] < bound]


def _sqbert_run(model_dir: str, backend: str, dtype, keep_fp32: Iterable[str] = ()) -> tuple[Run, str]:
    from .modeling import SqueezeBertModel

    model = SqueezeBertModel.from_pretrained(model_dir, backend=backend, dtype=dtype)
    keep = set(keep_fp32)
    if keep:  # accuracy study: those conv kinds back to their fp32 weights (reference backend only)
        fp32 = SqueezeBertModel.from_pretrained(model_dir, backend="reference")
        for i, (layer, flayer) in enumerate(zip(model.encoder.layers, fp32.encoder.layers)):
            for kind in keep:
                mod, fmod = layer.get_submodule(_CONV_MODULES[kind]), flayer.get_submodule(_CONV_MODULES[kind])
                mod.weight = torch.nn.Parameter(fmod.weight.detach().clone(), requires_grad=False)
                del mod._buffers["weight_scale"]
        model.set_backend("reference")

    def run(ids, mask):
        return model(input_ids=ids, attention_mask=mask).last_hidden_state

    return run, model.backend


def evaluate(model_dir: Optional[str] = None, n: int = 2000, backend: str = "reference",
             fp32_backend: Optional[str] = None, peers: Sequence[str] = (), per_conv: bool = False,
             calibration: int = 300, max_length: int = 128, texts: Optional[Sequence[str]] = None,
             log: Optional[Callable[[str], None]] = None) -> dict:
    """int8 against fp32 on ``n`` real sentences. ``backend``: ours in int8; ``fp32_backend`` (default: the same, or
    "cpu" when it runs fp32 here: only faster, the fp32 backends agree to 1e-4); ``peers``: int8 peers
    (``peers.prepare_int8``), each against our fp32, OpenVINO calibrated on the first ``calibration`` sentences;
    ``per_conv``: ours again with each conv kind (q, k, v, post, inter, out) left fp32 in every layer, to find the
    conv that costs most. Returns {"ours": figures, "peers": {name: figures}, "per_conv": {...}, ...}."""
    from . import backends
    from .corpus import real_sentences
    from .default_model import default_model_dir

    say = log or (lambda s: None)
    model_dir = model_dir or default_model_dir()
    texts = list(texts) if texts is not None else real_sentences(n)
    if fp32_backend is None:
        fp32_backend = "cpu" if not backends.reasons("cpu", torch.float32).get("cpu") else backend
    batches = tokenize(model_dir, texts, max_length)
    report: dict = {"model_dir": str(model_dir), "sentences": len(texts),
                    "tokens": int(sum(int(b["attention_mask"].sum()) for b in batches)), "targets": TARGETS}

    t0 = time.perf_counter()
    run, used = _sqbert_run(model_dir, fp32_backend, torch.float32)
    ref = embed(run, batches)
    ref_nb = neighbours(ref)
    report["fp32"] = {"backend": used, "s": round(time.perf_counter() - t0, 2)}
    say(f"fp32 ({used}): {report['fp32']['s']} s")

    t0 = time.perf_counter()
    run, used = _sqbert_run(model_dir, backend, torch.int8)
    ours = compare(ref, embed(run, batches), ref_neighbours=ref_nb)
    ours.update(backend=used, s=round(time.perf_counter() - t0, 2), misses=meets_targets(ours))
    report["ours"] = ours
    say(f"ours int8 ({used}): {_fmt(ours)}")

    report["peers"] = {}
    for name in peers:
        from .peers import Unavailable, prepare_int8

        t0 = time.perf_counter()
        try:
            p = prepare_int8(name, model_dir, calibration=texts[:calibration], max_length=max_length)
        except Unavailable as e:
            report["peers"][name] = {"unavailable": str(e)}
            say(f"{name} int8: unavailable: {e}")
            continue
        try:
            fig = compare(ref, embed(p.run, batches), ref_neighbours=ref_nb)
        finally:
            if p.close:
                p.close()
        fig.update(notes=p.notes, setup_s={k: round(v, 2) for k, v in p.setup_s.items()},
                   s=round(time.perf_counter() - t0, 2), misses=meets_targets(fig))
        report["peers"][name] = fig
        say(f"{name} int8: {_fmt(fig)}")
    got = [f for f in report["peers"].values() if "mean_cos" in f]
    if got:
        best = max(got, key=lambda f: (f["mean_cos"], f["top10_overlap"]))
        report["best_peer"] = {"mean_cos": best["mean_cos"], "min_cos": best["min_cos"],
                               "top10_overlap": best["top10_overlap"]}

    if per_conv:
        report["per_conv"] = {}
        for kind in CONV_KINDS:
            run, _ = _sqbert_run(model_dir, "reference", torch.int8, keep_fp32=[kind])
            fig = compare(ref, embed(run, batches), ref_neighbours=ref_nb)
            report["per_conv"][f"{kind} fp32"] = fig
            say(f"int8 with {kind} left fp32: {_fmt(fig)}")
    return report


def _fmt(f: dict) -> str:
    return (f"cos mean {f['mean_cos']:.5f} min {f['min_cos']:.5f} (p1 {f['p01_cos']:.5f}), "
            f"top-10 overlap {100 * f['top10_overlap']:.2f}%")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sqbert_fast.int8_eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="float SqueezeBERT checkpoint (default: the built-in all-MiniLM-L6-v2)")
    p.add_argument("--n", type=int, default=2000, help="sentences (default 2000)")
    p.add_argument("--backend", default="reference", help="our int8 backend (default reference)")
    p.add_argument("--peers", nargs="*", default=[], help="int8 peers: onnxruntime openvino")
    p.add_argument("--per-conv", action="store_true", help="also: each conv kind left fp32")
    p.add_argument("--json", help="write the report here")
    a = p.parse_args(argv)
    report = evaluate(a.model, a.n, a.backend, peers=a.peers, per_conv=a.per_conv, log=print)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 1 if report["ours"]["misses"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
