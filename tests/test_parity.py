"""Whole-model parity with transformers, fp32, every output tensor, padded positions excluded.

Checkpoints are random-weight transformers models written with save_pretrained and loaded with
sqbert_fast's from_pretrained, so loading is exercised too. Tolerance: DESIGN.md §5 (1e-4).
"""

from __future__ import annotations

import pytest
import torch

from hf_utils import (CLASS_NAMES, SMALL_CONFIGS, hf_config, load_ours, max_diff_real, max_diff_scores,
                      padded_batch, save_hf)

TOL = 1e-4
BACKENDS = ("reference", "cpu")


def _inputs(class_name, cfg, pattern, seed, seq=11, batch=3, with_types=True, with_positions=False):
    ids, mask = padded_batch(batch, seq, cfg.vocab_size, pattern, seed)
    kw = dict(input_ids=ids, attention_mask=mask)
    g = torch.Generator().manual_seed(seed + 1)
    if with_types:
        kw["token_type_ids"] = torch.randint(0, cfg.type_vocab_size, ids.shape, generator=g)
    if with_positions:
        kw["position_ids"] = torch.randint(0, cfg.max_position_embeddings, ids.shape, generator=g)
    if class_name == "SqueezeBertForMultipleChoice":  # [batch, choices, seq]
        kw = {k: v.view(1, batch, seq) for k, v in kw.items()}
    return kw


def _labels(class_name, cfg, kw, seed):
    g = torch.Generator().manual_seed(seed + 2)
    mask = kw["attention_mask"]
    if class_name in ("SqueezeBertForMaskedLM", "SqueezeBertForTokenClassification"):
        n = cfg.vocab_size if class_name.endswith("MaskedLM") else cfg.num_labels
        labels = torch.randint(0, n, mask.shape, generator=g)
        return {"labels": labels.masked_fill(mask == 0, -100)}
    if class_name == "SqueezeBertForSequenceClassification":
        return {"labels": torch.randint(0, cfg.num_labels, (mask.shape[0],), generator=g)}
    if class_name == "SqueezeBertForMultipleChoice":
        return {"labels": torch.randint(0, mask.shape[1], (mask.shape[0],), generator=g)}
    if class_name == "SqueezeBertForQuestionAnswering":
        B, S = mask.shape
        return {"start_positions": torch.randint(0, S, (B,), generator=g),
                "end_positions": torch.randint(0, S, (B,), generator=g)}
    return {}


