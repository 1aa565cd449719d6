"""int8 models on the cpu backend, every int8 variant this machine runs, against the reference backend's int8
(sqbert_fast/quantization.py).

Op level, on identical inputs, the activations quantize identically, so the integer products are equal and
only float rounding differs: the Q/K/V projection + attention and the post-attention conv + LayerNorm match
within 1e-5. In the FFN the second conv's input is the kernel's own GELU output, a few 1e-7 off the
reference's, which can move a value across a rounding boundary of its quantization: a step of one element,
a few 1e-3 at most after the LayerNorm spreads it over its row; the other rows stay within 1e-5. (Whole
models: tests/test_int8.py.)
"""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
import sqbert_fast as sqf  # noqa: E402
from hf_utils import CONFIGS as NAMED_CONFIGS  # noqa: E402
from hf_utils import hf_config, max_diff_real, padded_batch, save_hf  # noqa: E402

_C = pytest.importorskip("sqbert_fast._C")
from sqbert_fast.backends import encoder_weights  # noqa: E402
from sqbert_fast.backends import reference as ref  # noqa: E402
from sqbert_fast.backends.cpu import CpuRunner  # noqa: E402
from sqbert_fast.packing import pack  # noqa: E402

VARIANTS = list(_C.cpu_info()["usable_int8_isas"])
# d32: heads of 32 in whole groups, 3 sequences x 2 groups: the fused Q/K/V projection (i8_amx hands its
# 32 x 32 blocks to the epilogue that writes attention's bf16 operands, when attention runs in bf16)
CONFIGS = ["h128_d64_default_pattern", "h96_d32_unaligned", "h48_d16_bert_gelu_new", "d32"]


@pytest.fixture(scope="module", params=CONFIGS)
def case(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    cfg = hf_config(**NAMED_CONFIGS[request.param])
    hf = save_hf("SqueezeBertModel", cfg, path)
    model = sqf.SqueezeBertModel.from_pretrained(path, backend="reference", dtype=torch.int8)
    ids, mask = padded_batch(3, 45, cfg.vocab_size, "left", seed=2)
    return request.param, path, hf, model, ids, mask


def test_int8_model_holds_int8_weights(case):
    _, _, _, model, _, _ = case
    w = encoder_weights(model)
    assert w["layers.0.q_weight"].dtype == torch.int8 and w["layers.0.q_weight_scale"].dtype == torch.float32
    assert w["word_embeddings"].dtype == torch.float32


# QK^T and PV of int8 models run on the bf16 GEMM where the CPU has bf16 dot products (Q, K, V and the
# probabilities rounded to bf16, 8 significant bits: a few 1e-4 to 1e-3 on these contexts), else in fp32
BF16_ISAS = {"amx", "avx512_bf16"}
ATTN_TOL = {"fp32": 1e-5, "bf16": 4e-3}
ATTN_ISAS = [i for i in ("avx512", "avx2", "scalar") if i in _C.cpu_info()["usable_isas"]][:1] + \
    [i for i in ("amx", "avx512_bf16") if i in _C.cpu_info()["usable_isas"]][:1]


@pytest.mark.parametrize("isa", ATTN_ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_op_matches_the_reference_int8_op(case, variant, isa):
    _, _, _, model, ids, mask = case
    cfg = model.config
    enc = CpuRunner(model, isa=isa, int8_isa=variant).encoder
    assert enc.int8_isa == variant
    assert enc.attention_precision == ("bf16" if isa in BF16_ISAS else "fp32")
    p = pack(cfg, ids, mask)
    w = {k: v if v.dtype == torch.int8 else v.float() for k, v in encoder_weights(model).items()}
    x = ref.embed_ln(p, w, cfg.layer_norm_eps).contiguous()
    want_ctx, _ = ref.qkv_attention(x, p, w, 0, cfg, False)
    ctx = torch.empty_like(x)
    enc.qkv_attention(0, x.numpy(), p.cu_seqlens.numpy(), p.key_valid.numpy(), ctx.numpy())
    assert (ctx - want_ctx).abs().max() <= ATTN_TOL[enc.attention_precision]
    want_mid = ref.attn_out_ln(want_ctx, x, w, 0, cfg)
    mid = torch.empty_like(x)
    enc.attn_out_ln(0, want_ctx.contiguous().numpy(), x.numpy(), mid.numpy())
    assert (mid - want_mid).abs().max() <= 1e-5
    want_out = ref.ffn_ln(want_mid, w, 0, cfg)
    out = torch.empty_like(x)
    enc.ffn_ln(0, want_mid.contiguous().numpy(), out.numpy())
    diff = (out - want_out).abs()
    assert diff.max() <= 5e-3  # a quantization step or two, spread over its row by the LayerNorm
    assert (diff.amax(dim=1) <= 1e-5).float().mean() >= 0.9  # every other row: float rounding only


def test_forced_isa_caps_the_int8_variant(monkeypatch):
    monkeypatch.delenv("SQBERT_FAST_FORCE_INT8_ISA", raising=False)
    usable = _C.cpu_info()["usable_isas"]
    if "avx2" in usable:
        monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "avx2")
        assert _C.cpu_info()["int8_isa"] in ("i8_avx2", "i8_avx_vnni")
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "scalar")
    assert _C.cpu_info()["int8_isa"] == "i8_scalar"


