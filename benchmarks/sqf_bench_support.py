"""Helpers shared by the benchmark files: prepared providers, reference outputs, tolerance, extra_info.

(Not named conftest: tests/ has its own conftest module, and both may be on sys.path in one run.)
"""

from __future__ import annotations

import pytest


class Providers:
    """Prepares each (provider, precision) once per session; transformers fp32 outputs are the truth."""

    def __init__(self, model_dir: str, threads: int):
        self.model_dir, self.threads = model_dir, threads
        self._prepared: dict = {}
        self._refs: dict = {}
        self._caps = None

    def get(self, provider: str, precision: str):
        from sqbert_fast import peers

        key = (provider, precision)
        if key not in self._prepared:
            why = peers.reasons(provider, precision)
            if not why:  # a precision this CPU would emulate (minutes per call at full size), as in sqbert-fast bench
                from sqbert_fast import bench

                if self._caps is None:
                    self._caps = bench.cpu_caps()
                why = [w for w in [bench.skip_reason(provider, precision, self._caps)] if w]
            if why:
                self._prepared[key] = peers.Unavailable("; ".join(why))
            else:
                try:
                    self._prepared[key] = peers.prepare(provider, self.model_dir, precision, threads=self.threads)
                except peers.Unavailable as e:
                    self._prepared[key] = e
        p = self._prepared[key]
        if isinstance(p, Exception):
            pytest.skip(f"{provider}:{precision} unavailable: {p}")
        return p

    def reference(self, shape, precision: str = "fp32"):
        """transformers' output at this precision (fp32 = the ground truth), computed once per shape."""
        key = (shape.name, precision)
        if key not in self._refs:
            ids, mask = self.inputs(shape)
            self._refs[key] = self.get("transformers", precision)(ids, mask).float()
        return self._refs[key]

    def inputs(self, shape):
        from sqbert_fast.config import SqueezeBertConfig

        vocab = SqueezeBertConfig.from_pretrained(self.model_dir).vocab_size
        return shape.inputs(vocab)

    def close(self):
        for p in self._prepared.values():
            if not isinstance(p, Exception) and p.close:
                p.close()


def max_abs_diff(out, ref, mask) -> float:
    return float((out.detach().float().cpu() - ref)[mask.bool()].abs().max())


def tolerance(providers, shape, precision: str, actual: str | None = None) -> float:
    """fp32: 1e-4 (DESIGN §5). bf16/fp16: 3x transformers' own error in that precision (floor 1e-3). int8: the
    benchmark's garbage gate (bench.TOL; int8 accuracy is held on real text by tests/test_int8_accuracy.py)."""
    prec = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(actual or "", precision)
    if prec == "fp32" or prec == "default":
        return 1e-4
    if prec == "int8":
        from sqbert_fast.bench import TOL

        return TOL["int8"]
    ids, mask = providers.inputs(shape)
    own = max_abs_diff(providers.reference(shape, prec), providers.reference(shape, "fp32"), mask)
    return max(3.0 * own, 1e-3)


def record(benchmark, provider, precision, shape, prepared, threads, diff, tol, first_call_s, cfg) -> None:
    """What a result needs to be read later: ISA, threads, dtype, GPU, setup costs, FLOPs, error."""
    import torch

    from sqbert_fast import bench
    from sqbert_fast.peers import cpu_isas

    try:
        from sqbert_fast import _C

        isa = _C.default_isa()
    except Exception:  # noqa: BLE001 - not built / forced ISA unavailable
        isa = None
    benchmark.extra_info.update({
        "provider": provider, "precision": precision, "dtype": precision, "shape": shape.name,
        "batch": shape.batch, "seq": shape.seq, "tokens": sum(shape.seqlens()), "threads": threads,
        "isa": isa, "usable_isas": cpu_isas(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "setup_s": prepared.setup_s, "notes": prepared.notes, "first_call_s": first_call_s,
        "gflop": bench.encoder_flops(cfg, shape.seqlens()) / 1e9, "max_abs_diff": diff, "tol": tol,
    })
