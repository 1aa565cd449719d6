"""Random configs, shapes and masks: the cpu backend (a random usable ISA) against the reference backend.

Heads, head size, the six group counts, intermediate width, batch, lengths 1..600 and the mask pattern are
drawn by hypothesis. `make sanitize` runs this file (with the CPU kernel tests) on a `_C` built with
-fsanitize=address,undefined, where an out-of-bounds read or an overflow fails the run even when the
numbers happen to agree. SQBERT_FAST_FUZZ_EXAMPLES sets the number of draws (default 50).
"""

from __future__ import annotations

import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sqbert_fast as sqf  # noqa: E402

_C = pytest.importorskip("sqbert_fast._C")
from sqbert_fast.backends import reference  # noqa: E402
from sqbert_fast.backends.cpu import CpuRunner  # noqa: E402
from sqbert_fast.packing import pack  # noqa: E402

ISAS = list(_C.cpu_info()["usable_isas"])
EXAMPLES = int(os.environ.get("SQBERT_FAST_FUZZ_EXAMPLES", "50"))
MAX_LEN = 600


def _divisors(n: int, most: int = 6) -> list[int]:
    return [g for g in range(1, most + 1) if n % g == 0]


@st.composite
def cases(draw):
    heads = draw(st.integers(1, 4))
    d = draw(st.sampled_from([1, 3, 4, 8, 12, 16, 20, 32]))
    hidden = heads * d
    inter = hidden * draw(st.integers(1, 4))
    g = lambda n, m: draw(st.sampled_from(_divisors(n) if m is None else  # noqa: E731
                                          [x for x in _divisors(n) if m % x == 0]))
    cfg = dict(vocab_size=50, hidden_size=hidden, embedding_size=hidden, num_attention_heads=heads,
               num_hidden_layers=draw(st.integers(1, 2)), intermediate_size=inter, max_position_embeddings=MAX_LEN,
               type_vocab_size=2, q_groups=g(hidden, None), k_groups=g(hidden, None), v_groups=g(hidden, None),
               post_attention_groups=g(hidden, None), intermediate_groups=g(hidden, inter),
               output_groups=g(inter, hidden), hidden_act=draw(st.sampled_from(["gelu", "relu", "gelu_new"])))
    batch = draw(st.integers(1, 3))
    # one sequence may be long (flash-style key blocks past 512); the rest short, to keep draws cheap
    lengths = [draw(st.integers(1, MAX_LEN if b == 0 else 70)) for b in range(batch)]
    seq = max(lengths)
    pattern = draw(st.sampled_from(["right", "left", "random"]))
    mask = torch.zeros(batch, seq, dtype=torch.long)
    for b, n in enumerate(lengths):
        if pattern == "right":
            mask[b, :n] = 1
        elif pattern == "left":
            mask[b, seq - n:] = 1
        else:
            bits = draw(st.lists(st.booleans(), min_size=seq, max_size=seq))
            mask[b] = torch.tensor(bits, dtype=torch.long)
            mask[b, draw(st.integers(0, seq - 1))] = 1  # at least one real token
    seed = draw(st.integers(0, 2**16))
    return cfg, mask, seed, draw(st.sampled_from(ISAS))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_random_configs_match_the_reference(case):
    cfg, mask, seed, isa = case
    torch.manual_seed(seed)
    model = sqf.SqueezeBertModel(sqf.SqueezeBertConfig(**cfg), backend="reference").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn_like(p))
    ids = torch.randint(1, cfg["vocab_size"], mask.shape).masked_fill(mask == 0, 0)
    types = torch.randint(0, 2, mask.shape)
    p = pack(model.config, ids, mask, token_type_ids=types)
    want = reference.ReferenceRunner(model).encode(p, False, False, True)
    got = CpuRunner(model, isa=isa).encode(p, False, False, True)
    assert torch.isfinite(got.last_hidden).all()
    assert (got.last_hidden - want.last_hidden).abs().max() <= 1e-4, (isa, cfg, mask.sum(1).tolist())
    assert (got.pooled - want.pooled).abs().max() <= 1e-4, isa
