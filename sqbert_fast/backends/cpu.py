"""The cpu backend: the whole encoder in C++ (``sqbert_fast._C``), weights handed over once.

The C++ Encoder packs the conv weights into its micro-kernel layout at construction and reads
embeddings, biases and LayerNorm parameters in place (NumPy views of the parameters, kept alive
by the Encoder). Outputs are torch tensors the kernels write into directly; the GIL is released
while they run.

bfloat16 models (compute dtype = that of the GEMM weights, see ``base.compute_dtype``): the conv
weights are packed as bf16 (GEMMs on AMX tiles, or AVX512-BF16 dot products, accumulating in fp32;
attention's QK^T and PV too, on bf16-rounded Q, K, V and probabilities);
embeddings, biases and LayerNorm parameters are read in fp32 (in place when the model was loaded with
``dtype=`` and keeps them fp32, as fp32 copies after ``model.to(bf16)``), activations/LayerNorm/softmax
run in fp32, and the outputs stay fp32: rounding hidden
states of magnitude ~4 to bf16 alone would cost 1.6e-2, more than the whole engine's error. The
task heads in modeling.py cast to their own weight dtype.

int8 models (``sqbert_fast.quantization``): the six convs of every layer arrive as int8 weights with a scale
per output channel and are packed for the int8 GEMM variant chosen apart from the ISA (``_C.cpu_info()``
"int8_isa": i8_amx, i8_avx512_vnni, i8_avx_vnni, i8_avx2, i8_neon_i8mm, i8_neon_dot, i8_scalar;
SQBERT_FAST_FORCE_INT8_ISA forces one); activations are quantized per row and conv group inside the GEMM.
Attention's QK^T and PV run on the bf16 GEMM where the CPU has bf16 dot products (ISA amx or avx512_bf16;
2-3x faster there, the accuracy on real text is measured with it: sqbert_fast/int8_eval.py), else in fp32;
SQBERT_FAST_INT8_ATTENTION=fp32 keeps them in fp32 everywhere. Everything else is the fp32 path.

float16 models (ARMv8.2-A cores with fp16 arithmetic, variant neon_fp16): the conv weights are packed as
IEEE half and the GEMMs run fp16 FMAs whose partial sums are flushed into fp32 every 32 products;
everything else is as for bfloat16.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ..packing import Packed
from .base import Backend, Encoded, compute_dtype, encoder_weights
from .native import NativeRunner, encoder_config

try:
    from .. import _C
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    _C = None
    _IMPORT_ERROR = str(e)
else:
    _IMPORT_ERROR = ""

def bf16_supported() -> bool:
    """True when this CPU (and this build) has a bf16 GEMM: AMX-BF16 or AVX512-BF16."""
    if _C is None:
        return False
    info = _C.cpu_info()
    return any(isa in info["usable_isas"] for isa in info["bf16_isas"])


def fp16_supported() -> bool:
    """True when this CPU runs the fp16 GEMM natively (neon_fp16: ARMv8.2-A FP16; not SIMDe emulation)."""
    if _C is None:
        return False
    info = _C.cpu_info()
    return info.get("neon_impl") == "native" and any(isa in info["usable_isas"] for isa in info["fp16_isas"])


def default_int8_isa() -> str:
    """The int8 GEMM variant int8 models use here (SQBERT_FAST_FORCE_INT8_ISA if set, validated)."""
    if _C is None:
        raise RuntimeError(f"the C++ extension is not available: {_IMPORT_ERROR}")
    info = _C.cpu_info()
    if "int8_isa_error" in info:
        raise ValueError(info["int8_isa_error"])
    return info["int8_isa"]


def default_isa() -> str:
    """The ISA the cpu backend will use (SQBERT_FAST_FORCE_CPU_ISA if set, validated)."""
    if _C is None:
        raise RuntimeError(f"the C++ extension is not available: {_IMPORT_ERROR}")
    return _C.default_isa()


INT8_ATTENTION = ("auto", "fp32", "bf16")


def int8_attention() -> str:
    """SQBERT_FAST_INT8_ATTENTION (auto, fp32 or bf16; auto when unset): the precision of an int8 model's
    attention GEMMs. auto takes bf16 where the CPU has bf16 dot products."""
    v = os.environ.get("SQBERT_FAST_INT8_ATTENTION", "") or "auto"
    if v not in INT8_ATTENTION:
        raise ValueError(f"SQBERT_FAST_INT8_ATTENTION={v!r}: expected one of {', '.join(INT8_ATTENTION)}")
    if v == "bf16" and not bf16_supported():
        raise ValueError("SQBERT_FAST_INT8_ATTENTION=bf16 needs AMX-BF16 or AVX512-BF16, which this CPU (or build) "
                         "lacks")
    return v


def _bits(t: torch.Tensor):
    """A zero-copy NumPy view of a CPU tensor's storage (bf16/fp16 as uint16: NumPy has no bfloat16)."""
    return (t.view(torch.uint16) if t.element_size() == 2 else t).numpy()