def test_forcing_an_unusable_int8_variant_is_an_error(tmp_path, monkeypatch):
    cfg = hf_config(**NAMED_CONFIGS["h64_d16_mixed"])
    save_hf("SqueezeBertModel", cfg, tmp_path)
    missing = [v for v in ("i8_amx", "i8_avx512_vnni", "i8_avx_vnni", "i8_avx2", "i8_neon_dot", "i8_neon_i8mm")
               if v not in VARIANTS]
    monkeypatch.setenv("SQBERT_FAST_FORCE_INT8_ISA", missing[0] if missing else "i8_sse9")
    for backend in ("cpu", "auto"):
        with pytest.raises(RuntimeError, match="SQBERT_FAST_FORCE_INT8_ISA|unknown int8 ISA"):
            sqf.SqueezeBertModel.from_pretrained(tmp_path, backend=backend, dtype=torch.int8)


def test_a_conv_kept_in_fp32_runs_beside_int8_ones(case):
    """Accuracy may keep one conv in higher precision: the cpu backend takes any mix per conv."""
    _, path, _, model, ids, mask = case
    model = copy.deepcopy(model)  # the fixture's model is shared
    fp32 = sqf.SqueezeBertModel.from_pretrained(path, backend="reference")
    with torch.no_grad():  # layer 0's FFN output conv back to fp32 (weight and no scale)
        conv = model.encoder.layers[0].output.conv1d
        conv.weight = torch.nn.Parameter(fp32.encoder.layers[0].output.conv1d.weight.clone(), requires_grad=False)
        del conv.weight_scale
    want = model(ids, attention_mask=mask).last_hidden_state
    int8_error = max_diff_real(want, fp32(ids, attention_mask=mask).last_hidden_state, mask)
    p = pack(model.config, ids, mask)
    isa = ATTN_ISAS[0]  # fp32 attention, as the reference's: only the convs' precision differs
    for variant in VARIANTS:
        runner = CpuRunner(model, isa=isa, int8_isa=variant)
        got = p.unpack(runner.encode(p, False, False, False).last_hidden)
        assert max_diff_real(got, want, mask) <= 0.5 * int8_error, variant


@pytest.mark.parametrize("tokens", [1, 20, 32])
def test_a_short_sequence_ffn_splits_over_columns(tokens, tmp_path):
    """Up to 32 tokens in one FFN group are one task of the fused FFN; with two threads the FFN runs as two
    grouped GEMMs split over columns instead (ffn_split). Same results as the reference int8 op, and the
    same bits as the fused FFN on one thread."""
    cfg = hf_config(**NAMED_CONFIGS["h48_d16_bert_gelu_new"])  # every conv in one group
    save_hf("SqueezeBertModel", cfg, tmp_path)
    model = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="reference", dtype=torch.int8)
    ids, mask = padded_batch(1, tokens, cfg.vocab_size, "right", seed=3)
    p = pack(model.config, ids, mask)
    w = {k: v if v.dtype == torch.int8 else v.float() for k, v in encoder_weights(model).items()}
    x = ref.embed_ln(p, w, cfg.layer_norm_eps).contiguous()
    want = ref.ffn_ln(x, w, 0, model.config)
    before = sqf.get_num_threads()
    try:
        outs = {}
        for threads in (2, 1):
            sqf.set_num_threads(threads)
            for variant in VARIANTS:
                enc = CpuRunner(model, isa=ATTN_ISAS[0], int8_isa=variant).encoder
                out = torch.empty_like(x)
                enc.ffn_ln(0, x.numpy(), out.numpy())
                assert (out - want).abs().max() <= 5e-3, (threads, variant)  # a quantization step at most
                outs[threads, variant] = out
        for variant in VARIANTS:
            assert torch.equal(outs[2, variant], outs[1, variant]), variant
    finally:
        sqf.set_num_threads(before)