def assert_outputs_match(ours, theirs, real: torch.Tensor, tol: float = TOL):
    """Compares every field transformers returned; per-token tensors on real positions only."""
    real2d = real.reshape(-1, real.shape[-1])
    for key in theirs.keys():
        assert key in ours.keys(), f"missing output field {key}"
        a, b = ours[key], theirs[key]
        if key in ("hidden_states", "attentions"):
            assert len(a) == len(b), key
            for i, (x, y) in enumerate(zip(a, b)):
                d = max_diff_scores(x, y, real2d) if key == "attentions" else max_diff_real(x, y, real2d)
                assert d <= tol, f"{key}[{i}] differs by {d}"
        elif key in ("last_hidden_state",) or (b.dim() >= 2 and b.shape[:2] == real.shape and key != "pooler_output"):
            d = max_diff_real(a, b, real)
            assert d <= tol, f"{key} differs by {d}"
        else:
            d = float((a - b).abs().max())
            assert d <= tol, f"{key} differs by {d}"
    assert set(ours.keys()) == set(theirs.keys())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(class, config name) -> (checkpoint dir, transformers model)."""
    cache = {}

    def get(class_name, cfg_name):
        key = (class_name, cfg_name)
        if key not in cache:
            cfg = hf_config(**SMALL_CONFIGS[cfg_name], num_labels=2 if class_name.endswith("Answering") else 3)
            path = tmp_path_factory.mktemp(f"{class_name}-{cfg_name}")
            cache[key] = (path, save_hf(class_name, cfg, path, seed=hash(key) % 1000), cfg)
        return cache[key]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg_name", list(SMALL_CONFIGS))
@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_all_classes_padded_with_everything(checkpoints, class_name, cfg_name, backend):
    path, hf, cfg = checkpoints(class_name, cfg_name)
    ours = load_ours(class_name, path, backend)
    assert ours.backend == backend
    for i, pattern in enumerate(("right", "left", "holes")):
        kw = _inputs(class_name, cfg, pattern, seed=i)
        if class_name != "SqueezeBertForQuestionAnswering":  # QA loss spans padded logits; tested unpadded below
            kw.update(_labels(class_name, cfg, kw, seed=i))
        flags = dict(output_hidden_states=True, output_attentions=True)
        with torch.no_grad():
            theirs = hf(**kw, **flags)
        assert_outputs_match(ours(**kw, **flags), theirs, kw["attention_mask"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_unpadded_losses_positions_and_tuples(checkpoints, class_name, backend):
    path, hf, cfg = checkpoints(class_name, "h64_d16_mixed")
    ours = load_ours(class_name, path, backend)
    kw = _inputs(class_name, cfg, "none", seed=5, with_types=False, with_positions=True)
    kw.update(_labels(class_name, cfg, kw, seed=5))
    with torch.no_grad():
        theirs = hf(**kw)
    out = ours(**kw)
    has_loss = class_name != "SqueezeBertModel"
    assert (getattr(out, "loss", None) is not None) == has_loss
    assert_outputs_match(out, theirs, kw["attention_mask"])
    # return_dict=False gives the same tuple layout as transformers
    with torch.no_grad():
        t_theirs = hf(**kw, return_dict=False)
    t_ours = ours(**kw, return_dict=False)
    assert isinstance(t_ours, tuple) and len(t_ours) == len(t_theirs)
    for a, b in zip(t_ours, t_theirs):
        assert float((a - b).abs().max()) <= TOL
    # indexing / attribute access like transformers outputs
    first = "loss" if has_loss else "last_hidden_state"
    assert torch.equal(out[0], getattr(out, first)) and torch.equal(out[first], getattr(out, first))


@pytest.mark.parametrize("problem_type,num_labels", [("regression", 1), ("multi_label_classification", 3),
                                                      ("single_label_classification", 3)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sequence_classification_problem_types(tmp_path, problem_type, num_labels, backend):
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"], num_labels=num_labels)
    hf = save_hf("SqueezeBertForSequenceClassification", cfg, tmp_path, seed=3)
    ours = load_ours("SqueezeBertForSequenceClassification", tmp_path, backend)
    ids, mask = padded_batch(4, 9, cfg.vocab_size, "right", seed=3)
    if problem_type == "regression":
        labels = torch.randn(4)
    elif problem_type == "multi_label_classification":
        labels = (torch.rand(4, num_labels) > 0.5).float()
    else:
        labels = torch.randint(0, num_labels, (4,))
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, labels=labels)
    out = ours(ids, attention_mask=mask, labels=labels)
    assert ours.config.problem_type == hf.config.problem_type == problem_type
    assert abs(float(out.loss - theirs.loss)) <= TOL
    assert float((out.logits - theirs.logits).abs().max()) <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seq", [1, 7, 97, 512])
def test_sequence_lengths(tmp_path, seq, backend):
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"], max_position_embeddings=512)
    hf = save_hf("SqueezeBertModel", cfg, tmp_path, seed=seq)
    ours = load_ours("SqueezeBertModel", tmp_path, backend)
    pattern = "none" if seq == 1 else "right"
    ids, mask = padded_batch(2, seq, cfg.vocab_size, pattern, seed=seq)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask)
    assert_outputs_match(ours(ids, attention_mask=mask), theirs, mask)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_dtype", [torch.long, torch.int32, torch.uint8, torch.bool, torch.float32])
@pytest.mark.parametrize("pattern", ["none", "right", "holes"])
def test_attention_mask_dtypes(checkpoints, mask_dtype, pattern, backend):
    """Every mask dtype transformers takes, all ones (packing is a reshape) or padded (tokens dropped)."""
    path, hf, cfg = checkpoints("SqueezeBertModel", "h64_d16_mixed")
    ours = load_ours("SqueezeBertModel", path, backend)
    ids, mask = padded_batch(3, 9, cfg.vocab_size, pattern, seed=4)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask)
    assert_outputs_match(ours(input_ids=ids, attention_mask=mask.to(mask_dtype)), theirs, mask)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_embeds(checkpoints, backend):
    path, hf, cfg = checkpoints("SqueezeBertModel", "h96_d32_unaligned")
    ours = load_ours("SqueezeBertModel", path, backend)
    ids, mask = padded_batch(2, 10, cfg.vocab_size, "left", seed=9)
    embeds = torch.randn(2, 10, cfg.hidden_size)
    with torch.no_grad():
        theirs = hf(inputs_embeds=embeds, attention_mask=mask)
    assert_outputs_match(ours(inputs_embeds=embeds, attention_mask=mask), theirs, mask)


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_size_model_seq128(tmp_path_factory, backend):
    """The real architecture: 12 layers, hidden 768, groups 4/4/4/1/4/4, at 128 tokens."""
    path = tmp_path_factory.getbasetemp() / "default-size"
    if not (path / "config.json").exists():
        hf = save_hf("SqueezeBertModel", hf_config(vocab_size=30522, max_position_embeddings=512, hidden_size=768,
                                                  num_hidden_layers=12, intermediate_size=3072), path, seed=11)
    else:
        import transformers

        hf = transformers.SqueezeBertModel.from_pretrained(path).eval()
    ours = load_ours("SqueezeBertModel", path, backend)
    ids, mask = padded_batch(2, 128, 30522, "right", seed=11)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask)
    assert_outputs_match(ours(ids, attention_mask=mask), theirs, mask)
