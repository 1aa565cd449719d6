"""The triton backend: each kernel against the reference op, and the whole model against transformers.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set by
conftest.py before triton is imported), so shapes are tiny. Triton itself is required: CI installs
triton==3.8.0, and a missing triton fails here rather than skipping. Tolerances: fp32 1e-4 against
transformers (kernels 1e-5 against the reference op); fp16/bf16 at most 2x the error of the reference
itself run in that precision, both measured against fp32. GPU tests (`TRITON_INTERPRET=0 pytest -m
gpu`) add the H100 parity bounds and the CUDA-graph path.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402,F401  (must import: CI pins triton==3.8.0)

import sqbert_fast as sqf  # noqa: E402
from hf_utils import SMALL_CONFIGS, hf_config, max_diff_real, max_diff_scores, mixed_batch, randomize_, save_default_config, save_hf  # noqa: E402
from sqbert_fast.backends import reference as ref  # noqa: E402
from sqbert_fast.backends import triton as tb  # noqa: E402
from sqbert_fast.backends.base import encoder_weights  # noqa: E402
from sqbert_fast.config import SqueezeBertConfig  # noqa: E402
from sqbert_fast.packing import pack  # noqa: E402
from sqbert_fast._triton import common  # noqa: E402
from sqbert_fast._triton.attn_out_ln import attn_out_ln  # noqa: E402
from sqbert_fast._triton.embed_ln import embed_ln  # noqa: E402
from sqbert_fast._triton.ffn_ln import ffn_ln, split_plan  # noqa: E402
from sqbert_fast._triton.qkv_attention import qkv_attention  # noqa: E402

interpreter = pytest.mark.skipif(not common.INTERPRET, reason="CPU tensors need TRITON_INTERPRET=1 (this is a GPU run)")

CONFIGS = dict(SMALL_CONFIGS)
# head_dim 48 (not a power of two), every Q/K/V head straddling two or more groups
CONFIGS["h96_d48_straddle"] = dict(hidden_size=96, num_attention_heads=2, intermediate_size=192, q_groups=4, k_groups=3,
                                   v_groups=6, post_attention_groups=4, intermediate_groups=3, output_groups=1,
                                   hidden_act="relu")
LOW = (torch.float16, torch.bfloat16)
LENGTHS = (1, 7, 33)  # odd lengths; 33 spans three interpreter query/key blocks of 16


def _mask(pattern: str, seq: int = max(LENGTHS)) -> torch.Tensor:
    mask = torch.zeros(len(LENGTHS), seq, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        if pattern == "right":
            mask[i, :n] = 1
        else:  # left: column 0 is padding, packed as a query-only row for the pooler
            mask[i, seq - n:] = 1
    return mask


def _our_model(name: str, dtype=torch.float32, seed: int = 0):
    cfg = SqueezeBertConfig(**CONFIGS[name], embedding_size=CONFIGS[name]["hidden_size"], vocab_size=53,
                            num_hidden_layers=1, max_position_embeddings=64, type_vocab_size=3)
    return randomize_(sqf.SqueezeBertModel(cfg, backend="reference"), seed).to(dtype)


def _packed(model, pattern="left", seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    mask = _mask(pattern)
    ids = torch.randint(1, cfg.vocab_size, mask.shape, generator=g)
    types = torch.randint(0, cfg.type_vocab_size, mask.shape, generator=g)
    return pack(cfg, ids, mask, types)


def _close(out, ours_ref, ref32, dtype, what):
    """fp32: out within 1e-5 of the reference op; fp16/bf16: error vs fp32 at most 2x the reference's."""
    if dtype == torch.float32:
        err = (out - ref32).abs().max().item()
        assert err <= 1e-5, f"{what}: {err}"
        return
    err = (out.float() - ref32).abs().max().item()
    base = (ours_ref.float() - ref32).abs().max().item()
    assert err <= 2 * base, f"{what} {dtype}: error {err} > 2x reference's own {base}"


# ---- packing of grouped weights (plain torch, no interpreter) ------------------------------------
@pytest.mark.parametrize("cout,cin,groups,cw", [(64, 64, 4, 16), (96, 96, 3, 32), (96, 96, 4, 48), (40, 40, 5, 16),
                                                (128, 64, 2, 64), (48, 96, 1, 16)])
