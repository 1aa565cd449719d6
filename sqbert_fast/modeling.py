"""The six SqueezeBERT model classes, with transformers' names, arguments and outputs.

Parameters are held in modules whose state_dict keys are exactly transformers' (so checkpoints
move both ways unchanged), but no transformers code runs: ``forward`` validates and packs the
inputs (``packing.py``), hands packed token rows to the selected backend's runner (the fused
kernels), unpacks at the edge and applies the small task heads here.

These are inference models: forward always runs without autograd and without dropout.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

from . import backends as _backends
from .backends.base import weights_version
from .activations import activation
from .config import INT8_MODULES, INT8_TRANSFORMERS_GUARD, SqueezeBertConfig, int8_quantization_block
from .outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .packing import Packed, pack


class _RunnerKey(NamedTuple):
    """What a cached runner was built for (``_get_runner``)."""

    backend: str
    device: torch.device
    dtype: torch.dtype
    weights: Any  # weights_version(base_model)


logger = logging.getLogger("sqbert_fast")


# ---- parameter containers (transformers' module names, no forward of their own) --------------
class _Embeddings(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.embedding_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.embedding_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class _SelfAttention(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        h = c.hidden_size
        self.query = nn.Conv1d(h, h, 1, groups=c.q_groups)
        self.key = nn.Conv1d(h, h, 1, groups=c.k_groups)
        self.value = nn.Conv1d(h, h, 1, groups=c.v_groups)


class _ConvLayerNorm(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.conv1d = nn.Conv1d(cin, cout, 1, groups=groups)
        self.layernorm = nn.LayerNorm(cout, eps=1e-12)


class _ConvActivation(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.conv1d = nn.Conv1d(cin, cout, 1, groups=groups)


class _Module(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        h, i = c.hidden_size, c.intermediate_size
        self.attention = _SelfAttention(c)
        self.post_attention = _ConvLayerNorm(h, h, c.post_attention_groups)
        self.intermediate = _ConvActivation(h, i, c.intermediate_groups)
        self.output = _ConvLayerNorm(i, h, c.output_groups)


class _Encoder(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.layers = nn.ModuleList(_Module(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class _PredictionHeadTransform(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class _LMPredictionHead(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.transform = _PredictionHeadTransform(c)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.decoder.bias = self.bias


class _OnlyMLMHead(nn.Module):
    def __init__(self, c: SqueezeBertConfig):
        super().__init__()
        self.predictions = _LMPredictionHead(c)


@contextlib.contextmanager
def _no_init():
    """torch.nn's parameter initializers as no-ops while a model is built on the meta device for loading (as
    transformers' ``no_init_weights``): their values are never read, and the first one run on a meta tensor
    imports torch._dynamo, 1.5 s of every process's start-up (``sqbert-fast score`` took 3.4 s to start)."""
    names = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "kaiming_uniform_",
             "kaiming_normal_", "xavier_uniform_", "xavier_normal_")
    saved = {n: getattr(nn.init, n) for n in names if hasattr(nn.init, n)}
    try:
        for n in saved:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


