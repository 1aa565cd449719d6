"""The NEON kernels (csrc/cpu/simd_neon.h), run in the normal suite.

On x86 the neon variant is the same source compiled through SIMDe (``pip install simde-py``, part of
the ``test`` extra); on aarch64 it is native. Either way it must be built: a build without it fails
here with the fix, never skips. The whole encoder runs against the portable scalar kernels and
transformers fp32 (<= 1e-4) at lengths around the 4-lane vector width and the 8-row GEMM tile, on
configs whose groups hold whole heads (fused Q/K/V + attention), whose channel counts leave vector
tails everywhere, and whose groups do not align with heads (general path). The neon_fp16 variant
(fp16 weights and FMAs, fp32 flushes, LayerNorm/softmax in fp32) must stay within 3x of the error of
transformers itself run in float16.
"""

from __future__ import annotations

import copy
import platform

import pytest
import torch

transformers = pytest.importorskip("transformers")
import sqbert_fast as sqf  # noqa: E402
from sqbert_fast.packing import pack  # noqa: E402

from hf_utils import hf_config, configs, make_hf, max_diff_real, padded_batch  # noqa: E402

_C = pytest.importorskip("sqbert_fast._C")
from sqbert_fast.backends.cpu import CpuRunner  # noqa: E402

INFO = _C.cpu_info()
NOT_BUILT = ("the neon ISA variant is not built into sqbert_fast._C. On x86 it needs SIMDe 0.8.x: "
             "`pip install simde-py` (in the `test` extra), then rebuild with "
             "`pip install --no-build-isolation -e .`; on aarch64 it is always built.")
LENGTHS = (1, 3, 4, 5, 7, 8, 9, 17, 64, 65)
CONFIGS = configs("aligned", "tails", "unaligned_h30")


def _need_neon(isa: str = "neon"):
    if isa not in INFO["built_isas"]:
        pytest.fail(NOT_BUILT.replace("the neon ISA", f"the {isa} ISA"))


def _models(name: str, layers: int = 2, seed: int = 0):
    cfg = hf_config(**CONFIGS[name], num_hidden_layers=layers, max_position_embeddings=80)
    hf = make_hf("SqueezeBertModel", cfg, seed)
    model = sqf.SqueezeBertModel(sqf.SqueezeBertConfig(**cfg.to_dict()), backend="cpu")
    model.load_state_dict(hf.state_dict())
    return hf, model.eval()


def _encode(runner, model, ids, mask):
    p = pack(model.config, ids, mask)
    return p.unpack(runner.encode(p, False, False, False).last_hidden)


def test_neon_variant_is_built_and_usable():
    _need_neon()
    assert "neon" in INFO["usable_isas"], "neon is built but cpu_features reports it unusable"
    assert INFO.get("neon_impl") in ("simde", "native")
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert INFO["neon_impl"] == "simde"


def test_simde_neon_is_never_the_automatic_choice(monkeypatch):
    _need_neon()
    monkeypatch.delenv("SQBERT_FAST_FORCE_CPU_ISA", raising=False)
    if INFO["neon_impl"] == "simde":
        assert INFO["best_isa"] != "neon" and _C.default_isa() != "neon"
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "neon")
    assert _C.default_isa() == "neon"


def test_neon_int8_variants_are_built_and_preferred_in_order(monkeypatch):
    """i8_neon_dot (sdot) and i8_neon_i8mm (smmla) are built beside neon (tests/test_gemm_i8.py runs them bit
    for bit against the reference); with a NEON ISA the int8 choice is i8mm ahead of dotprod."""
    _need_neon()
    for v in ("i8_neon_dot", "i8_neon_i8mm"):
        if v not in INFO["built_int8_isas"]:
            pytest.fail(NOT_BUILT.replace("the neon ISA variant", f"the int8 variant {v}"))
    feats = INFO["features"]
    monkeypatch.delenv("SQBERT_FAST_FORCE_INT8_ISA", raising=False)
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", "neon")
    want = "i8_neon_i8mm" if INFO["neon_impl"] == "simde" or feats["i8mm"] else \
        "i8_neon_dot" if feats["asimddp"] else "i8_scalar"
    assert _C.cpu_info()["int8_isa"] == want
    if INFO["neon_impl"] == "simde":  # emulated: usable when asked for, never the automatic choice
        assert {"i8_neon_dot", "i8_neon_i8mm"} <= set(INFO["usable_int8_isas"])
        monkeypatch.delenv("SQBERT_FAST_FORCE_CPU_ISA")
        assert _C.cpu_info()["int8_isa"] not in ("i8_neon_dot", "i8_neon_i8mm")


@pytest.fixture(scope="module", params=list(CONFIGS))
def models(request):
    _need_neon()
    hf, model = _models(request.param)
    return request.param, hf, model, CpuRunner(model, isa="scalar"), CpuRunner(model, isa="neon")


@pytest.mark.parametrize("L", LENGTHS)
def test_neon_vs_scalar_and_transformers(models, L):
    name, hf, model, scalar, neon = models
    assert neon.encoder.isa == "neon"
    ids, mask = padded_batch(2, L, 211, "right", seed=L)  # padding is dropped by packing, not compared
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = _encode(scalar, model, ids, mask)
        got = _encode(neon, model, ids, mask)
    err_hf = max_diff_real(got, want, mask)
    err_scalar = max_diff_real(got, ref, mask)
    assert err_scalar <= 1e-5, f"{name} L={L}: neon vs the scalar kernels {err_scalar:.2e}"
    assert err_hf <= 1e-4, f"{name} L={L}: neon vs transformers {err_hf:.2e}"


def test_neon_pooler_scores_and_hidden_states():
    _need_neon()
    hf, model = _models("tails")
    ids, mask = padded_batch(3, 13, 211, "right", seed=5)
    runner = CpuRunner(model, isa="neon")
    p = pack(model.config, ids, mask)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    enc = runner.encode(p, True, True, True)
    assert (enc.pooled - want.pooler_output).abs().max().item() <= 1e-4
    for layer, hs in enumerate(want.hidden_states):
        assert max_diff_real(p.unpack(enc.hidden_states[layer]), hs, mask) <= 1e-4, f"hidden state {layer}"


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("L", (1, 5, 9, 17, 65))
def test_neon_fp16_within_3x_of_pytorch_fp16(name, L):
    _need_neon("neon_fp16")
    hf, model = _models(name)
    ids, mask = padded_batch(2, L, 211, "right", seed=L)
    half = copy.deepcopy(model).half()  # the fp16 weights the engine packs (it reads them as fp32 copies)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        torch16 = copy.deepcopy(hf).half()(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        got = _encode(CpuRunner(half, isa="neon_fp16"), half, ids, mask)
        # the portable fp16-weight path (fp32 FMAs on the same weights): what the fp16 FMAs add on top
        portable = _encode(CpuRunner(half, isa="scalar"), half, ids, mask)
    torch_err = max_diff_real(torch16, want, mask)
    err = max_diff_real(got, want, mask)
    assert err <= 3 * torch_err, f"{name} L={L}: neon_fp16 {err:.2e} vs transformers fp16 {torch_err:.2e}"
    assert max_diff_real(got, portable, mask) <= 3 * torch_err


def test_fp16_is_offered_only_where_neon_fp16_runs_natively():
    from sqbert_fast.backends import cpu as cpu_backend

    reasons = cpu_backend.CpuBackend().reasons(torch.device("cpu"), torch.float16)
    native = INFO.get("neon_impl") == "native" and "neon_fp16" in INFO["usable_isas"]
    assert (not reasons) == native, reasons
    if not native:
        assert "neon_fp16" in reasons[0]