def test_pack_grouped_is_the_grouped_conv(cout, cin, groups, cw):
    g = torch.Generator().manual_seed(cout + groups)
    w = torch.randn(cout, cin // groups, 1, generator=g)
    b = torch.randn(cout, generator=g)
    x = torch.randn(5, cin, generator=g)
    gw = common.pack_grouped(w, b, groups, cw)
    assert gw.k_pad % common.K_ALIGN == 0 and gw.block_n >= gw.cw
    xp = torch.nn.functional.pad(x, (0, gw.k_pad))
    y = torch.cat([xp[:, lo: lo + gw.k_pad] @ gw.w[c, :, : gw.cw] for c, lo in enumerate(gw.lo.tolist())], 1)[:, :cout]
    torch.testing.assert_close(y + b, ref.grouped_linear(x, w, b, groups), rtol=1e-5, atol=1e-5)


# ---- kernels against the reference ops ------------------------------------------------------------
def _kernel_case(name, dtype, pattern="left"):
    """(model in dtype, its fp32 twin, packed inputs, triton runner) with identical weights."""
    m32 = _our_model(name)
    m = _our_model(name, dtype)
    p = _packed(m32, pattern)
    return m, m32, p, tb.TritonRunner(m)


def _x(p, m, seed=1):
    x = torch.randn(p.tokens, m.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    return x.to(m.embeddings.word_embeddings.weight.dtype), x


@interpreter
@pytest.mark.parametrize("dtype", (torch.float32,) + LOW)
@pytest.mark.parametrize("use_embeds", [False, True])
def test_embed_ln_kernel(dtype, use_embeds):
    m, m32, p, runner = _kernel_case("h48_d16_bert_gelu_new", dtype)
    if use_embeds:
        p.inputs_embeds = m32.embeddings.word_embeddings.weight[p.input_ids] * 0.5
        p.input_ids = None
    w, w32 = encoder_weights(m), encoder_weights(m32)
    eps = m.config.layer_norm_eps
    want32 = ref.embed_ln(p, w32, eps)
    if use_embeds:
        p.inputs_embeds = p.inputs_embeds.to(dtype)
    want = ref.embed_ln(p, w, eps)
    out = embed_ln(p.input_ids, p.inputs_embeds, p.position_ids, p.token_type_ids, *runner.embeddings)
    _close(out, want, want32, dtype, "embed_ln")


@interpreter
@pytest.mark.parametrize("dtype", (torch.float32,) + LOW)
@pytest.mark.parametrize("name", ["h64_d16_mixed", "h96_d32_unaligned", "h128_d64_default_pattern", "h96_d48_straddle"])
def test_qkv_attention_kernel(name, dtype):
    m, m32, p, runner = _kernel_case(name, dtype)
    x, x32 = _x(p, m)
    cfg = m.config
    want, want_s = ref.qkv_attention(x, p, encoder_weights(m), 0, cfg, True)
    want32, want32_s = ref.qkv_attention(x.float(), p, encoder_weights(m32), 0, cfg, True)
    layer = runner.layers[0]
    offs, total = p.score_offsets(cfg.num_attention_heads)
    soff = torch.tensor(offs, dtype=torch.int64)
    scores = torch.empty(total, dtype=dtype)
    ctx = qkv_attention(x, p.cu_seqlens, p.key_valid, max(p.seqlens), layer.q, layer.k, layer.v,
                        cfg.num_attention_heads, scores=scores, soff=soff)
    _close(ctx, want, want32, dtype, "context")
    masked = want_s == torch.finfo(dtype).min  # keys of query-only rows: transformers' lowest value, exactly
    assert masked.any() and torch.equal(scores[masked], want_s[masked])
    _close(scores[~masked], want_s[~masked], want32_s[~masked], dtype, "scores")


@interpreter
@pytest.mark.parametrize("dtype", (torch.float32,) + LOW)
@pytest.mark.parametrize("fuse", [True, False], ids=["rows-owned", "split+ln"])
@pytest.mark.parametrize("name", ["h96_d32_unaligned", "h128_d64_default_pattern"])
def test_attn_out_ln_kernel(name, fuse, dtype):
    m, m32, p, runner = _kernel_case(name, dtype)
    ctx, ctx32 = _x(p, m, 2)
    res, res32 = _x(p, m, 3)
    want = ref.attn_out_ln(ctx, res, encoder_weights(m), 0, m.config)
    want32 = ref.attn_out_ln(ctx.float(), res.float(), encoder_weights(m32), 0, m.config)
    layer = runner.layers[0]
    out = attn_out_ln(ctx, res, layer.post, *layer.post_ln, fuse=fuse)
    _close(out, want, want32, dtype, "attn_out_ln")


@interpreter
@pytest.mark.parametrize("dtype", (torch.float32,) + LOW)
@pytest.mark.parametrize("name,on_chip,fuse,split", [
    pytest.param(name, on_chip, fuse, split, id=f"{name}-{path}")
    for name, on_chip in [("h128_d64_default_pattern", True), ("h48_d16_bert_gelu_new", True),
                          ("h64_d16_mixed", False), ("h96_d48_straddle", False)]
    for fuse, split, path in [(True, None, "rows-owned"), (False, None, "split+ln"), (False, 2, "split-k+ln")]
    if on_chip or not split])  # split-k is a path of the on-chip kernel only
def test_ffn_ln_kernel(name, on_chip, fuse, split, dtype):
    m, m32, p, runner = _kernel_case(name, dtype)
    x, x32 = _x(p, m, 4)
    want = ref.ffn_ln(x, encoder_weights(m), 0, m.config)
    want32 = ref.ffn_ln(x.float(), encoder_weights(m32), 0, m.config)
    layer = runner.layers[0]
    assert layer.ffn_fused == on_chip
    if split:  # 2 programs per row block and group share the group's intermediate slices (h48: 3, as 2 + 1)
        n_split, per = split_plan(p.tokens, layer.inter, layer.out.chunks, False, split=split)
        assert n_split == 2 and per < layer.inter.chunks // layer.out.chunks <= 2 * per
    out = ffn_ln(x, layer.inter, layer.out, runner.act, *layer.out_ln, layer.ffn_fused, fuse=fuse, split=split,
                 workspace=None if on_chip else torch.empty(p.tokens, m.config.intermediate_size, dtype=dtype))
    _close(out, want, want32, dtype, "ffn_ln")


# ---- the whole model against transformers --------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (directory of a random-weight transformers checkpoint, the transformers model)."""
    out = {}
    for name, kw in CONFIGS.items():
        path = tmp_path_factory.mktemp(name)
        out[name] = (path, save_hf("SqueezeBertModel", hf_config(**kw, max_position_embeddings=64), path))
    return out


def _run_both(path, hf, pattern, dtype=torch.float32, backend="triton"):
    mask = _mask(pattern)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, hf.config.vocab_size, mask.shape, generator=g).masked_fill(mask == 0, 0)
    types = torch.randint(0, hf.config.type_vocab_size, mask.shape, generator=g)
    kw = dict(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
              output_attentions=dtype == torch.float32)
    ours = sqf.SqueezeBertModel.from_pretrained(path, backend=backend, dtype=dtype)
    with torch.no_grad():
        return ours(**kw), hf(**kw), mask


# left padding (query-only pooler rows) for every config; right padding for one config per head size
FP32_CASES = [(name, "left") for name in CONFIGS] + [(name, "right") for name in
                                                     ("h64_d16_mixed", "h96_d32_unaligned", "h128_d64_default_pattern")]


@interpreter
@pytest.mark.parametrize("name,pattern", FP32_CASES)
def test_model_matches_transformers_fp32(checkpoints, name, pattern):
    ours, theirs, mask = _run_both(*checkpoints[name], pattern)
    assert max_diff_real(ours.last_hidden_state, theirs.last_hidden_state, mask) <= 1e-4
    assert (ours.pooler_output - theirs.pooler_output).abs().max().item() <= 1e-4
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        assert max_diff_real(a, b, mask) <= 1e-4, f"hidden_states[{i}]"
    for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions, strict=True)):
        assert max_diff_scores(a, b, mask) <= 1e-4, f"attentions[{i}]"


