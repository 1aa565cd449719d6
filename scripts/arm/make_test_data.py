"""Writes tests/arm/data/*.npz: tiny SqueezeBERT cases whose expected outputs come from the reference
backend (pure PyTorch) on this x86 machine, for tests/arm/test_neon_qemu.py, which runs the aarch64
build under qemu where torch cannot run.

Each file holds one case (few entries: npz spends ~250 bytes on each):
  cfg          JSON of the config entries _C.Encoder reads
  w.names      weight names (backends.base.encoder_weights), w.shapes their shapes as "AxBxC",
  w.data       all weights concatenated, int8 multiples of 2^-6 (the test divides by 64; every
               weight is exactly such a multiple, so this is lossless)
  in.<name>   packed inputs: input_ids, token_type_ids, position_ids, cu_seqlens, key_valid, pool_rows
  out.<name>  expected last_hidden [T, H] and pooled [B, H] (reference backend)
Weights are drawn on the 2^-6 grid so the files stay a few KB; the expected outputs are computed
from exactly those weights. The reference is checked against transformers here (<= 1e-5).

usage: python scripts/arm/make_test_data.py [--out tests/arm/data]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch

import sqbert_fast as sqf
from sqbert_fast.backends.base import encoder_weights
from sqbert_fast.backends.reference import ReferenceRunner
from sqbert_fast.packing import pack

CFG_KEYS = ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
            "max_position_embeddings", "type_vocab_size", "q_groups", "k_groups", "v_groups",
            "post_attention_groups", "intermediate_groups", "output_groups", "layer_norm_eps", "hidden_act")
COMMON = dict(vocab_size=24, num_hidden_layers=2, max_position_embeddings=20, type_vocab_size=2)
CASES = {
    # groups of 6 = 1 head of 6: fused Q/K/V + attention; 18 channels leave a 2-lane tail everywhere
    "tails": dict(hidden_size=18, num_attention_heads=3, intermediate_size=54, q_groups=3, k_groups=3,
                  v_groups=3, post_attention_groups=3, intermediate_groups=3, output_groups=3),
    # groups of 9 channels vs heads of 6: the general attention path; FFN 2 groups -> 1 group
    "unaligned": dict(hidden_size=18, num_attention_heads=3, intermediate_size=36, q_groups=2, k_groups=2,
                      v_groups=1, post_attention_groups=2, intermediate_groups=2, output_groups=1),
}
LENGTHS = (17, 9, 5, 1)  # one batch, right-padded to 17: vector widths 4 and GEMM tile 8 +- 1


def make_case(name: str, seed: int = 0) -> dict:
    kw = dict(COMMON, **CASES[name])
    kw["embedding_size"] = kw["hidden_size"]
    torch.manual_seed(seed)
    model = sqf.SqueezeBertModel(sqf.SqueezeBertConfig(**kw), backend="reference").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            v = (1.0 if "LayerNorm.weight" in n or "layernorm.weight" in n else 0.0) + 0.15 * torch.randn(
                p.shape, generator=g)
            p.copy_(torch.clamp(torch.round(v * 64), -127, 127) / 64)
    S = max(LENGTHS)
    ids = torch.randint(1, kw["vocab_size"], (len(LENGTHS), S), generator=g)
    mask = (torch.arange(S)[None] < torch.tensor(LENGTHS)[:, None]).long()
    types = (torch.arange(S)[None] >= torch.tensor(LENGTHS)[:, None] // 2).long() * mask
    p = pack(model.config, ids, mask, token_type_ids=types)
    with torch.no_grad():
        enc = ReferenceRunner(model).encode(p, False, False, True)
    _check_against_transformers(kw, model, ids, mask, types, p, enc)
    cfg = model.config
    w = encoder_weights(model)
    out = {"cfg": np.asarray(json.dumps({k: getattr(cfg, k) for k in CFG_KEYS})),
           "w.names": np.asarray(list(w)),
           "w.shapes": np.asarray(["x".join(map(str, v.shape)) for v in w.values()]),
           "w.data": torch.cat([(v * 64).round().to(torch.int8).flatten() for v in w.values()]).numpy()}
    for k in ("input_ids", "token_type_ids", "position_ids", "cu_seqlens", "key_valid", "pool_rows"):
        out[f"in.{k}"] = getattr(p, k).contiguous().numpy()
    out["out.last_hidden"] = enc.last_hidden.numpy()
    out["out.pooled"] = enc.pooled.numpy()
    return out


def _check_against_transformers(kw, model, ids, mask, types, p, enc):
    try:
        import transformers
    except ImportError:
        return
    hf = transformers.SqueezeBertModel(transformers.SqueezeBertConfig(**kw)).eval()
    hf.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
    err = ((p.unpack(enc.last_hidden) - want.last_hidden_state).abs() * mask[..., None]).max().item()
    assert err <= 1e-5, f"reference vs transformers: {err:.2e}"
    assert (enc.pooled - want.pooler_output).abs().max().item() <= 1e-5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[2] / "tests/arm/data"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        path = out / f"{name}.npz"
        np.savez_compressed(path, **make_case(name))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
