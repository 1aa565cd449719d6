"""Soak: 2,000 calls with random batch sizes and lengths keep resident memory flat after warm-up."""

from __future__ import annotations

import gc
import random

import psutil
import pytest
import torch

import sqbert_fast as sqf
from hf_utils import SMALL_CONFIGS, hf_config, save_hf


@pytest.mark.parametrize("backend", ["cpu"])
def test_resident_memory_is_flat(tmp_path, backend):
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"])
    save_hf("SqueezeBertForSequenceClassification", cfg, tmp_path)
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(tmp_path, backend=backend)
    rng = random.Random(0)
    proc = psutil.Process()

    def call():
        b, s = rng.randint(1, 8), rng.randint(1, 128)
        ids = torch.randint(0, cfg.vocab_size, (b, s))
        mask = torch.ones(b, s, dtype=torch.long)
        for i in range(b):
            mask[i, rng.randint(1, s):] = 0
        out = model(ids, attention_mask=mask)
        assert torch.isfinite(out.logits).all()

    for _ in range(300):  # warm-up: workspaces grow to the largest shape seen
        call()
    gc.collect()
    warm = proc.memory_info().rss
    for _ in range(1700):
        call()
    gc.collect()
    end = proc.memory_info().rss
    assert end <= warm * 1.05, f"RSS grew from {warm / 2**20:.1f} MiB to {end / 2**20:.1f} MiB"
