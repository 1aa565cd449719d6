"""One model object serving several Python threads at once gives the same results as serial
calls (the kernels release the GIL; workspaces are per call)."""

from __future__ import annotations

import threading

import pytest
import torch

import sqbert_fast as sqf
from hf_utils import SMALL_CONFIGS, hf_config, padded_batch, save_hf


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_four_threads_match_serial(tmp_path, backend):
    cfg = hf_config(**SMALL_CONFIGS["h96_d32_unaligned"])
    save_hf("SqueezeBertModel", cfg, tmp_path)
    model = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend=backend)
    inputs = [padded_batch(1 + i % 4, 5 + 13 * i, cfg.vocab_size, ("right", "left", "holes")[i % 3], seed=i)
              for i in range(8)]
    serial = [model(ids, attention_mask=mask).last_hidden_state for ids, mask in inputs]
    results: dict = {}
    errors = []
    barrier = threading.Barrier(4)

    def worker(t):
        try:
            barrier.wait()
            for rep in range(10):
                for i in range(t, len(inputs), 4) if rep % 2 else range(len(inputs)):
                    ids, mask = inputs[i]
                    results[(t, rep, i)] = model(ids, attention_mask=mask).last_hidden_state
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    assert len(results) > 100
    for (t, rep, i), out in results.items():
        assert torch.equal(out, serial[i]), (t, rep, i)


def test_set_num_threads_is_honoured_and_results_identical(tmp_path):
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"])
    save_hf("SqueezeBertModel", cfg, tmp_path)
    model = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cpu")
    ids, mask = padded_batch(4, 33, cfg.vocab_size, "right")
    before = sqf.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            sqf.set_num_threads(n)
            assert sqf.get_num_threads() == n and torch.get_num_threads() == n
            outs.append(model(ids, attention_mask=mask).last_hidden_state)
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    finally:
        sqf.set_num_threads(before)
