"""Property-based: random and mutated bytes fed to the config and checkpoint loaders give
either a loaded object or a Python exception naming the problem — never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqbert_fast as sqf
from hf_utils import SMALL_CONFIGS, hf_config, save_hf
from sqbert_fast.weights import read_state_dict

ALLOWED = (ValueError, OSError, TypeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-good")
    save_hf("SqueezeBertModel", hf_config(**SMALL_CONFIGS["h48_d16_bert_gelu_new"], num_hidden_layers=1), path)
    return path, (path / "config.json").read_bytes(), (path / "model.safetensors").read_bytes()


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


@FUZZ
@given(st.binary(max_size=400))
def test_config_random_bytes(tmp_path, data):
    f = tmp_path / "config.json"
    f.write_bytes(data)
    try:
        sqf.SqueezeBertConfig.from_json_file(f)
    except ALLOWED:
        pass


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_config_mutated_bytes(tmp_path, good, edits):
    f = tmp_path / "config.json"
    f.write_bytes(_mutate(good[1], edits))
    try:
        sqf.SqueezeBertConfig.from_json_file(f)
    except ALLOWED:
        pass


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)


@FUZZ
@given(field=st.sampled_from(sorted(json.loads(hf_config().to_json_string()).keys()) + ["id2label", "label2id", "num_labels"]),
       value=JSON_VALUES)
def test_config_field_values(tmp_path, good, field, value):
    cfg = json.loads(good[1])
    cfg[field] = value
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    try:
        sqf.SqueezeBertConfig.from_json_file(f)
    except ALLOWED:
        pass


@FUZZ
@given(data=st.binary(max_size=600))
def test_checkpoint_random_bytes(tmp_path, good, data):
    (tmp_path / "model.safetensors").write_bytes(data)
    try:
        read_state_dict(str(tmp_path))
    except ALLOWED:
        pass


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 5000)))
def test_checkpoint_mutated_header_loads_or_raises(tmp_path, good, edits, cut):
    """Mutations concentrated on the safetensors header (first bytes), plus truncation."""
    path, cfg_bytes, weights = good
    data = _mutate(weights, edits)
    if cut is not None:
        data = data[:cut]
    (tmp_path / "config.json").write_bytes(cfg_bytes)
    (tmp_path / "model.safetensors").write_bytes(data)
    try:
        sqf.SqueezeBertModel.from_pretrained(tmp_path, backend="cpu")
    except ALLOWED:
        pass
