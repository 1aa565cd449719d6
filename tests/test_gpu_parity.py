"""Whole-model parity on a GPU for both GPU backends (run on the GPU machine: `TRITON_INTERPRET=0 pytest -m gpu`).

SqueezeBERT's default config (2 layers, random weights) on a mixed-length batch, loaded the documented way
(`from_pretrained(path, backend=..., device="cuda", dtype=...)`), against transformers fp32 (true fp32, see
conftest.py): fp32 <= 1e-4; fp16 <= 2e-2 and <= 3x transformers' own fp16 error; bf16 <= 2x transformers'
own bf16 error. bf16 has no absolute bound: on an H100, transformers itself is 5.7e-2 off in bf16 here (8
bits of mantissa against fp16's 11), so the issue's 2e-2 holds for no engine that keeps bf16 activations.
"""

from __future__ import annotations

import os

import pytest
import torch

import sqbert_fast as sqf
from hf_utils import max_diff_real, mixed_batch, save_default_config


def _skip_reason(backend: str):
    if not torch.cuda.is_available():
        return "no CUDA device"
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        return "TRITON_INTERPRET=1: run `TRITON_INTERPRET=0 pytest -m gpu` for the GPU tests"
    return None


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_default_config_parity(tmp_path, backend, dtype):
    reason = _skip_reason(backend)
    if reason:
        pytest.skip(reason)
    hf = save_default_config(tmp_path).cuda()
    ids, mask = mixed_batch(device="cuda")
    with torch.no_grad():
        want = hf(ids, attention_mask=mask).last_hidden_state
        hf_low = hf.to(dtype)(ids, attention_mask=mask).last_hidden_state.float()
    ours = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend=backend, device="cuda", dtype=dtype)
    assert ours.backend == backend
    got = ours(ids, attention_mask=mask).last_hidden_state.float()
    err = max_diff_real(got, want, mask)
    own = max_diff_real(hf_low, want, mask)
    if dtype == torch.float32:
        assert err <= 1e-4
    elif dtype == torch.float16:
        assert err <= 2e-2 and err <= 3 * own, f"{err} vs transformers' own {own}"
    else:
        assert err <= 2 * own, f"{err} vs transformers' own {own}"