@interpreter
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ["h128_d64_default_pattern", "h96_d32_unaligned"])
def test_model_low_precision_within_2x_of_pytorch(checkpoints, name, dtype):
    path, hf = checkpoints[name]
    ours, theirs, mask = _run_both(path, hf, "left", dtype)
    pytorch_own, _, _ = _run_both(path, hf, "left", dtype, backend="reference")
    for field in ("last_hidden_state", "pooler_output"):
        a, b, r = (getattr(o, field).float() for o in (ours, theirs, pytorch_own))
        m = mask if field == "last_hidden_state" else torch.ones(a.shape[0], dtype=torch.bool)
        err, base = max_diff_real(a, b, m), max_diff_real(r, b, m)
        assert err <= 2 * base, f"{field}: {err} > 2x {base}"


# ---- backend glue ---------------------------------------------------------------------------------
@interpreter
def test_reasons_under_the_interpreter():
    assert tb.BACKEND.reasons(torch.device("cpu"), torch.float16) == []
    assert "triton" in sqf.available_backends("cpu", torch.bfloat16)
    assert any("TRITON_INTERPRET" in r for r in tb.BACKEND.reasons(torch.device("cuda"), torch.float16))
    assert any("float64" in r for r in tb.BACKEND.reasons(torch.device("cpu"), torch.float64))


