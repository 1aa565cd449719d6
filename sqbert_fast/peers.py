"""Providers for the latency benchmark: sqbert_fast's backends and the peers a user would pick instead.

One interface for all of them::

    from sqbert_fast import peers
    p = peers.prepare("onnxruntime", model_dir, "fp32")   # raises peers.Unavailable("why") if it can't
    hidden = p(input_ids, attention_mask)                 # -> last_hidden_state [B, S, H] torch tensor
    p.setup_s     # {"load": s, "export": s, "optimize": s, ...}: one-time costs, kept apart from latency
    p.notes       # what was actually run (exporter, fusions applied, precision the engine picked)

Providers (``PROVIDERS``): the sqbert_fast backends by their registry name (``reference``, ``cpu``,
``cuda``, ``triton``; ``cpu-<isa>`` forces one ISA variant of the cpu backend, e.g. ``cpu-avx2``) and the peers

- ``transformers``: transformers' SqueezeBertModel, eager, fp32 or bf16 weights.
- ``torch.compile``: the same model through ``torch.compile`` (inductor). Compilation happens on the
  first call of each new shape, so it is not in ``setup_s``: time the first call separately.
- ``onnxruntime``: the transformers model exported with ``torch.onnx.export`` (the dynamo exporter, torch's
  default; the legacy TorchScript exporter if that fails), then onnxruntime's transformer optimizer
  (model_type "bert"), then an InferenceSession with all graph optimisations. fp32 only: the CPU
  execution provider has no bf16 Conv/MatMul kernels.
- ``openvino``: ``ov.convert_model`` of the torch model (the ONNX file if that fails), compiled for CPU
  with ``INFERENCE_PRECISION_HINT`` f32 (``fp32``), bf16 (``bf16``), or left to OpenVINO (``default``:
  bf16 on CPUs with AMX / AVX512-BF16, f32 elsewhere; ``notes`` says which it chose).

Every peer package is optional (``pip install sqbert_fast[bench]``); a missing one gives
``Unavailable("onnxruntime is not installed (pip install onnxruntime)")``, never an ImportError.
Inputs are int64 torch tensors; padded positions of the output are not meaningful (compare with
``attention_mask``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

SQBERT_BACKENDS = ("reference", "cpu", "cuda", "triton")
PEERS = ("transformers", "torch.compile", "onnxruntime", "openvino")
PROVIDERS = SQBERT_BACKENDS + PEERS
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "default")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
# what each peer can run at all (sqbert_fast backends answer through their own reasons())
_PEER_PRECISIONS = {
    "transformers": ("fp32", "bf16", "fp16"),
    "torch.compile": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8", "default"),
}
_PEER_PACKAGES = {
    "transformers": ("transformers",),
    "torch.compile": ("transformers",),
    "onnxruntime": ("transformers", "onnx", "onnxruntime"),
    "openvino": ("transformers", "openvino"),
}


class Unavailable(RuntimeError):
    """This provider cannot run here; the message says why."""


@dataclass
class Prepared:
    provider: str
    precision: str                     # as asked
    device: torch.device
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    setup_s: dict = field(default_factory=dict)   # one-time costs by phase, seconds
    notes: list = field(default_factory=list)
    close: Optional[Callable[[], None]] = None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.run(input_ids, attention_mask)

    @property
    def setup_total_s(self) -> float:
        return float(sum(self.setup_s.values()))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def strict_fp32() -> None:
    """Make fp32 on CUDA devices true fp32, for ground truths: PyTorch's default lets cuDNN run fp32
    convolutions (SqueezeBERT's 1x1 convs) in TF32, ~5e-4 off on these models (seen on an H100), five
    times the fp32 parity bound. Process-wide; no effect on CPU computations."""
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:  # torch < 2.9
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def _missing(packages) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


def reasons(provider: str, precision: str = "fp32", device="cpu") -> list[str]:
    """Why ``provider`` cannot run ``precision`` on ``device`` (empty: it can, as far as is known before loading)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        return [f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"]
    backend, isa = split_isa(provider)
    if backend in SQBERT_BACKENDS:
        if precision == "default":
            return ["sqbert_fast backends take an explicit precision (fp32, bf16, fp16, int8)"]
        if isa is not None:
            usable = cpu_isas()
            if backend != "cpu" or isa not in usable:
                return [f"{provider}: ISA variants are cpu-<isa> with <isa> in {usable}"]
        from .backends import reasons as backend_reasons

        with _forced_isa(isa):
            return list(backend_reasons(device, _DTYPES[precision]).get(backend, [f"backend {backend!r} is not built"]))
    if provider not in PEERS:
        return [f"unknown provider {provider!r} (known: {', '.join(PROVIDERS)})"]
    out = [f"{p} is not installed (pip install {p})" for p in _missing(_PEER_PACKAGES[provider])]
    if precision == "int8" and precision in _PEER_PRECISIONS[provider]:
        out += int8_reasons(provider)
    if precision not in _PEER_PRECISIONS[provider]:
        if provider == "onnxruntime" and precision == "default":
            out.append("onnxruntime has no precision hint of its own: ask for fp32")
        elif provider == "onnxruntime":
            out.append(f"{precision}: onnxruntime's CPU execution provider has no {precision} Conv/MatMul kernels")
        elif precision == "int8":
            out.append(f"{provider} has no int8 recipe here (int8 peers: {', '.join(INT8_PEERS)}, through "
                       "peers.prepare_int8)")
        else:
            out.append(f"{provider} runs {', '.join(_PEER_PRECISIONS[provider])}, not {precision}")
    if provider in ("onnxruntime", "openvino") and device.type != "cpu":
        out.append(f"only benchmarked on cpu here (asked for {device})")
    if device.type == "cuda" and not torch.cuda.is_available():
        out.append("CUDA is not available")
    if provider == "torch.compile" and device.type == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is None \
            and shutil.which("c++") is None:
        out.append("torch.compile (inductor) needs a C++ compiler on PATH for CPU code")
    return out


def prepare(provider: str, model_dir: str, precision: str = "fp32", *, device="cpu",
            threads: Optional[int] = None, work_dir: Optional[str] = None, **options) -> Prepared:
    """Load ``model_dir`` into ``provider`` at ``precision``; raise ``Unavailable`` with the reason if it can't.

    ``threads``: intra-op threads for engines with their own pool (onnxruntime, openvino); torch's and
    sqbert_fast's pools are set by the caller (``sqbert_fast.set_num_threads``).
    ``work_dir``: where exported files go (a temporary directory, removed by ``close()``, if None).
    """
    device = torch.device(device)
    why = reasons(provider, precision, device)
    if why:
        raise Unavailable("; ".join(why))
    if precision == "int8" and provider in INT8_PEERS:
        # the peer's own int8 recipe; OpenVINO + NNCF calibrate on real sentences (corpus.real_sentences)
        calibration = options.pop("calibration", None)
        if calibration is None:
            from .corpus import real_sentences

            calibration = real_sentences(options.pop("calibration_n", INT8_CALIBRATION_N))
        return prepare_int8(provider, model_dir, calibration=calibration, threads=threads, work_dir=work_dir, **options)
    fn = _PREPARERS.get(provider, _prepare_sqbert)
    return fn(provider, model_dir, precision, device=device, threads=threads, work_dir=work_dir, **options)


# ---- helpers ----------------------------------------------------------------------------------
class _Timer:
    def __init__(self, setup: dict, phase: str):
        self.setup, self.phase = setup, phase

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.setup[self.phase] = self.setup.get(self.phase, 0.0) + time.perf_counter() - self.t0
        return False


def _load_hf(model_dir: str, dtype: torch.dtype, device: torch.device):
    import transformers

    _refuse_int8_checkpoint(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.SqueezeBertModel.from_pretrained(model_dir, dtype=dtype)
    return model.to(device).eval()


class _LastHidden(torch.nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state: the signature every exported graph gets."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _example_inputs(config, batch: int = 2, seq: int = 16):
    seq = min(seq, config.max_position_embeddings)
    ids = torch.randint(1, config.vocab_size, (batch, seq))
    mask = torch.ones_like(ids)
    mask[-1, seq // 2:] = 0
    return ids, mask


def _work_dir(work_dir, provider):
    if work_dir is not None:
        os.makedirs(work_dir, exist_ok=True)
        return work_dir, None
    tmp = tempfile.mkdtemp(prefix=f"sqbert_fast-{provider}-")
    return tmp, (lambda: shutil.rmtree(tmp, ignore_errors=True))


# ---- sqbert_fast backends ---------------------------------------------------------------------
def split_isa(provider: str) -> tuple[str, Optional[str]]:
    """"cpu-avx2" -> ("cpu", "avx2"); "cpu" -> ("cpu", None)."""
    if provider.startswith("cpu-"):
        return "cpu", provider[4:]
    return provider, None


def cpu_isas() -> list[str]:
    """ISA variants of the cpu backend this machine can run (built and supported by the CPU)."""
    try:
        from . import _C
    except ImportError:
        return []
    return list(_C.cpu_info().get("usable_isas", []))


class _forced_isa:
    """SQBERT_FAST_FORCE_CPU_ISA=isa while the cpu runner is built (it reads the ISA once, at construction)."""

    def __init__(self, isa: Optional[str]):
        self.isa = isa

    def __enter__(self):
        self.old = os.environ.get("SQBERT_FAST_FORCE_CPU_ISA")
        if self.isa is not None:
            os.environ["SQBERT_FAST_FORCE_CPU_ISA"] = self.isa

    def __exit__(self, *exc):
        if self.isa is not None:
            if self.old is None:
                os.environ.pop("SQBERT_FAST_FORCE_CPU_ISA", None)
            else:
                os.environ["SQBERT_FAST_FORCE_CPU_ISA"] = self.old
        return False


def _prepare_sqbert(provider, model_dir, precision, *, device, threads, work_dir, **options):
    from .modeling import SqueezeBertModel

    backend, isa = split_isa(provider)
    setup: dict = {}
    with _Timer(setup, "load"), _forced_isa(isa):
        model = SqueezeBertModel.from_pretrained(model_dir, backend=backend, dtype=_DTYPES[precision], device=device)
        runner = model._get_runner()  # pack weights now, not in the first timed call

    def run(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    notes = []
    if getattr(runner, "isa", None):
        notes.append(f"isa={runner.isa}")
    if getattr(runner, "int8_isa", None):
        notes.append(f"int8={runner.int8_isa}, attention {runner.attention_precision}")
    return Prepared(provider, precision, device, run, setup, notes)


# ---- transformers eager and torch.compile -----------------------------------------------------
def _prepare_transformers(provider, model_dir, precision, *, device, threads, work_dir, **options):
    setup: dict = {}
    with _Timer(setup, "load"):
        model = _load_hf(model_dir, _DTYPES[precision], device)

    @torch.inference_mode()
    def run(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Prepared(provider, precision, device, run, setup, [f"attn_implementation={model.config._attn_implementation}"])


def _prepare_compile(provider, model_dir, precision, *, device, threads, work_dir, **options):
    setup: dict = {}
    with _Timer(setup, "load"):
        model = _load_hf(model_dir, _DTYPES[precision], device)
    mode = options.get("compile_mode")  # None = torch.compile's default
    with _Timer(setup, "wrap"):
        compiled = torch.compile(model, mode=mode)

    @torch.inference_mode()
    def run(input_ids, attention_mask):
        return compiled(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Prepared(provider, precision, device, run, setup,
                    [f"mode={mode or 'default'}; compiles on the first call of each new shape (see first_call_s)"])


# ---- ONNX export (shared by onnxruntime, and openvino's fallback) -----------------------------
def export_onnx(model_dir: str, path: str, exporter: str = "auto", hf_model=None) -> tuple[str, list[str]]:
    """Export transformers' SqueezeBertModel (fp32) to ``path`` with dynamic batch and sequence axes.

    ``exporter``: "dynamo" (torch.onnx's default since torch 2.9, torch.export based), "legacy"
    (TorchScript), or "auto" (dynamo, legacy if it fails). Returns (exporter used, notes).
    """
    model = hf_model if hf_model is not None else _load_hf(model_dir, torch.float32, torch.device("cpu"))
    wrapped = _LastHidden(model).eval()
    ids, mask = _example_inputs(model.config)
    names = dict(input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])
    notes: list[str] = []
    order = {"auto": ["dynamo", "legacy"], "dynamo": ["dynamo"], "legacy": ["legacy"]}[exporter]
    errors = []
    for which in order:
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                if which == "dynamo":
                    batch = torch.export.Dim("batch", max=4096)
                    seq = torch.export.Dim("seq", max=model.config.max_position_embeddings)
                    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
                    torch.onnx.export(wrapped, (ids, mask), path, dynamo=True, dynamic_shapes=dyn,
                                      verbose=False, **names)
                else:
                    axes = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "last_hidden_state")}
                    torch.onnx.export(wrapped, (ids, mask), path, dynamo=False, opset_version=17,
                                      dynamic_axes=axes, **names)
            notes.append(f"exporter={which}")
            if errors:
                notes.append("; ".join(errors))
            return which, notes
        except Exception as e:  # noqa: BLE001 - any exporter failure moves on to the next exporter
            errors.append(f"{which} exporter failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    raise Unavailable("ONNX export failed: " + "; ".join(errors))


def _ort_optimize(src: str, dst: str, config) -> list[str]:
    """onnxruntime's transformer optimizer; returns what it fused (or why it was not applied)."""
    try:
        from onnxruntime.transformers import optimizer
    except Exception as e:  # noqa: BLE001 - optimizer module is optional inside onnxruntime wheels
        return [f"transformer optimizer not applied: {type(e).__name__}: {e}"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(src, model_type="bert", num_heads=config.num_attention_heads,
                                           hidden_size=config.hidden_size)
            stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
            opt.save_model_to_file(dst)
    except Exception as e:  # noqa: BLE001
        return [f"transformer optimizer failed, running the unoptimised graph: {type(e).__name__}: {e}"]
    fused = ", ".join(f"{k} x{v}" for k, v in sorted(stats.items())) or "nothing"
    notes = [f"transformer optimizer fused: {fused}"]
    if not stats.get("Attention") and not stats.get("MultiHeadAttention"):
        notes.append("no Attention fusion: SqueezeBERT's Conv1d Q/K/V do not match onnxruntime's BERT attention pattern")
    return notes


# ---- onnxruntime ------------------------------------------------------------------------------
def _ort_session(path: str, threads: Optional[int], spinning: Optional[bool]):
    """(InferenceSession on the CPU EP, a note saying how): all graph optimizations, ``threads`` intra-op threads,
    and the pool's spinning set when ``spinning`` is not None."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if spinning is not None:
        # onnxruntime's pool busy-waits after a run by default; when engines are timed in turns
        # on the same cores that spinning would be charged to whoever runs next
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, (f"onnxruntime {ort.__version__}, CPUExecutionProvider, intra_op_threads={threads or 'default'}"
                  + ("" if spinning is None else f", spinning={'on' if spinning else 'off'}"))


def _ort_export(model_dir: str, hf, wd: str, setup: dict, options: dict, optimize) -> tuple[str, list[str]]:
    """``hf`` exported to ONNX in ``wd``, then onnxruntime's transformer optimizer (``optimize(src, dst, config)``)
    unless ``options["optimize"]`` is False: (the file to load, notes)."""
    raw = os.path.join(wd, "model.onnx")
    with _Timer(setup, "export"):
        _, notes = export_onnx(model_dir, raw, options.get("exporter", "auto"), hf_model=hf)
    if not options.get("optimize", True):
        return raw, notes + ["transformer optimizer off"]
    opt = os.path.join(wd, "model.opt.onnx")
    with _Timer(setup, "optimize"):
        notes += optimize(raw, opt, hf.config)
    return (opt if os.path.exists(opt) else raw), notes


def _ort_run(sess):
    """(input_ids, attention_mask) -> last_hidden_state through an InferenceSession."""
    def run(input_ids, attention_mask):
        out = sess.run(["last_hidden_state"], {"input_ids": input_ids.cpu().numpy().astype("int64", copy=False),
                                                "attention_mask": attention_mask.cpu().numpy().astype("int64", copy=False)})
        return torch.from_numpy(out[0])

    return run


def _prepare_ort(provider, model_dir, precision, *, device, threads, work_dir, **options):
    setup: dict = {}
    wd, cleanup = _work_dir(work_dir, provider)
    with _Timer(setup, "load"):
        hf = _load_hf(model_dir, torch.float32, torch.device("cpu"))
    path, notes = _ort_export(model_dir, hf, wd, setup, options, _ort_optimize)
    with _Timer(setup, "session"):
        sess, note = _ort_session(path, threads, options.get("ort_spinning"))
    notes.append(note)
    return Prepared(provider, precision, device, _ort_run(sess), setup, notes, close=cleanup)


# ---- openvino ---------------------------------------------------------------------------------
def _prepare_openvino(provider, model_dir, precision, *, device, threads, work_dir, **options):
    import openvino as ov

    setup: dict = {}
    notes: list[str] = []
    cleanup = None
    with _Timer(setup, "load"):
        hf = _load_hf(model_dir, torch.float32, torch.device("cpu"))
    source = options.get("ov_source", "torch")
    ov_model = None
    if source == "torch":
        with _Timer(setup, "convert"):
            try:
                ids, mask = _example_inputs(hf.config)
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    ov_model = ov.convert_model(_LastHidden(hf).eval(),
                                                example_input={"input_ids": ids, "attention_mask": mask})
                notes.append("ov.convert_model from the torch model")
            except Exception as e:  # noqa: BLE001 - fall back to the ONNX route
                notes.append(f"convert from torch failed ({type(e).__name__}: {str(e)[:160]}); using ONNX")
    if ov_model is None:
        wd, cleanup = _work_dir(work_dir, provider)
        path = os.path.join(wd, "model.onnx")
        with _Timer(setup, "export"):
            _, n = export_onnx(model_dir, path, options.get("exporter", "auto"), hf_model=hf)
            notes += n
        with _Timer(setup, "convert"):
            ov_model = ov.convert_model(path)
            notes.append("ov.convert_model from the ONNX file")
    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    hint = {"fp32": "f32", "bf16": "bf16"}.get(precision)
    if hint:
        cfg["INFERENCE_PRECISION_HINT"] = hint
    with _Timer(setup, "compile"):
        compiled = core.compile_model(ov_model, "CPU", cfg)
    actual = compiled.get_property("INFERENCE_PRECISION_HINT")
    actual = actual.to_string() if hasattr(actual, "to_string") else str(actual)
    notes.append(f"openvino {ov.get_version().split('-')[0]}, INFERENCE_PRECISION_HINT asked={hint or 'default'} "
                 f"actual={actual}, threads={threads or 'default'}")
    request = compiled.create_infer_request()
    out_port = compiled.outputs[0]
    names = [p.get_any_name() for p in compiled.inputs]

    def run(input_ids, attention_mask):
        feed = {"input_ids": input_ids.cpu().numpy().astype("int64", copy=False),
                "attention_mask": attention_mask.cpu().numpy().astype("int64", copy=False)}
        res = request.infer({n: feed[n] for n in names})
        return torch.from_numpy(res[out_port].copy())

    return Prepared(provider, precision, device, run, setup, notes, close=cleanup)


_PREPARERS = {
    "transformers": _prepare_transformers,
    "torch.compile": _prepare_compile,
    "onnxruntime": _prepare_ort,
    "openvino": _prepare_openvino,
}


def versions() -> dict[str, str]:
    """Versions of everything a benchmark result depends on (missing packages are left out)."""
    out = {"torch": torch.__version__}
    for name in ("sqbert_fast", "transformers", "onnxruntime", "onnx", "openvino", "numpy"):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception as e:  # noqa: BLE001 - a broken optional install is reported, not fatal
            out[name] = f"broken: {type(e).__name__}"
    return out


# ---- int8 peers (issue 19): each with its own best int8 recipe ---------------------------------
INT8_PEERS = ("onnxruntime", "openvino")
INT8_CALIBRATION_N = 300  # sentences NNCF calibrates on in the benchmark (as sqbert_fast.int8_eval)
_INT8_PACKAGES = {"onnxruntime": ("transformers", "onnx", "onnxruntime"), "openvino": ("transformers", "openvino", "nncf")}


class _Conv1x1AsMatMul(torch.nn.Module):
    """A 1x1 Conv1d (NCW, any groups) as token-major MatMuls with constant weights, one per group, so ONNX Runtime's
    dynamic quantizer turns them into MatMulInteger (it turns a grouped Conv into ConvInteger, 3-4x slower than its
    own fp32 Conv)."""

    def __init__(self, conv: torch.nn.Conv1d):
        super().__init__()
        g = conv.groups
        w = conv.weight.detach()[:, :, 0]                       # [out, in/g]
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(part.t().contiguous(), requires_grad=False) for part in w.chunk(g, 0))  # [in/g, out/g]
        self.bias = torch.nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x):                                        # [B, C, S] -> [B, out, S]
        xt = x.transpose(1, 2)
        if len(self.weights) == 1:
            y = torch.matmul(xt, self.weights[0])
        else:
            y = torch.cat([torch.matmul(part, w) for part, w in zip(xt.chunk(len(self.weights), -1), self.weights)], -1)
        return (y + self.bias).transpose(1, 2)


def convs_as_matmuls(hf_model) -> int:
    """Replace every 1x1 Conv1d of a transformers SqueezeBERT model by ``_Conv1x1AsMatMul`` in place (same outputs up
    to fp32 rounding); returns how many were replaced."""
    targets = [(parent, name, mod) for parent in hf_model.modules() for name, mod in parent.named_children()
               if isinstance(mod, torch.nn.Conv1d) and mod.kernel_size == (1,)]
    for parent, name, mod in targets:
        setattr(parent, name, _Conv1x1AsMatMul(mod))
    return len(targets)


def _tokenized(model_dir: str, texts, max_length: int = 128):
    from .tokenization import SqueezeBertTokenizerFast

    tok = SqueezeBertTokenizerFast.from_pretrained(model_dir)
    return [tok([t], truncation=True, max_length=max_length, return_tensors="np") for t in texts]


def int8_reasons(provider: str) -> list[str]:
    """Why ``prepare_int8(provider, ...)`` cannot run here (empty: it can)."""
    if provider not in INT8_PEERS:
        return [f"no int8 recipe for {provider!r} (int8 peers: {', '.join(INT8_PEERS)})"]
    return [f"{p} is not installed (pip install {p})" for p in _missing(_INT8_PACKAGES[provider])]


def prepare_int8(provider: str, model_dir: str, *, calibration=None, threads: Optional[int] = None,
                 work_dir: Optional[str] = None, **options) -> Prepared:
    """A peer's int8 model of ``model_dir`` (a float SqueezeBERT checkpoint), with that peer's own int8 recipe:

    - ``onnxruntime``: transformers' model with every 1x1 conv rewritten as MatMuls (``convs_as_matmuls``),
      exported to ONNX, the transformer optimizer, then ``onnxruntime.quantization.quantize_dynamic`` (int8 weights
      per channel, activations quantized per tensor on the fly: MatMulInteger). No calibration.
    - ``openvino``: ``ov.convert_model`` of transformers' model, then NNCF post-training quantization
      (``nncf.quantize``, ``ModelType.TRANSFORMER``) calibrated on ``calibration`` (a list of sentences; tokenized
      with the checkpoint's tokenizer), compiled with ``INFERENCE_PRECISION_HINT`` ``options["ov_precision"]``
      (default f32: what is not int8 stays fp32, as in sqbert_fast's int8; "default" lets OpenVINO pick, bf16 on
      AMX CPUs).
    Returns a ``Prepared`` (precision "int8"); raises ``Unavailable`` if the peer is missing.
    """
    why = int8_reasons(provider)
    if why:
        raise Unavailable("; ".join(why))
    fn = {"onnxruntime": _prepare_ort_int8, "openvino": _prepare_openvino_int8}[provider]
    return fn(model_dir, calibration=calibration, threads=threads, work_dir=work_dir, **options)


def _prepare_ort_int8(model_dir, *, calibration, threads, work_dir, **options):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    setup: dict = {}
    wd, cleanup = _work_dir(work_dir, "onnxruntime-int8")
    with _Timer(setup, "load"):
        hf = _load_hf(model_dir, torch.float32, torch.device("cpu"))
        n = convs_as_matmuls(hf)
    src, notes = _ort_export(model_dir, hf, wd, setup, options, _ort_optimize_int8)
    notes.insert(0, f"{n} Conv1d rewritten as MatMul (token-major, one per group)")
    dst = os.path.join(wd, "model.int8.onnx")
    per_channel = options.get("per_channel", True)
    with _Timer(setup, "quantize"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx

        # DefaultTensorType: the legacy exporter's graphs leave some MatMul outputs untyped for the quantizer
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    notes.append(f"quantize_dynamic: MatMul/Attention, weights QInt8 {'per channel' if per_channel else 'per tensor'}, "
                 "activations per tensor (dynamic)")
    with _Timer(setup, "session"):
        sess, note = _ort_session(dst, threads, options.get("ort_spinning"))
    ops = sorted({node.op_type for node in onnx.load(dst, load_external_data=False).graph.node
                  if "Integer" in node.op_type or node.op_type.startswith(("QAttention", "DynamicQuantize"))})
    notes.append(f"{note}; int8 ops: {', '.join(ops) or 'none'}")
    return Prepared("onnxruntime", "int8", torch.device("cpu"), _ort_run(sess), setup, notes, close=cleanup)


def _ort_optimize_int8(src: str, dst: str, config) -> list[str]:
    """onnxruntime's transformer optimizer before quantize_dynamic, without EmbedLayerNormalization: on the legacy
    exporter's SqueezeBERT graph that fusion plus quantization gave cosine 0.51 to fp32 (0.993 without it)."""
    try:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        opts = FusionOptions("bert")
        opts.enable_embed_layer_norm = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(src, model_type="bert", num_heads=config.num_attention_heads,
                                           hidden_size=config.hidden_size, optimization_options=opts)
            stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
            opt.save_model_to_file(dst)
    except Exception as e:  # noqa: BLE001 - the optimizer is optional; quantize the unoptimised graph
        return [f"transformer optimizer not applied: {type(e).__name__}: {e}"]
    return ["transformer optimizer (EmbedLayerNormalization off) fused: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(stats.items())) or "nothing")]


def _prepare_openvino_int8(model_dir, *, calibration, threads, work_dir, **options):
    import nncf
    import openvino as ov

    if not calibration:
        raise Unavailable("openvino int8 (NNCF post-training quantization) needs calibration sentences")
    setup: dict = {}
    with _Timer(setup, "load"):
        hf = _load_hf(model_dir, torch.float32, torch.device("cpu"))
    with _Timer(setup, "convert"), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ids, mask = _example_inputs(hf.config)
        ov_model = ov.convert_model(_LastHidden(hf).eval(), example_input={"input_ids": ids, "attention_mask": mask})
    names = [p.get_any_name() for p in ov_model.inputs]
    max_length = min(options.get("max_length", 128), hf.config.max_position_embeddings)  # within the positions
    items = [{k: enc[k].astype("int64") for k in ("input_ids", "attention_mask")} for enc in
             _tokenized(model_dir, calibration, max_length)]
    with _Timer(setup, "quantize"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nncf.set_log_level(40)
        q_model = nncf.quantize(ov_model, nncf.Dataset(items, lambda d: {n: d[n] for n in names}),
                                model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items))
    precision = options.get("ov_precision", "f32")
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if precision != "default":
        cfg["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    with _Timer(setup, "compile"):
        compiled = ov.Core().compile_model(q_model, "CPU", cfg)
    fq = sum(op.get_type_name() == "FakeQuantize" for op in q_model.get_ops())
    notes = [f"nncf {nncf.__version__} quantize (ModelType.TRANSFORMER, {len(items)} calibration sentences): "
             f"{fq} FakeQuantize; openvino {ov.get_version().split('-')[0]}, INFERENCE_PRECISION_HINT={precision}"]
    request = compiled.create_infer_request()
    out_port = compiled.outputs[0]

    def run(input_ids, attention_mask):
        feed = {"input_ids": input_ids.cpu().numpy().astype("int64", copy=False),
                "attention_mask": attention_mask.cpu().numpy().astype("int64", copy=False)}
        res = request.infer({n: feed[n] for n in names})
        return torch.from_numpy(res[out_port].copy())

    return Prepared("openvino", "int8", torch.device("cpu"), run, setup, notes)


def _refuse_int8_checkpoint(model_dir: str) -> None:
    """transformers cannot load an sqbert_fast int8 checkpoint (int8 conv weights + weight_scale tensors): say so."""
    import json

    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            q = json.load(f).get("quantization")
    except (OSError, ValueError, AttributeError):
        return
    if q is not None:
        raise Unavailable(f"{model_dir} is an sqbert_fast int8 checkpoint (config.json 'quantization' block): "
                          "transformers, and the peers built on it, cannot load it; give them the float checkpoint it "
                          "was quantized from (int8 peers quantize it their own way: peers.prepare_int8)")