# ---- base class: loading, saving, backend management -------------------------------------------
class SqueezeBertPreTrainedModel(nn.Module):
    config_class = SqueezeBertConfig
    base_model_prefix = "transformer"
    _tied_keys: tuple = ()
    # head parameters that may be missing from a checkpoint (freshly initialised, as transformers)
    _head_prefixes: tuple = ()

    def __init__(self, config: SqueezeBertConfig, backend: str = "auto"):
        super().__init__()
        if not isinstance(config, SqueezeBertConfig):
            raise TypeError(f"config must be a SqueezeBertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self._backend_name = backend
        self._runner = None
        self._runner_key = None

    # -- weights init (same distributions as transformers) --
    def _init_weights(self) -> None:
        std = self.config.initializer_range
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Conv1d)):
                    m.weight.normal_(0.0, std)
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.Embedding):
                    m.weight.normal_(0.0, std)
                    if m.padding_idx is not None:
                        m.weight[m.padding_idx].zero_()
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            for m in self.modules():
                if isinstance(m, _LMPredictionHead):
                    m.bias.zero_()

    def post_init(self) -> None:
        if not any(p.is_meta for p in self.parameters()):
            self._init_weights()
        self.tie_weights()
        self.eval()

    def tie_weights(self) -> None:
        pass

    @property
    def base_model(self) -> "SqueezeBertModel":
        return getattr(self, self.base_model_prefix, self)

    # -- backends --
    @property
    def backend(self) -> str:
        """Name of the backend that runs this model on its current device and dtype."""
        return self._get_runner_backend().name

    @property
    def backend_reason(self) -> str:
        """Why that backend: the measurement or rule ``backend="auto"`` went by, or that it was asked for."""
        device, dtype = self._device_dtype()
        return _backends.select_with_reason(self._backend_name, device, dtype)[1]

    def set_backend(self, backend: str) -> "SqueezeBertPreTrainedModel":
        self._backend_name = backend
        self._runner = None
        self._get_runner()  # fail now, not at the first call
        return self

    def _device_dtype(self):
        """(device, compute dtype): the dtype of the GEMM weights (see ``backends.base.compute_dtype``)."""
        base = self.base_model
        p = base.embeddings.word_embeddings.weight
        layers = base.encoder.layers
        return p.device, (layers[0].attention.query.weight.dtype if len(layers) else p.dtype)

    def _gemm_weights_to(self, dtype: torch.dtype) -> None:
        """Stores only the GEMM weights (every conv of the encoder and the pooler's dense) in `dtype`;
        embeddings, LayerNorms, biases and the task heads stay as they are (fp32)."""
        base = self.base_model
        mods = [m for layer in base.encoder.layers
                for m in (layer.attention.query, layer.attention.key, layer.attention.value,
                          layer.post_attention.conv1d, layer.intermediate.conv1d, layer.output.conv1d)]
        if base.pooler is not None:
            mods.append(base.pooler.dense)
        self._runner = None
        with torch.no_grad():
            for m in mods:
                m.weight = nn.Parameter(m.weight.to(dtype), requires_grad=m.weight.requires_grad)

    # -- int8 (sqbert_fast/quantization.py) --
    def _int8_convs(self) -> list[tuple[str, nn.Conv1d]]:
        """(name relative to the base model, module) of the six GEMM convs of every encoder layer: what int8
        quantizes. Embeddings, LayerNorms, biases, the pooler's dense and the task heads stay fp32."""
        out = []
        for i, layer in enumerate(self.base_model.encoder.layers):
            for rel in INT8_MODULES:
                mod = layer
                for part in rel.split("."):
                    mod = getattr(mod, part)
                out.append((f"encoder.layers.{i}.{rel}", mod))
        return out

    @property
    def is_int8(self) -> bool:
        """True when the encoder's convs hold int8 weights (``quantize_int8``, or an int8 checkpoint)."""
        convs = self._int8_convs()
        return bool(convs) and convs[0][1].weight.dtype == torch.int8

    @property
    def quantization(self) -> Optional[dict]:
        """The ``quantization`` block of an int8 model's config (what its int8 tensors are), None for a float model."""
        return getattr(self.config, "quantization", None) if self.is_int8 else None

    def quantize_int8(self) -> "SqueezeBertPreTrainedModel":
        """Quantizes the six GEMM convs of every layer in place (``quantization.quantize_weight``): each conv's
        ``weight`` becomes an int8 Parameter [out, in/groups, 1] (requires_grad=False) and a buffer
        ``weight_scale`` (fp32 [out]) is registered beside it, so ``state_dict()`` holds the int8 tensors and
        their scales, and ``save_pretrained`` writes an int8 checkpoint. Everything else stays fp32.
        Activations are quantized per token on the fly by the backend. A no-op on an int8 model."""
        from .quantization import quantize_weight

        if self.is_int8:
            return self
        convs = self._int8_convs()
        bad = [(n, m.weight.dtype) for n, m in convs if not m.weight.dtype.is_floating_point]
        if bad:
            raise ValueError(f"cannot quantize: {bad[0][0]}.weight has dtype {bad[0][1]}")
        self._runner = None
        with torch.no_grad():
            for _, m in convs:
                q, scale = quantize_weight(m.weight)
                m.weight = nn.Parameter(q.to(m.weight.device), requires_grad=False)
                m.register_buffer("weight_scale", scale.to(m.weight.device))
        self.config.quantization = int8_quantization_block()
        self.config.quantization_config = dict(INT8_TRANSFORMERS_GUARD)  # makes transformers refuse the checkpoint
        return self

    def _int8_layout(self) -> None:
        """Gives the convs of a model built on the meta device the int8 checkpoint's tensors (int8 weight,
        fp32 weight_scale), so loading an int8 checkpoint checks and assigns them like any other tensor."""
        for _, m in self._int8_convs():
            m.weight = nn.Parameter(torch.empty(m.weight.shape, dtype=torch.int8, device=m.weight.device),
                                    requires_grad=False)
            m.register_buffer("weight_scale", torch.empty(m.weight.shape[0], device=m.weight.device))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """torch's load_state_dict, refusing float weights for an int8 conv (copying them in would cast
        them to int8 silently) and int8 weights for a float one."""
        own = self.state_dict(keep_vars=True)
        for k, v in state_dict.items():
            mine = own.get(k)
            if mine is None or not isinstance(v, torch.Tensor) or (mine.dtype == torch.int8) == (v.dtype == torch.int8):
                continue
            if mine.dtype == torch.int8:
                raise ValueError(f"{k}: this model is int8 (quantize_int8 / an int8 checkpoint) and the state_dict "
                                 f"holds {v.dtype} weights; load them into a float model, then call quantize_int8()")
            raise ValueError(f"{k}: the state_dict holds int8 weights (an int8 model's) and this model is float; "
                             "call quantize_int8() first, then load it")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _get_runner_backend(self):
        device, dtype = self._device_dtype()
        return _backends.select(self._backend_name, device, dtype)

    def _get_runner(self):
        """The runner for the current weights, rebuilt when the backend or any parameter changed.

        Device and dtype are read from the parameters only then: both change only with a
        parameter's storage, which moves its data_ptr (weights_version), or through ``.to()``
        (``_apply`` drops the runner). A call costs one pass over the parameters (``weights_version``)."""
        version = weights_version(self.base_model)
        key = self._runner_key
        if (self._runner is None or key is None or key.backend != self._backend_name or key.weights != version
                or self._runner.stale()):
            device, dtype = self._device_dtype()
            self._runner = self._get_runner_backend().make_runner(self.base_model)
            self._runner_key = _RunnerKey(self._backend_name, device, dtype, version)
        return self._runner

    def refresh_weights(self) -> "SqueezeBertPreTrainedModel":
        """Re-reads every parameter on the next call (drops the backend's packed copies).

        Edits are noticed by themselves when they replace a parameter, go through an in-place op on it
        (``load_state_dict``, ``p.mul_()`` under ``no_grad``), ``.to()``, or, on the cpu backend, change any
        output channel's sampled element through ``.data``. Call this after an edit through ``.data`` of a
        model on a GPU backend, or of a few single elements."""
        self._runner = None
        return self

    def __getstate__(self):
        # The native runner (packed weights, C++ objects) is a cache: rebuilt on the first call after
        # unpickling or deepcopy, from the parameters, which carry everything.
        state = dict(super().__getstate__())
        state["_runner"] = None
        state["_runner_key"] = None
        state.pop("_sqf_param_list", None)
        return state

    def _prepare_backend(self, defer_gpu: bool) -> None:
        try:
            self._get_runner()
        except RuntimeError:
            gpu_backend = self._backend_name in ("cuda", "triton")
            if not (defer_gpu and gpu_backend and self._device_dtype()[0].type == "cpu" and torch.cuda.is_available()):
                raise

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .half() ... drop packed weights
        self._runner = None
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        if mode:
            logger.warning("sqbert_fast models are inference-only; train() has no effect on forward")
        return super().train(mode)

    # -- loading / saving --
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, backend: str = "auto",
                        dtype: Optional[torch.dtype | str] = None, torch_dtype=None, config: Optional[SqueezeBertConfig] = None,
                        output_loading_info: bool = False, revision: Optional[str] = None,
                        device: Optional[torch.device | str] = None, **config_kwargs: Any):
        """Load from a local directory (config.json + model.safetensors / pytorch_model.bin) or a hub id.

        ``dtype=torch.int8`` (or "int8") quantizes the six GEMM convs of every layer on load (``quantize_int8``);
        an int8 checkpoint (config.json with a ``quantization`` block, written by ``sqbert-fast quantize`` or
        ``save_pretrained`` of an int8 model) loads as int8 with no argument, and refuses a float ``dtype``.

        The backend is chosen and the weights handed to it here, once. A GPU backend named for a model
        loaded on the CPU (``from_pretrained(p, backend="cuda").to("cuda")``) is checked when the model
        reaches the GPU; pass ``device="cuda"`` to load straight there.
        """
        from .hub import resolve_model_dir
        from .weights import load_checkpoint_into

        path = resolve_model_dir(pretrained_model_name_or_path, revision=revision)
        if config is None:
            config = SqueezeBertConfig.from_pretrained(path, **config_kwargs)
        dtype = _resolve_dtype(dtype if dtype is not None else torch_dtype)
        if config.is_int8 and dtype not in (None, torch.int8):
            raise ValueError(f"{path} is an int8 checkpoint (config.json: quantization method "
                             f"{config.quantization['method']!r}); it holds no {dtype} weights to load: load the "
                             "float checkpoint it was quantized from for that (dequantizing would not give it back)")
        with torch.device("meta"), _no_init():
            model = cls(config, backend=backend)
        if config.is_int8:
            model._int8_layout()
        info = load_checkpoint_into(model, path)
        if device is not None:
            model.to(device=device)
        if dtype == torch.int8:
            # int8 (sqbert_fast/quantization.py): the six convs of every layer quantized now, per output channel;
            # embeddings, LayerNorms, biases, pooler and heads stay fp32. A no-op for an int8 checkpoint.
            model.quantize_int8()
        elif dtype is not None:
            if dtype in (torch.bfloat16, torch.float16) and model._device_dtype()[0].type == "cpu":
                # CPU engines' reduced precision (as OpenVINO's and ONNX Runtime's bf16): only the GEMM
                # weights are rounded; fp32 embeddings halve the error (bf16 word embeddings alone cost
                # ~4e-3 on the default config) for 2 more bytes per embedding parameter.
                model._gemm_weights_to(dtype)
            else:
                model.to(dtype=dtype)
        model.eval()
        model._prepare_backend(defer_gpu=device is None)
        if output_loading_info:
            return model, info
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True) -> None:
        from .weights import save_checkpoint

        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(save_directory)
        save_checkpoint(self, save_directory, safe_serialization=safe_serialization)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    # -- the shared encoder call --
    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                output_attentions, output_hidden_states, want_pooled: bool):
        base = self.base_model
        runner = self._get_runner()
        device, dtype = self._runner_key.device, self._runner_key.dtype
        packed = pack(self.config, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, device=device)
        if packed.inputs_embeds is not None:
            packed.inputs_embeds = packed.inputs_embeds.to(torch.float32 if dtype == torch.int8 else dtype)
        enc = runner.encode(packed, bool(output_hidden_states), bool(output_attentions), want_pooled and base.pooler is not None)
        hidden = tuple(packed.unpack(h) for h in enc.hidden_states) if output_hidden_states else None
        attentions = None
        if output_attentions:
            attentions = tuple(packed.unpack_scores(s, self.config.num_attention_heads) for s in enc.scores)
        return packed, enc, hidden, attentions