def test_explicit_triton_on_cpu_without_interpreter_says_why(monkeypatch):
    monkeypatch.setattr(common, "INTERPRET", False)
    why = tb.BACKEND.reasons(torch.device("cpu"), torch.float32)
    assert why and "CUDA" in why[0]
    with pytest.raises(RuntimeError, match="triton.*CUDA"):
        _our_model("h64_d16_mixed").set_backend("triton")


@interpreter
def test_workspace_is_reused_and_outputs_are_not():
    m = _our_model("h64_d16_mixed")
    runner = tb.TritonRunner(m)
    big = runner.encode(_packed(m, "left"), False, False, True)  # 43 rows (2 query-only)
    first = big.last_hidden.clone()
    ws = {k: v.data_ptr() for k, v in runner._workspace.items()}
    small = _packed(m, "right", seed=3)  # 41 rows
    small_out = runner.encode(small, False, False, False)
    assert {k: v.data_ptr() for k, v in runner._workspace.items()} == ws  # smaller batch: no reallocation
    assert torch.equal(big.last_hidden, first)  # an earlier result is never overwritten
    torch.testing.assert_close(small_out.last_hidden, ref.ReferenceRunner(m).encode(small, False, False, False).last_hidden,
                               rtol=0, atol=1e-5)


# ---- GPU code generation, without a GPU ------------------------------------------------------------
def compile_for_sm90(dtype: str) -> list:
    """Compiles the first GPU config of every kernel specialisation (sqbert_fast._triton.compile_gpu) to an
    sm_90 cubin (triton's bundled ptxas; no device needed). The interpreter runs the kernels' Python
    semantics only; this catches what only code generation sees (layouts, shared memory, constexpr
    misuse). Run with TRITON_INTERPRET=0."""
    from sqbert_fast._triton import compile_gpu

    done = []
    for case in compile_gpu.cases():
        compiled = compile_gpu.compile_case(case, case.configs[0], dtype, 90)
        assert compiled.asm["cubin"], case.label
        done.append(compiled.metadata.name)
    return done


def test_kernels_compile_for_sm90():
    code = ("import test_triton as t; print(t.compile_for_sm90('fp16') + t.compile_for_sm90('fp32'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(__file__), capture_output=True, text=True,
                       env=dict(os.environ, TRITON_INTERPRET="0"), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("_kernel") == 20


# ---- GPU ------------------------------------------------------------------------------------------
def _gpu_skip():
    if common.INTERPRET:
        return "TRITON_INTERPRET=1: run `TRITON_INTERPRET=0 pytest -m gpu` for the GPU tests"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


needs_gpu = pytest.mark.skipif(_gpu_skip() is not None, reason=_gpu_skip() or "")


@pytest.mark.gpu
@needs_gpu
def test_gpu_cuda_graph_replays_match_eager(tmp_path):
    save_default_config(tmp_path)
    ours = sqf.SqueezeBertModel.from_pretrained(tmp_path, dtype=torch.float16).cuda().set_backend("triton")
    ids, mask = mixed_batch(batch=2, seq=64, device="cuda")
    outs = [ours(ids, attention_mask=mask).last_hidden_state for _ in range(3)]  # eager, capture, replay
    assert len(ours._get_runner()._graphs) == 1
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=2e-3)
    assert torch.equal(outs[1], outs[2]) and outs[1].data_ptr() != outs[2].data_ptr()
    ids2, mask2 = mixed_batch(batch=2, seq=64, seed=1, device="cuda")
    other = ours(ids2, attention_mask=mask2).last_hidden_state
    assert not torch.equal(other, outs[2])

