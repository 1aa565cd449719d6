"""Each fused op of the cpu backend on its own (the `_C.Encoder` per-op entry points), for every ISA
variant this machine runs, against the reference op of the same name (backends/reference.py), on packed
rows with left padding (query-only pooler rows), groups aligned and not aligned with heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sqbert_fast as sqf
from hf_utils import SMALL_CONFIGS, hf_config, padded_batch, save_hf
from sqbert_fast import _C
from sqbert_fast.backends import encoder_weights
from sqbert_fast.backends import reference as ref
from sqbert_fast.backends.cpu import CpuRunner
from sqbert_fast.packing import pack

ISAS = list(_C.cpu_info()["usable_isas"])
TOL = 1e-4


@pytest.fixture(scope="module", params=["h96_d32_unaligned", "h128_d64_default_pattern", "h48_d16_bert_gelu_new"])
def case(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    save_hf("SqueezeBertModel", hf_config(**SMALL_CONFIGS[request.param]), path, seed=5)
    model = sqf.SqueezeBertModel.from_pretrained(path, backend="reference")
    cfg, w = model.config, encoder_weights(model)
    ids, mask = padded_batch(3, 37, cfg.vocab_size, "left", seed=5)
    p = pack(cfg, ids, mask, token_type_ids=torch.randint(0, cfg.type_vocab_size, ids.shape))
    assert int((p.key_valid == 0).sum()) > 0  # query-only pooler rows are exercised
    layer = cfg.num_hidden_layers - 1
    x = ref.embed_ln(p, w, cfg.layer_norm_eps)
    ctx, _ = ref.qkv_attention(x, p, w, layer, cfg, False)
    mid = ref.attn_out_ln(ctx, x, w, layer, cfg)
    out = ref.ffn_ln(mid, w, layer, cfg)
    return model, p, layer, dict(x=x, ctx=ctx, mid=mid, out=out)


@pytest.mark.parametrize("isa", ISAS)
def test_each_op_matches_the_reference_op(case, isa):
    model, p, layer, t = case
    enc = CpuRunner(model, isa=isa).encoder
    H = model.config.hidden_size
    out = np.empty((p.tokens, H), dtype=np.float32)

    def check(name, want):
        d = float(np.abs(out - want.numpy()).max())
        assert d <= TOL, f"{name} on {isa}: max|diff| {d:.2e}"

    enc.embed_ln(p.input_ids.numpy(), None, p.token_type_ids.numpy(), p.position_ids.numpy(), out)
    check("embed_ln", t["x"])
    enc.qkv_attention(layer, t["x"].numpy(), p.cu_seqlens.numpy(), p.key_valid.numpy(), out)
    check("qkv_attention", t["ctx"])
    enc.attn_out_ln(layer, t["ctx"].numpy(), t["x"].numpy(), out)
    check("attn_out_ln", t["mid"])
    enc.ffn_ln(layer, t["mid"].numpy(), out)
    check("ffn_ln", t["out"])


def test_op_entry_points_check_their_arguments(case):
    model, p, layer, t = case
    enc = CpuRunner(model).encoder
    H = model.config.hidden_size
    out = np.empty((p.tokens, H), dtype=np.float32)
    with pytest.raises(IndexError, match="layer 99 outside"):
        enc.ffn_ln(99, t["mid"].numpy(), out)
    with pytest.raises(ValueError, match=r"out has shape"):
        enc.ffn_ln(layer, t["mid"].numpy(), out[:-1])
    # no valid key at all (packing.py refuses it; a direct caller may pass it): a zero context, not NaN
    enc.qkv_attention(layer, t["x"].numpy(), p.cu_seqlens.numpy(), np.zeros(p.tokens, np.uint8), out)
    assert (out == 0).all()
    with pytest.raises(TypeError, match="x must have dtype float32"):
        enc.qkv_attention(layer, t["x"].double().numpy(), p.cu_seqlens.numpy(), p.key_valid.numpy(), out)