class CpuRunner(NativeRunner):
    def __init__(self, base_model, isa: str | None = None, int8_isa: str | None = None):
        cfg = base_model.config
        self.cfg = cfg
        self.isa = isa or default_isa()
        raw = encoder_weights(base_model)
        self.dtype = compute_dtype(raw)
        if self.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
            raise ValueError(f"the cpu backend runs float32, bfloat16, float16 or int8 models, not {self.dtype}")
        bf16, fp16, int8 = self.dtype == torch.bfloat16, self.dtype == torch.float16, self.dtype == torch.int8
        # fp32 tensors (all of an fp32 model; embeddings, LayerNorms and biases of a model loaded with
        # dtype=bf16/fp16) are zero-copy views; bf16/fp16 ones become fp32 copies, the GEMM weights' freed once
        # C++ has packed them. A bf16 model's FFN weights go as their bf16 bits (uint16 views): the fused FFN
        # reads them in place.
        def host(k, v):
            if bf16 and k.endswith((".inter_weight", ".out_weight")):
                return v.to(torch.bfloat16).contiguous().view(torch.uint16).numpy()
            if v.dtype == torch.int8:  # int8 conv weights (with their fp32 *_weight_scale), packed by C++
                return v.contiguous().numpy()
            return (v.float() if bf16 or fp16 or v.dtype != torch.float32 else v).contiguous().numpy()

        weights = {k: host(k, v) for k, v in raw.items()}
        self.encoder = _C.Encoder(encoder_config(cfg), weights, self.isa, bf16, fp16=fp16,
                                  int8=int8, int8_isa=int8_isa or "",
                                  int8_attention=int8_attention() if int8 else "auto")
        self.int8_isa = self.encoder.int8_isa or None
        self.attention_precision = self.encoder.attention_precision  # "bf16" or "fp32" (QK^T and PV)
        # The packed copies go stale when a GEMM weight is edited in place through .data (no new data_ptr,
        # no version bump): one sampled element per output channel is compared on every call.
        self._sampler = _C.WeightSampler([_bits(v) for k, v in raw.items()
                                          if ((k.endswith("_weight") and v.dim() >= 2) or k.endswith("_weight_scale"))
                                          and v.is_contiguous()])

    def stale(self) -> bool:
        return self._sampler.changed()

    def arg(self, t):
        return None if t is None else t.contiguous().numpy()  # NumPy views: the binding's fastest path

    def encode(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        if p.inputs_embeds is not None and p.inputs_embeds.dtype != torch.float32:
            p = dataclasses.replace(p, inputs_embeds=p.inputs_embeds.float())
        return self.call(p, self.outputs(p, want_hidden, want_scores, want_pooled)[0])


class CpuBackend(Backend):
    name = "cpu"

    def reasons(self, device, dtype):
        r = []
        if _C is None:
            r.append(f"C++ extension sqbert_fast._C failed to import: {_IMPORT_ERROR}")
        if device.type != "cpu":
            r.append(f"runs on CPU tensors, the model is on {device}")
        if dtype == torch.bfloat16:
            if _C is not None and not bf16_supported():
                r.append("bfloat16 needs AMX-BF16 or AVX512-BF16, which this CPU (or build) lacks")
        elif dtype == torch.float16:
            if _C is not None and not fp16_supported():
                r.append("float16 needs an ARMv8.2-A core with fp16 arithmetic (ISA neon_fp16), which this CPU "
                         "(or build) lacks")
        elif dtype not in (torch.float32, torch.int8):
            r.append(f"runs float32, int8, bfloat16 (where the CPU has bf16 dot products) and float16 (ARM fp16), "
                     f"the model is {dtype}")
        return r + self.misconfigured(device)

    def misconfigured(self, device):
        if _C is None or device.type != "cpu":
            return []
        wrong = []
        for var, check in (("SQBERT_FAST_FORCE_CPU_ISA", default_isa), ("SQBERT_FAST_FORCE_INT8_ISA", default_int8_isa),
                           ("SQBERT_FAST_INT8_ATTENTION", int8_attention)):
            if os.environ.get(var):
                try:
                    check()
                except ValueError as e:
                    wrong.append(str(e))
        return wrong

    def make_runner(self, model):
        return CpuRunner(model)