def _resolve_dtype(dtype):
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, str):
        names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                 "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "int8": torch.int8}
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r} (use one of {', '.join(names)})")
        return names[dtype]
    if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype == torch.int8):
        raise ValueError(f"dtype must be a floating point torch.dtype or torch.int8, got {dtype!r}")
    return dtype


def _like(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Heads run in their weights' dtype (a backend may return fp32 activations for a bf16 model)."""
    return x if x.dtype == weight.dtype else x.to(weight.dtype)


def _return(return_dict, config, output_cls, fields: dict):
    return_dict = return_dict if return_dict is not None else getattr(config, "return_dict", True)
    out = output_cls(**fields)
    return out if return_dict else out.to_tuple()


class SqueezeBertModel(SqueezeBertPreTrainedModel):
    base_model_prefix = ""

    def __init__(self, config: SqueezeBertConfig, backend: str = "auto", add_pooling_layer: bool = True):
        super().__init__(config, backend)
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    @torch.no_grad()
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None, **kwargs):
        packed, enc, hidden, attentions = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions, output_hidden_states, want_pooled=True)
        return _return(return_dict, self.config, BaseModelOutputWithPooling, dict(
            last_hidden_state=packed.unpack(enc.last_hidden), pooler_output=enc.pooled,
            hidden_states=hidden, attentions=attentions))


