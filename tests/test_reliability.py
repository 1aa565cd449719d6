"""What must hold however the engine is used (issue 23): a forked process computes, NaN and Inf show as
PyTorch shows them, in-place weight edits are seen, models deepcopy and pickle, bad settings are refused.

Each test here failed on a39c84b: the fork tests hung, the NaN in a query weight gave no NaN on the cpu
backend, `.data.mul_(2)` left the packed weights stale, deepcopy/pickle raised, a forced ISA the CPU lacks
fell back to `reference` under auto, `_C.Encoder(heads=0)` died of SIGFPE, `set_num_threads(10000)` started
10,000 threads, and a sequence longer than max_position_embeddings was refused with in-range position_ids.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import pickle
import signal

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
import sqbert_fast as sqf  # noqa: E402
from hf_utils import SMALL_CONFIGS, hf_config, max_diff_real, padded_batch, save_hf  # noqa: E402

_C = pytest.importorskip("sqbert_fast._C")
from sqbert_fast.backends.cpu import CpuRunner, bf16_supported  # noqa: E402
from sqbert_fast.packing import pack  # noqa: E402

ISAS = list(_C.cpu_info()["usable_isas"])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel")
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"])
    save_hf("SqueezeBertForSequenceClassification", cfg, path)
    return path, cfg


# ---- fork ----------------------------------------------------------------------------------------
_FORK_MODEL = None


def _fork_forward(seed):
    ids, mask = padded_batch(3, 40, _FORK_MODEL.config.vocab_size, "right", seed=seed)
    return _FORK_MODEL(ids, attention_mask=mask).logits


def test_forked_child_and_fork_pool_compute(ckpt):
    """The pool's workers do not exist in a forked child: it must start new ones, not wait on the old. Nor do
    GNU OpenMP's, which torch's MKL uses for the heads (on an AMD EPYC even for a 3 x 32 x 32 sgemm): torch runs
    on one thread in the child (sqbert_fast/threads.py), or its first head waits on them forever."""
    global _FORK_MODEL
    path, _ = ckpt
    before = sqf.get_num_threads()
    sqf.set_num_threads(2)  # a pool with workers, used in the parent before the fork
    try:
        _FORK_MODEL = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend="cpu")
        expected = [_fork_forward(s) for s in range(4)]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one forward, its result through the pipe
            try:
                os.close(r)
                os.write(w, pickle.dumps((_fork_forward(0).numpy(), torch.get_num_threads())))
            finally:
                os._exit(0)
        os.close(w)

        def hung(signum, frame):
            raise TimeoutError("the forked child sent no result in 60 s: it hangs")

        previous = signal.signal(signal.SIGALRM, hung)  # a hang fails the test instead of killing the run
        signal.alarm(60)
        try:
            with os.fdopen(r, "rb") as f:
                got, child_torch_threads = pickle.loads(f.read())
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)  # no hung child left behind
            raise
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            os.waitpid(pid, 0)
        assert np.array_equal(got, expected[0].numpy())
        assert child_torch_threads == 1 and torch.get_num_threads() == 2
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map_async(_fork_forward, range(4)).get(timeout=60)
        for a, b in zip(results, expected):
            assert torch.equal(a, b)
    finally:
        _FORK_MODEL = None
        sqf.set_num_threads(before)


@pytest.mark.parametrize("spin_us,error", [("0", None), ("1000", None), ("abc", True), ("-5", True),
                                            ("5us", True), ("2000000", True)])
def test_spin_time_setting(ckpt, spin_us, error):
    """SQBERT_FAST_SPIN_US (how long the pool's hand-offs poll before blocking) changes timing only: the same
    logits with 0 (always block) and 1000; anything but an integer in [0, 1000000] is a ValueError naming it."""
    import subprocess
    import sys

    path, cfg = ckpt
    code = (
        "import sys, torch, numpy as np, sqbert_fast as sqf\n"
        "from hf_utils import padded_batch\n"
        "try:\n"
        "    sqf.set_num_threads(2)\n"
        "    m = sqf.SqueezeBertForSequenceClassification.from_pretrained(sys.argv[1], backend='cpu')\n"
        "    ids, mask = padded_batch(3, 40, m.config.vocab_size, 'right', seed=1)\n"
        "    np.save(sys.argv[2], m(ids, attention_mask=mask).logits.detach().numpy())\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e); sys.exit(3)\n"
    )
    out = path.parent / f"logits-{abs(hash(spin_us))}.npy"
    env = dict(os.environ, SQBERT_FAST_SPIN_US=spin_us)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", code, str(path), str(out)], env=env, capture_output=True, text=True,
                       timeout=300)
    if error:
        assert r.returncode == 3 and "SQBERT_FAST_SPIN_US" in r.stdout and repr(spin_us) in r.stdout, r.stdout + r.stderr
        return
    assert r.returncode == 0, r.stderr
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend="cpu")
    ids, mask = padded_batch(3, 40, cfg.vocab_size, "right", seed=1)
    assert np.array_equal(np.load(out), model(ids, attention_mask=mask).logits.detach().numpy())


# ---- NaN and Inf show as in PyTorch -------------------------------------------------------------------
POISON = {
    "nan_query_weight": ("encoder.layers.0.attention.query.weight", (5, 3, 0), float("nan")),
    "inf_key_weight": ("encoder.layers.1.attention.key.weight", (2, 1, 0), float("inf")),
    "nan_word_embedding": ("embeddings.word_embeddings.weight", (7, 4), float("nan")),
    "inf_position_embedding": ("embeddings.position_embeddings.weight", (3, 0), float("-inf")),
}


def _poisoned(name, kind):
    cfg = hf_config(**SMALL_CONFIGS[name])
    torch.manual_seed(0)
    hf = transformers.SqueezeBertModel(cfg).eval()
    key, idx, value = POISON[kind]
    with torch.no_grad():
        hf.state_dict()[key][idx] = value
    ids, mask = padded_batch(2, 12, cfg.vocab_size, "right", seed=3)
    ids[0, 2] = 7  # the poisoned word (7) in sequence 0 only: sequence 1 stays finite
    ids[1] = ids[1].masked_fill(ids[1] == 7, 8)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
    return cfg, hf, ids, mask, ref


def _same_specials(ours, ref, mask, what):
    real = mask.bool()
    a, b = ours[real], ref[real]
    assert torch.equal(torch.isnan(a), torch.isnan(b)), f"{what}: NaN at other places than PyTorch " \
        f"({int(torch.isnan(a).sum())} vs {int(torch.isnan(b).sum())})"
    assert torch.equal(torch.isinf(a), torch.isinf(b)), f"{what}: Inf at other places than PyTorch"
    finite = torch.isfinite(b)
    return float((a[finite] - b[finite]).abs().max()) if finite.any() else 0.0


@pytest.mark.parametrize("name", ["h64_d16_mixed", "h128_d64_default_pattern"])
@pytest.mark.parametrize("kind", list(POISON))
def test_nan_and_inf_propagate_on_every_isa(name, kind):
    cfg, hf, ids, mask, ref = _poisoned(name, kind)
    assert torch.isnan(ref[mask.bool()]).any() or torch.isinf(ref[mask.bool()]).any()
    model = sqf.SqueezeBertModel(sqf.SqueezeBertConfig(**cfg.to_dict()), backend="cpu")
    model.load_state_dict(hf.state_dict())
    p = pack(model.config, ids, mask)
    for isa in ISAS:
        out = p.unpack(CpuRunner(model, isa=isa).encode(p, False, False, False).last_hidden)
        assert _same_specials(out, ref, mask, isa) <= 1e-4, isa
    if bf16_supported():
        low = copy.deepcopy(model).to(torch.bfloat16)
        for isa in _C.cpu_info()["bf16_isas"]:
            if isa in ISAS:
                out = p.unpack(CpuRunner(low, isa=isa).encode(p, False, False, False).last_hidden)
                assert _same_specials(out, ref, mask, f"{isa} bf16") <= 0.25, isa


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("backend", ["reference", "triton"])  # triton: its interpreter, on NumPy
@pytest.mark.parametrize("kind", list(POISON))
def test_nan_and_inf_propagate_on_other_backends(kind, backend):
    if backend == "triton":
        pytest.importorskip("triton")
    cfg, hf, ids, mask, ref = _poisoned("h64_d16_mixed", kind)
    model = sqf.SqueezeBertModel(sqf.SqueezeBertConfig(**cfg.to_dict()), backend=backend)
    model.load_state_dict(hf.state_dict())
    out = model(ids, attention_mask=mask).last_hidden_state
    assert _same_specials(out, ref, mask, backend) <= 1e-4


# ---- in-place weight edits ------------------------------------------------------------------------
EDITS = {
    "query_data_mul": lambda m: m.transformer.encoder.layers[0].attention.query.weight.data.mul_(2),
    "value_data_copy": lambda m: m.transformer.encoder.layers[1].attention.value.weight.data.copy_(
        torch.randn_like(m.transformer.encoder.layers[1].attention.value.weight)),
    "post_attention_prune_half": lambda m: m.transformer.encoder.layers[0].post_attention.conv1d.weight.data[::2]
    .zero_(),
    "ffn_lora_merge": lambda m: _lora_merge_(m.transformer.encoder.layers[1].intermediate.conv1d.weight),
    "pooler_data_mul": lambda m: m.transformer.pooler.dense.weight.data.mul_(-1),
}


def _lora_merge_(w):  # W += B A, rank 2, as merging a LoRA adapter does
    out, cin = w.shape[0], w.shape[1]
    w.data.add_((0.3 * torch.randn(out, 2) @ torch.randn(2, cin))[:, :, None].to(w.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("edit", list(EDITS))
def test_in_place_edits_through_data_are_seen(ckpt, edit, dtype):
    if dtype == torch.bfloat16 and not bf16_supported():
        pytest.skip("no bf16 GEMM on this CPU")
    path, cfg = ckpt
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend="cpu", dtype=dtype)
    ids, mask = padded_batch(2, 17, cfg.vocab_size, "right")
    before = model(ids, attention_mask=mask).logits
    EDITS[edit](model)
    after = model(ids, attention_mask=mask).logits
    ref = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend="reference", dtype=dtype)
    ref.load_state_dict(model.state_dict())
    expected = ref(ids, attention_mask=mask).logits
    assert (expected - before).abs().max() > 1e-3, "the edit should change the output"
    assert (after - expected).abs().max() <= (2e-2 if dtype == torch.bfloat16 else 1e-5)


def test_refresh_weights_sees_a_single_element_edit(ckpt):
    path, cfg = ckpt
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend="cpu")
    ids, mask = padded_batch(1, 9, cfg.vocab_size, "none")
    before = model(ids, attention_mask=mask).logits
    model.transformer.encoder.layers[0].attention.query.weight.data[:, :, 0].add_(1.0)
    assert not torch.equal(model.refresh_weights()(ids, attention_mask=mask).logits, before)


# ---- deepcopy and pickle ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_deepcopy_and_pickle_round_trip(ckpt, backend):
    path, cfg = ckpt
    model = sqf.SqueezeBertForSequenceClassification.from_pretrained(path, backend=backend)
    ids, mask = padded_batch(2, 11, cfg.vocab_size, "left")
    expected = model(ids, attention_mask=mask).logits
    twin = copy.deepcopy(model)
    clone = pickle.loads(pickle.dumps(model))
    for other in (twin, clone):
        assert other.backend == backend
        assert torch.equal(other(ids, attention_mask=mask).logits, expected)
    with torch.no_grad():  # the copy owns its parameters: editing it leaves the original alone
        twin.transformer.encoder.layers[0].attention.query.weight.mul_(3)
    assert not torch.equal(twin(ids, attention_mask=mask).logits, expected)
    assert torch.equal(model(ids, attention_mask=mask).logits, expected)


# ---- refused settings -------------------------------------------------------------------------------
def test_forced_isa_the_cpu_lacks_is_an_error_under_auto(ckpt, monkeypatch):
    path, _ = ckpt
    missing = [i for i in ("amx", "avx512_bf16", "avx512", "avx2", "neon_fp16", "neon") if i not in ISAS]
    monkeypatch.setenv("SQBERT_FAST_FORCE_CPU_ISA", missing[0] if missing else "sse9")
    for backend in ("auto", "cpu"):
        with pytest.raises(RuntimeError, match="SQBERT_FAST_FORCE_CPU_ISA|unknown CPU ISA"):
            sqf.SqueezeBertModel.from_pretrained(path, backend=backend)
    sqf.SqueezeBertModel.from_pretrained(path, backend="reference")  # an explicit other backend still runs


def _encoder_args(**overrides):
    cfg = dict(vocab_size=11, hidden_size=8, num_attention_heads=2, num_hidden_layers=0, intermediate_size=16,
               max_position_embeddings=8, type_vocab_size=2, q_groups=1, k_groups=1, v_groups=1,
               post_attention_groups=1, intermediate_groups=1, output_groups=1, layer_norm_eps=1e-12,
               hidden_act="gelu")
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize("field", ["num_attention_heads", "hidden_size", "vocab_size", "max_position_embeddings"])
def test_native_encoder_rejects_zero_sizes(field):
    with pytest.raises(ValueError, match=field):
        _C.Encoder(_encoder_args(**{field: 0}), {}, "scalar")


def test_set_num_threads_is_capped_with_a_warning():
    before = sqf.get_num_threads()
    try:
        with pytest.warns(RuntimeWarning, match="capped"):
            sqf.set_num_threads(10000)
        assert sqf.get_num_threads() == _C.max_threads() <= 4 * (os.cpu_count() or 1)
        with pytest.raises(ValueError, match="<= "):
            _C.set_num_threads(_C.max_threads() + 1)
    finally:
        sqf.set_num_threads(before)


def test_sequences_longer_than_the_position_table_with_in_range_position_ids(tmp_path):
    cfg = hf_config(**SMALL_CONFIGS["h64_d16_mixed"], max_position_embeddings=32)
    hf = save_hf("SqueezeBertModel", cfg, tmp_path)
    ids, mask = padded_batch(2, 70, cfg.vocab_size, "right")
    pos = (torch.arange(70) % 32).expand(2, 70)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, position_ids=pos).last_hidden_state
    for backend in ("cpu", "reference"):
        model = sqf.SqueezeBertModel.from_pretrained(tmp_path, backend=backend)
        out = model(ids, attention_mask=mask, position_ids=pos).last_hidden_state
        assert max_diff_real(out, ref, mask) <= 1e-4, backend
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model(ids, attention_mask=mask)  # without position_ids: the table is too short
