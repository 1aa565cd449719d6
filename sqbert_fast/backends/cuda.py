"""The cuda backend: the fused encoder of DESIGN.md §3 as hand-written CUDA kernels (``sqbert_fast._C_cuda``).

The C++ Encoder reads the model's parameters in place (pointers to contiguous tensors this
runner keeps alive; conv weights in transformers' [out, in/groups, 1] layout are already the
operand layout the kernels want). One call runs the whole encoder on the current torch stream:
embed_ln, then per layer qkv_attention -> attn_out_ln -> ffn_ln, then the pooler.

Activations go through one grow-only workspace (its fp32 LayerNorm row buffer and tile counters
must start zero; the kernels leave them zero). Small batches run as CUDA graphs: shapes are
rounded up to a bucket (batch to a power of two, tokens to a power of two >= 64, max length to a
multiple of 64) and the kernels read the live token count and sequence bounds on the device, so
one captured graph serves every input of its bucket. A bucket is captured the second time it is
seen; hidden states and attention scores always run eagerly.
"""

from __future__ import annotations

import threading
from typing import Optional

import torch

from ..packing import Packed
from .base import Backend, Encoded, compute_dtype, encoder_weights
from .graphs import GRAPH_MAX_TOKENS, GraphCache
from .native import NativeRunner, encoder_config

try:
    from .. import _C_cuda
except ImportError as e:
    _C_cuda = None
    _IMPORT_ERROR = str(e)
else:
    _IMPORT_ERROR = ""

DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_GRAPH_LEN_STEP = 64  # max-length bucket granularity: the attention kernel's 64-query tile


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def graph_bucket(batch: int, tokens: int, max_len: int, max_tokens: Optional[int] = None) -> Optional[tuple]:
    """(batch_cap, tokens_cap, max_len_cap) of the CUDA graph that serves this shape, or None
    when the shape runs eagerly (more than ``max_tokens`` tokens after rounding)."""
    max_tokens = GRAPH_MAX_TOKENS if max_tokens is None else max_tokens
    if batch < 1 or max_len < 1 or tokens < max_len or tokens > batch * max_len:
        raise ValueError(f"inconsistent shape: batch={batch}, tokens={tokens}, max_len={max_len}")
    tokens_cap = max(64, _next_pow2(tokens))
    if tokens_cap > max_tokens:
        return None
    batch_cap = min(_next_pow2(batch), tokens_cap)
    len_cap = min(-(-max_len // _GRAPH_LEN_STEP) * _GRAPH_LEN_STEP, tokens_cap)
    return batch_cap, tokens_cap, len_cap


def cuda_info() -> dict:
    """What was built and what the driver reports (for ``sqbert-fast info``)."""
    if _C_cuda is None:
        return {"built": False, "error": _IMPORT_ERROR}
    info = {"built": True, "archs": _C_cuda.cuda_archs, "cudart": _C_cuda.cudart_version,
            "devices": _C_cuda.device_count()}
    if info["devices"] == 0:
        info["error"] = f"no CUDA device: {_C_cuda.device_error() or 'none found'}"
    else:
        info["device0"] = _C_cuda.device_info(0)
    return info


class CudaRunner(NativeRunner):
    def __init__(self, base_model):
        cfg = base_model.config
        self.cfg = cfg
        raw = encoder_weights(base_model)
        self.device = raw["word_embeddings"].device
        self.dtype = compute_dtype(raw)
        if self.device.type != "cuda":
            raise RuntimeError(f"the cuda backend needs the model on a CUDA device, it is on {self.device}")
        # contiguous copies only where needed; kept alive for the Encoder, which reads them in place
        self._weights = {k: v.to(self.dtype).contiguous() for k, v in raw.items()}
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device_index = index
        self.encoder = _C_cuda.Encoder(encoder_config(cfg), self._weights, DTYPES[self.dtype], index)
        self.out_device, self.out_dtype = self.device, self.dtype
        self.has_pooler = "pooler_weight" in self._weights
        self._lock = threading.Lock()
        self._workspace: Optional[torch.Tensor] = None
        self._static: Optional[dict] = None          # graph inputs/outputs/workspace, GRAPH_MAX_TOKENS rows
        self._graphs = GraphCache()

    # -- workspace -----------------------------------------------------------------------------
    def workspace_bytes(self, tokens: int) -> int:
        return int(self.encoder.workspace_layout(tokens)["total"])

    def _workspace_for(self, tokens: int) -> torch.Tensor:
        need = self.workspace_bytes(tokens)
        if self._workspace is None or self._workspace.numel() < need:
            self._workspace = None  # free first: the old one may be most of the memory
            self._workspace = torch.zeros(need, dtype=torch.uint8, device=self.device)
        return self._workspace

    # -- one launch of the whole encoder ------------------------------------------------------------
    def _stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream

    def _eager(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        out, offsets = self.outputs(p, want_hidden, want_scores, want_pooled)
        soff = torch.tensor(offsets, dtype=torch.int64).to(self.device, non_blocking=True) if want_scores else None
        return self.call(p, out, score_offsets=soff, workspace=self._workspace_for(p.tokens), stream=self._stream())

    def encode(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        if want_pooled and not self.has_pooler:
            raise ValueError("this model was built without a pooler")
        p = _on_device(p, self.device, self.dtype)
        with self._lock, torch.cuda.device(self.device):
            if not (want_hidden or want_scores):
                bucket = graph_bucket(p.batch, p.tokens, p.max_len)
                if bucket is not None:
                    out = self._graphed(p, bucket, want_pooled)
                    if out is not None:
                        return out
            return self._eager(p, want_hidden, want_scores, want_pooled)

    # -- CUDA graphs for small batches ---------------------------------------------------------------
    def _static_buffers(self) -> dict:
        if self._static is None:
            n, H = GRAPH_MAX_TOKENS, self.cfg.hidden_size
            i64 = dict(dtype=torch.int64, device=self.device)
            self._static = {
                "cu_seqlens": torch.zeros(n + 1, **i64), "input_ids": torch.zeros(n, **i64),
                "token_type_ids": torch.zeros(n, **i64), "position_ids": torch.zeros(n, **i64),
                "key_valid": torch.ones(n, dtype=torch.uint8, device=self.device),
                "pool_rows": torch.zeros(n, **i64),
                "inputs_embeds": torch.zeros(n, H, dtype=self.dtype, device=self.device),
                "last": torch.empty(n, H, dtype=self.dtype, device=self.device),
                "pooled": torch.empty(n, H, dtype=self.dtype, device=self.device),
                "workspace": torch.zeros(self.workspace_bytes(n), dtype=torch.uint8, device=self.device),
            }
        return self._static

    def _graphed(self, p: Packed, bucket: tuple, want_pooled: bool) -> Optional[Encoded]:
        embeds = p.input_ids is None
        graph = self._graphs.get((bucket, embeds, want_pooled), lambda: self._capture(bucket, embeds, want_pooled))
        if graph is None:
            return None
        s = self._static_buffers()
        T, B = p.tokens, p.batch
        batch_cap = bucket[0]
        s["cu_seqlens"][: B + 1].copy_(p.cu_seqlens, non_blocking=True)
        s["cu_seqlens"][B + 1: batch_cap + 1].fill_(T)  # empty padding sequences
        for name in ("token_type_ids", "position_ids", "key_valid"):
            s[name][:T].copy_(getattr(p, name), non_blocking=True)
        if embeds:
            s["inputs_embeds"][:T].copy_(p.inputs_embeds, non_blocking=True)
        else:
            s["input_ids"][:T].copy_(p.input_ids, non_blocking=True)
        if want_pooled:
            s["pool_rows"][:B].copy_(p.pool_rows, non_blocking=True)
        graph.replay()
        return Encoded(last_hidden=s["last"][:T].clone(), hidden_states=None, scores=None,
                       pooled=s["pooled"][:B].clone() if want_pooled else None)

    def _capture(self, bucket: tuple, embeds: bool, want_pooled: bool):
        s = self._static_buffers()
        batch_cap, tokens_cap, len_cap = bucket
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            # the bucket's capacity: live rows and sequence bounds are read on the device at replay
            cap = Packed(batch=batch_cap, seq_len=len_cap, tokens=tokens_cap,
                         input_ids=None if embeds else s["input_ids"][:tokens_cap],
                         inputs_embeds=s["inputs_embeds"][:tokens_cap] if embeds else None,
                         token_type_ids=s["token_type_ids"][:tokens_cap], position_ids=s["position_ids"][:tokens_cap],
                         cu_seqlens=s["cu_seqlens"][: batch_cap + 1], key_valid=s["key_valid"][:tokens_cap],
                         pool_rows=s["pool_rows"][:batch_cap], flat_index=None, seqlens=[len_cap] * batch_cap,
                         real=None)  # seqlens: upper bounds (max_len = len_cap, the grid)
            out = Encoded(last_hidden=s["last"][:tokens_cap], hidden_states=None, scores=None,
                          pooled=s["pooled"][:batch_cap] if want_pooled else None)
            self.call(cap, out, workspace=s["workspace"], stream=self._stream())
        return graph


def _on_device(p: Packed, device, dtype) -> Packed:
    """The kernels read raw pointers: every input must be contiguous, on the model's device, and
    of the dtype the kernels expect (packing already produces this; checked, cheaply, here)."""
    def fix(t, dt):
        if t is None:
            return None
        if t.device != device or t.dtype != dt or not t.is_contiguous():
            t = t.to(device=device, dtype=dt).contiguous()
        return t
    return Packed(**{**p.__dict__,
                     "input_ids": fix(p.input_ids, torch.int64), "inputs_embeds": fix(p.inputs_embeds, dtype),
                     "token_type_ids": fix(p.token_type_ids, torch.int64),
                     "position_ids": fix(p.position_ids, torch.int64), "cu_seqlens": fix(p.cu_seqlens, torch.int64),
                     "key_valid": fix(p.key_valid, torch.uint8), "pool_rows": fix(p.pool_rows, torch.int64)})


class CudaBackend(Backend):
    name = "cuda"

    def reasons(self, device, dtype):
        device = torch.device(device)
        r = []
        if _C_cuda is None:
            r.append(f"the CUDA extension sqbert_fast._C_cuda is not built ({_IMPORT_ERROR}); "
                     "build with nvcc available (SQBERT_FAST_BUILD_CUDA=ON)")
        if device.type != "cuda":
            r.append(f"runs on CUDA devices, the model is on {device}")
        if dtype not in DTYPES:
            r.append(f"supports float16, bfloat16 and float32, the model is {dtype}")
        if _C_cuda is not None and device.type == "cuda":
            n = _C_cuda.device_count()
            index = device.index or 0
            if n == 0:
                r.append(f"no CUDA device: {_C_cuda.device_error() or 'none found'}")
            elif index >= n:
                r.append(f"no CUDA device {index} (found {n})")
            else:
                info = _C_cuda.device_info(index)
                major, minor = info["capability"]
                if major < 8:
                    r.append(f"needs an sm_80+ GPU, {info['name']} is sm_{major}{minor}")
        return r

    def make_runner(self, model):
        return CudaRunner(model)


BACKEND = CudaBackend()