class _WithTransformer(SqueezeBertPreTrainedModel):
    def __init__(self, config: SqueezeBertConfig, backend: str = "auto"):
        super().__init__(config, backend)
        self.transformer = SqueezeBertModel(config, backend=backend)

    def _run_head(self, head, want_pooled: bool, input_ids, attention_mask, token_type_ids, position_ids,
                  inputs_embeds, output_attentions, output_hidden_states):
        """Encode, then apply ``head`` to the pooled output, or to every real token (scattered back to
        [batch, seq, ...]). Returns (logits, hidden_states, attentions)."""
        packed, enc, hidden, attentions = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions, output_hidden_states, want_pooled=want_pooled)
        logits = head(enc.pooled) if want_pooled else packed.unpack(head(enc.last_hidden))
        return logits, hidden, attentions

    def _output(self, return_dict, output_cls, hidden, attentions, **fields):
        return _return(return_dict, self.config, output_cls, dict(fields, hidden_states=hidden, attentions=attentions))


def _linear(head: nn.Linear):
    """``head`` run in its weights' dtype."""
    return lambda x: head(_like(x, head.weight))


def _token_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Cross entropy over every position (labels of -100 ignored)."""
    return CrossEntropyLoss()(logits.view(-1, num_labels), labels.view(-1).to(logits.device))


class SqueezeBertForMaskedLM(_WithTransformer):
    _tied_keys = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
    _head_prefixes = ("cls.",)

    def __init__(self, config: SqueezeBertConfig, backend: str = "auto"):
        super().__init__(config, backend)
        self.cls = _OnlyMLMHead(config)
        self.post_init()

    def tie_weights(self) -> None:
        """The decoder is the word embedding matrix (and its bias cls.predictions.bias)."""
        pred = self.cls.predictions
        pred.decoder.weight = self.transformer.embeddings.word_embeddings.weight
        pred.decoder.bias = pred.bias

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        t, pred = self.cls.predictions.transform, self.cls.predictions
        h = activation(self.config.hidden_act)(F.linear(_like(x, t.dense.weight), t.dense.weight, t.dense.bias))
        h = F.layer_norm(h, (h.shape[-1],), t.LayerNorm.weight, t.LayerNorm.bias, self.config.layer_norm_eps)
        return F.linear(h, pred.decoder.weight, pred.decoder.bias)

    @torch.no_grad()
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        logits, hidden, attentions = self._run_head(
            self._predict, False, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions, output_hidden_states)
        loss = _token_loss(logits, labels, self.config.vocab_size) if labels is not None else None
        return self._output(return_dict, MaskedLMOutput, hidden, attentions, loss=loss, logits=logits)


def _classification_loss(config, num_labels: int, logits: torch.Tensor, labels: torch.Tensor):
    labels = labels.to(logits.device)
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif num_labels > 1 and labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return MSELoss()(logits.squeeze(), labels.squeeze()) if num_labels == 1 else MSELoss()(logits, labels)
    if config.problem_type == "single_label_classification":
        return _token_loss(logits, labels, num_labels)
    return BCEWithLogitsLoss()(logits, labels)


class _NumLabelsHead(_WithTransformer):
    """A transformer and one nn.Linear(hidden_size, num_labels) named _head_name, as in transformers."""
    _head_name = "classifier"
    _head_prefixes = ("classifier.",)

    def __init__(self, config: SqueezeBertConfig, backend: str = "auto"):
        super().__init__(config, backend)
        self.num_labels = config.num_labels
        setattr(self, self._head_name, nn.Linear(config.hidden_size, config.num_labels))
        self.post_init()


class _Classifier(_NumLabelsHead):
    """Sequence classification (the head reads the pooled output) or token classification (every token)."""
    _pooled: bool
    _output_cls: type

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        logits, hidden, attentions = self._run_head(
            _linear(self.classifier), self._pooled, input_ids, attention_mask, token_type_ids, position_ids,
            inputs_embeds, output_attentions, output_hidden_states)
        loss = self._loss(logits, labels) if labels is not None else None
        return self._output(return_dict, self._output_cls, hidden, attentions, loss=loss, logits=logits)


class SqueezeBertForSequenceClassification(_Classifier):
    _pooled, _output_cls = True, SequenceClassifierOutput

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _classification_loss(self.config, self.num_labels, logits, labels)


class SqueezeBertForMultipleChoice(_WithTransformer):
    _head_prefixes = ("classifier.",)

    def __init__(self, config: SqueezeBertConfig, backend: str = "auto"):
        super().__init__(config, backend)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @torch.no_grad()
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        first = input_ids if input_ids is not None else inputs_embeds
        if first is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        if first.dim() != (3 if input_ids is not None else 4):
            raise ValueError("multiple choice inputs must be [batch, num_choices, seq_len]"
                             f"{'' if input_ids is not None else ', hidden'}; got shape {tuple(first.shape)}")
        num_choices = first.shape[1]

        def flat(t, k=1):
            return None if t is None else t.reshape(-1, *t.shape[-k:])

        logits, hidden, attentions = self._run_head(
            _linear(self.classifier), True, flat(input_ids), flat(attention_mask), flat(token_type_ids),
            flat(position_ids), flat(inputs_embeds, 2), output_attentions, output_hidden_states)
        logits = logits.view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels.to(logits.device)) if labels is not None else None
        return self._output(return_dict, MultipleChoiceModelOutput, hidden, attentions, loss=loss, logits=logits)


class SqueezeBertForTokenClassification(_Classifier):
    _pooled, _output_cls = False, TokenClassifierOutput

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _token_loss(logits, labels, self.num_labels)


class SqueezeBertForQuestionAnswering(_NumLabelsHead):
    _head_name = "qa_outputs"
    _head_prefixes = ("qa_outputs.",)

    @torch.no_grad()
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        logits, hidden, attentions = self._run_head(
            _linear(self.qa_outputs), False, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions, output_hidden_states)
        start_logits, end_logits = logits.split(1, dim=-1)
        start_logits = start_logits.squeeze(-1).contiguous()
        end_logits = end_logits.squeeze(-1).contiguous()
        total_loss = None
        if start_positions is not None and end_positions is not None:
            start_positions = start_positions.to(start_logits.device)
            end_positions = end_positions.to(end_logits.device)
            if start_positions.dim() > 1:
                start_positions = start_positions.squeeze(-1)
            if end_positions.dim() > 1:
                end_positions = end_positions.squeeze(-1)
            ignored = start_logits.size(1)
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            total_loss = (loss_fct(start_logits, start_positions.clamp(0, ignored)) +
                          loss_fct(end_logits, end_positions.clamp(0, ignored))) / 2
        return self._output(return_dict, QuestionAnsweringModelOutput, hidden, attentions,
                            loss=total_loss, start_logits=start_logits, end_logits=end_logits)


MODEL_CLASSES = {
    "SqueezeBertModel": SqueezeBertModel,
    "SqueezeBertForMaskedLM": SqueezeBertForMaskedLM,
    "SqueezeBertForSequenceClassification": SqueezeBertForSequenceClassification,
    "SqueezeBertForMultipleChoice": SqueezeBertForMultipleChoice,
    "SqueezeBertForTokenClassification": SqueezeBertForTokenClassification,
    "SqueezeBertForQuestionAnswering": SqueezeBertForQuestionAnswering,
}


def from_transformers(hf_model, backend: str = "auto"):
    """Convert a live transformers SqueezeBert* model (any of the six) into its sqbert_fast twin."""
    name = type(hf_model).__name__
    if name not in MODEL_CLASSES:
        raise TypeError(f"from_transformers expects one of {', '.join(MODEL_CLASSES)}, got {name}")
    cfg_dict = hf_model.config.to_dict()
    config = SqueezeBertConfig.from_dict(cfg_dict)
    cls = MODEL_CLASSES[name]
    with torch.device("meta"):
        model = cls(config, backend=backend)
    state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    from .weights import load_state_dict_into

    load_state_dict_into(model, state, source=f"transformers {name}")
    model.to(hf_model.device)
    model.eval()
    model._prepare_backend(defer_gpu=True)
    return model
