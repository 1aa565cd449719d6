"""Shared body of the per-op benchmarks (bench_embed_ln.py, bench_qkv_attention.py, bench_attn_out_ln.py,
bench_ffn_ln.py): one fused op of layer 0, the reference (PyTorch) op against the cpu backend's kernel
(each ISA variant this machine has), on packed rows of the benchmark model; the result is checked against
the reference op after timing."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from sqbert_fast import SqueezeBertModel
from sqbert_fast.backends import encoder_weights
from sqbert_fast.backends import reference as ref
from sqbert_fast.backends.cpu import CpuRunner
from sqbert_fast.packing import pack
from sqbert_fast.peers import cpu_isas

OPS = ("embed_ln", "qkv_attention", "attn_out_ln", "ffn_ln")
TOL = 1e-4  # fp32, same contract as the whole model


def op_providers(smoke: bool) -> list[str]:
    return ["reference", "cpu"] + ([] if smoke else [f"cpu-{i}" for i in cpu_isas()])


@functools.lru_cache(maxsize=None)
def _model(model_dir: str):
    m = SqueezeBertModel.from_pretrained(model_dir, backend="reference")
    return m, encoder_weights(m)


def _case(model_dir: str, shape):
    return _case_for(model_dir, shape.seq, tuple(shape.seqlens()))


@functools.lru_cache(maxsize=8)
def _case_for(model_dir: str, seq: int, lens: tuple):
    """Packed inputs of every op of layer 0 (each op's input is the previous op's reference output)."""
    m, w = _model(model_dir)
    cfg = m.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, cfg.vocab_size, (len(lens), seq), generator=g)
    mask = (torch.arange(seq)[None, :] < torch.tensor(lens)[:, None]).long()
    p = pack(cfg, ids, mask)
    x = ref.embed_ln(p, w, cfg.layer_norm_eps)
    ctx, _ = ref.qkv_attention(x, p, w, 0, cfg, False)
    mid = ref.attn_out_ln(ctx, x, w, 0, cfg)
    out = ref.ffn_ln(mid, w, 0, cfg)
    return p, {"embed_ln": x, "qkv_attention": ctx, "attn_out_ln": mid, "ffn_ln": out,
               "x": x, "ctx": ctx, "mid": mid}


def _call(op: str, provider: str, model_dir: str, shape):
    m, w = _model(model_dir)
    cfg = m.config
    p, t = _case(model_dir, shape)
    if provider == "reference":
        fns = {
            "embed_ln": lambda: ref.embed_ln(p, w, cfg.layer_norm_eps),
            "qkv_attention": lambda: ref.qkv_attention(t["x"], p, w, 0, cfg, False)[0],
            "attn_out_ln": lambda: ref.attn_out_ln(t["ctx"], t["x"], w, 0, cfg),
            "ffn_ln": lambda: ref.ffn_ln(t["mid"], w, 0, cfg),
        }
        return fns[op]
    isa = provider.split("-", 1)[1] if "-" in provider else None
    enc = CpuRunner(m, isa=isa).encoder
    out = np.empty((p.tokens, cfg.hidden_size), dtype=np.float32)
    x, ctx, mid = (t[k].numpy() for k in ("x", "ctx", "mid"))
    cu, kv = p.cu_seqlens.numpy(), p.key_valid.numpy()
    ids, types, pos = p.input_ids.numpy(), p.token_type_ids.numpy(), p.position_ids.numpy()
    fns = {
        "embed_ln": lambda: enc.embed_ln(ids, None, types, pos, out),
        "qkv_attention": lambda: enc.qkv_attention(0, x, cu, kv, out),
        "attn_out_ln": lambda: enc.attn_out_ln(0, ctx, x, out),
        "ffn_ln": lambda: enc.ffn_ln(0, mid, out),
    }
    fn = fns[op]

    def run():
        fn()
        return torch.from_numpy(out)

    return run


def run_op_benchmark(benchmark, op: str, provider: str, shape, model_dir: str, threads: int, smoke: bool):
    if provider.startswith("cpu-") and provider[4:] not in cpu_isas():
        pytest.skip(f"{provider}: this CPU or build lacks the ISA")
    fn = _call(op, provider, model_dir, shape)
    if smoke:
        out = benchmark.pedantic(fn, rounds=1, iterations=1)
    else:
        out = benchmark.pedantic(fn, rounds=20, iterations=1, warmup_rounds=2)
    p, t = _case(model_dir, shape)
    diff = float((out - t[op]).abs().max())
    benchmark.extra_info.update(op=op, provider=provider, shape=shape.name, tokens=p.tokens, threads=threads,
                                dtype="fp32", max_abs_diff=diff)
    assert diff <= TOL, f"{op} {provider} {shape.name}: max|diff| {diff:.2e} vs the reference op > {TOL}"
