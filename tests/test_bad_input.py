"""Bad input: each case is a Python exception that names the problem, on every backend.
Nothing may crash the interpreter, hang, or return garbage silently."""

from __future__ import annotations

import pytest
import torch

import sqbert_fast as sqf
from hf_utils import SMALL_CONFIGS, hf_config, save_hf

BACKENDS = ("reference", "cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-input")
    save_hf("SqueezeBertForSequenceClassification", hf_config(**SMALL_CONFIGS["h64_d16_mixed"]), path)
    return path


@pytest.fixture(params=BACKENDS)
def model(request, model_dir):
    return sqf.SqueezeBertForSequenceClassification.from_pretrained(model_dir, backend=request.param)


IDS = torch.tensor([[2, 5, 7, 9], [3, 4, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])

CASES = [
    ("id >= vocab", dict(input_ids=torch.tensor([[2, 211]])), IndexError, r"input_ids contains 211, outside \[0, 211\)"),
    ("negative id", dict(input_ids=torch.tensor([[2, -1]])), IndexError, r"input_ids contains -1"),
    ("too long", dict(input_ids=torch.ones(1, 129, dtype=torch.long)), ValueError, "longer than max_position_embeddings=128"),
    ("mask shape", dict(input_ids=IDS, attention_mask=MASK[:, :3]), ValueError, r"attention_mask has shape \(2, 3\)"),
    ("type ids shape", dict(input_ids=IDS, token_type_ids=torch.zeros(2, 5, dtype=torch.long)), ValueError,
     r"token_type_ids has shape \(2, 5\)"),
    ("type id range", dict(input_ids=IDS, token_type_ids=torch.full((2, 4), 3)), IndexError, "token_type_ids contains 3"),
    ("position id range", dict(input_ids=IDS, position_ids=torch.full((2, 4), 128)), IndexError, "position_ids contains 128"),
    ("float ids", dict(input_ids=IDS.float()), TypeError, "input_ids must be an integer tensor"),
    ("float type ids", dict(input_ids=IDS, token_type_ids=torch.zeros(2, 4)), TypeError, "token_type_ids must be an integer"),
    ("list ids", dict(input_ids=[[1, 2]]), TypeError, "input_ids must be a torch.Tensor"),
    ("empty batch", dict(input_ids=torch.zeros(0, 4, dtype=torch.long)), ValueError, "empty batch"),
    ("empty sequence", dict(input_ids=torch.zeros(2, 0, dtype=torch.long)), ValueError, "empty batch"),
    ("3-d ids", dict(input_ids=torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, r"\[batch, seq_len\]"),
    ("mask not 0/1", dict(input_ids=IDS, attention_mask=MASK * 2), ValueError, "only 0 and 1"),
    ("negative mask", dict(input_ids=IDS, attention_mask=MASK - 1), ValueError, "only 0 and 1"),
    ("fractional mask", dict(input_ids=IDS, attention_mask=MASK * 0.5), ValueError, "only 0 and 1"),
    ("fully masked row (bool)", dict(input_ids=IDS, attention_mask=torch.tensor([[False] * 4, [True] * 4])),
     ValueError, "row 0 masks every token"),
    ("fully masked row", dict(input_ids=IDS, attention_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])), ValueError,
     "row 1 masks every token"),
    ("ids and embeds", dict(input_ids=IDS, inputs_embeds=torch.zeros(2, 4, 64)), ValueError, "both input_ids and inputs_embeds"),
    ("neither", dict(), ValueError, "either input_ids or inputs_embeds"),
    ("embeds width", dict(inputs_embeds=torch.zeros(2, 4, 63)), ValueError, r"inputs_embeds must be \[batch, seq_len, 64\]"),
    ("int embeds", dict(inputs_embeds=torch.zeros(2, 4, 64, dtype=torch.long)), TypeError, "floating point"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(model, name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        model(**kwargs)
    # the model is still usable afterwards
    out = model(input_ids=IDS, attention_mask=MASK)
    assert torch.isfinite(out.logits).all()


def test_multiple_choice_needs_3d(model_dir):
    m = sqf.SqueezeBertForMultipleChoice(sqf.SqueezeBertConfig.from_pretrained(model_dir))
    with pytest.raises(ValueError, match="num_choices"):
        m(input_ids=IDS)


def test_cpu_binding_checks_its_arguments(model_dir):
    """The C++ boundary re-checks what it is handed (defence in depth below packing.py)."""
    import numpy as np

    from sqbert_fast.backends.cpu import CpuRunner

    m = sqf.SqueezeBertModel.from_pretrained(model_dir, backend="cpu")
    enc = CpuRunner(m).encoder
    ids = np.array([1, 2, 3], dtype=np.int64)
    zeros = np.zeros(3, dtype=np.int64)
    cu = np.array([0, 3], dtype=np.int64)
    valid = np.ones(3, dtype=np.uint8)
    out = np.zeros((3, 64), dtype=np.float32)
    enc.forward(ids, None, zeros, np.arange(3), cu, valid, out)
    assert np.isfinite(out).all() and np.abs(out).sum() > 0
    with pytest.raises(TypeError, match="input_ids must have dtype int64"):
        enc.forward(ids.astype(np.int32), None, zeros, np.arange(3), cu, valid, out)
    with pytest.raises(ValueError, match=r"last_hidden has shape \(3, 63\)"):
        enc.forward(ids, None, zeros, np.arange(3), cu, valid, np.zeros((3, 63), dtype=np.float32))
    with pytest.raises(IndexError, match="outside the vocabulary"):
        enc.forward(np.array([1, 2, 999], dtype=np.int64), None, zeros, np.arange(3), cu, valid, out)
    # key_valid is validated once, in packing.py (the model raises for a fully masked row, above); a
    # direct caller passing a sequence with no valid key gets finite numbers, never a division by zero
    enc.forward(ids, None, zeros, np.arange(3), cu, np.zeros(3, dtype=np.uint8), out)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="non-decreasing"):
        enc.forward(ids, None, zeros, np.arange(3), np.array([0, 2, 1, 3], dtype=np.int64), valid, out)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        enc.forward(None, None, zeros, np.arange(3), cu, valid, out)
    # the keywords of the shared forward signature (the CUDA encoder needs them): checked, never ignored
    t = torch.from_numpy
    enc.forward(t(ids), None, t(zeros), t(np.arange(3)), t(cu), t(valid), t(out), max_len=3,
                score_offsets=np.zeros(1, np.int64))  # torch tensors are taken as NumPy arrays are
    with pytest.raises(ValueError, match="more than max_len=2"):
        enc.forward(ids, None, zeros, np.arange(3), cu, valid, out, max_len=2)
    with pytest.raises(ValueError, match=r"score_offsets\[0\] is 5"):
        enc.forward(ids, None, zeros, np.arange(3), cu, valid, out, score_offsets=np.array([5], np.int64))
    with pytest.raises(ValueError, match="workspace must be None"):
        enc.forward(ids, None, zeros, np.arange(3), cu, valid, out, workspace=np.zeros(8, np.uint8))
    with pytest.raises(ValueError, match="stream must be 0"):
        enc.forward(ids, None, zeros, np.arange(3), cu, valid, out, stream=1)
    with pytest.raises(TypeError, match="cu_seqlens must be a numpy array or a torch tensor, got list"):
        enc.forward(ids, None, zeros, np.arange(3), [0, 3], valid, out)


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="positive integer"):
        sqf.set_num_threads(0)
    with pytest.raises(ValueError, match="positive integer"):
        sqf.set_num_threads(1.5)
