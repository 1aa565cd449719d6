"""The triton backend: the four fused ops of DESIGN.md §3 as Triton kernels (``sqbert_fast._triton``).

Weights are packed once, when the runner is made, into the chunked layout the kernels read
(``kernels/common.py``). The hot path allocates only its outputs: activations go through a
grow-only workspace sized by the largest batch seen. Launch configs are autotuned per shape
bucket on a GPU (the kernels' ``autotune`` keys hold power-of-two buckets of the token count and
sequence length, so mixed batches do not retune) and fixed under the interpreter. Small batches on
a GPU are captured into CUDA graphs, one per length pattern once it repeats, so batch-1 latency is
not bound by ~50 kernel launches.

With ``TRITON_INTERPRET=1`` (set before anything imports triton) the backend runs on CPU tensors,
slowly, so the test suite can check it without a GPU.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..packing import Packed
from .base import Backend, Encoded, Runner, compute_dtype, encoder_weights
from .graphs import GRAPH_MAX_TOKENS, GraphCache
from .reference import ENCODER_LN_EPS

# The kernels (and triton, 0.2 s of import) load on first use: a CPU-only process never pays for them.
_common = attn_out_ln = embed_ln = ffn_ln = pack_ffn = split_plan = qkv_attention = None
_IMPORT_ERROR: str | None = None  # None: not tried yet


def _load() -> bool:
    """Imports the Triton kernels once; False (and _IMPORT_ERROR says why) when triton is missing or broken."""
    global _common, attn_out_ln, embed_ln, ffn_ln, pack_ffn, split_plan, qkv_attention, _IMPORT_ERROR
    if _IMPORT_ERROR is None:
        try:
            from .._triton import common
            from .._triton.attn_out_ln import attn_out_ln as _attn_out_ln
            from .._triton.embed_ln import embed_ln as _embed_ln
            from .._triton.ffn_ln import ffn_ln as _ffn_ln, pack_ffn as _pack_ffn, split_plan as _split_plan
            from .._triton.qkv_attention import qkv_attention as _qkv_attention
        except Exception as e:  # triton missing or broken: reasons() says so
            _IMPORT_ERROR = f"{type(e).__name__}: {e}"
        else:
            _common, attn_out_ln, embed_ln, ffn_ln = common, _attn_out_ln, _embed_ln, _ffn_ln
            pack_ffn, split_plan, qkv_attention = _pack_ffn, _split_plan, _qkv_attention
            _IMPORT_ERROR = ""
    return _common is not None


DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    """TRITON_INTERPRET=1: the kernels' own flag once loaded, else read as kernels/common.py reads it."""
    if _common is not None:
        return bool(_common.INTERPRET)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass
class _Layer:
    q: object
    k: object
    v: object
    post: object
    post_ln: tuple
    ffn_fused: bool
    inter: object
    out: object
    out_ln: tuple


class TritonRunner(Runner):
    def __init__(self, base_model):
        if not _load():
            raise RuntimeError(f"triton is not importable ({_IMPORT_ERROR}); pip install 'sqbert_fast[triton]'")
        cfg = base_model.config
        self.cfg = cfg
        w = {k: v.contiguous() for k, v in encoder_weights(base_model).items()}
        self.device, self.dtype = w["word_embeddings"].device, compute_dtype(w)
        w = {k: v.to(self.dtype) for k, v in w.items()}
        H, heads = cfg.hidden_size, cfg.num_attention_heads
        d = H // heads
        pack, tile = _common.pack_grouped, _common.tile_width
        self.layers = []
        for i in range(cfg.num_hidden_layers):
            def g(name):
                return w[f"layers.{i}.{name}_weight"], w[f"layers.{i}.{name}_bias"]
            fused, inter, out = pack_ffn(*g("inter"), *g("out"), H, cfg.intermediate_size,
                                         cfg.intermediate_groups, cfg.output_groups)
            self.layers.append(_Layer(
                q=pack(*g("q"), cfg.q_groups, d), k=pack(*g("k"), cfg.k_groups, d), v=pack(*g("v"), cfg.v_groups, d),
                post=pack(*g("post"), cfg.post_attention_groups, tile(H // cfg.post_attention_groups)),
                post_ln=g("post_ln") + (ENCODER_LN_EPS,), ffn_fused=fused, inter=inter, out=out,
                out_ln=g("out_ln") + (ENCODER_LN_EPS,)))
        self.embeddings = (w["word_embeddings"], w["position_embeddings"], w["token_type_embeddings"],
                           w["embeddings_ln_weight"], w["embeddings_ln_bias"], cfg.layer_norm_eps)
        self.pooler = (w["pooler_weight"], w["pooler_bias"]) if "pooler_weight" in w else None
        self.act = _common.ACTIVATIONS[cfg.hidden_act]
        self.needs_inter = not all(layer.ffn_fused for layer in self.layers)
        self._workspace: dict[str, torch.Tensor] = {}
        self._graphs = GraphCache()
        self._lock = threading.Lock()

    # -- buffers -----------------------------------------------------------------------------
    def _buffer(self, name: str, rows: int, cols: int, grow_only: bool, dtype=None) -> torch.Tensor:
        """[rows, cols] scratch (of the compute dtype by default): a view of a grow-only workspace,
        or fresh (inside a CUDA graph capture, whose memory must stay the graph's own)."""
        dtype = dtype or self.dtype
        if not grow_only:
            return torch.empty(rows, cols, dtype=dtype, device=self.device)
        buf = self._workspace.get(name)
        if buf is None or buf.numel() < rows * cols:
            buf = self._workspace[name] = torch.empty(rows * cols, dtype=dtype, device=self.device)
        return buf[: rows * cols].view(rows, cols)

    # -- the encoder ---------------------------------------------------------------------------
    def _run(self, p: Packed, soff, want_hidden: bool, want_scores: bool, want_pooled: bool,
             workspace: bool = True) -> Encoded:
        cfg, T, H = self.cfg, p.tokens, self.cfg.hidden_size
        nl, heads = cfg.num_hidden_layers, cfg.num_attention_heads
        new = dict(dtype=self.dtype, device=self.device)
        hidden = torch.empty(nl + 1, T, H, **new) if want_hidden else None
        scores = torch.empty(nl, int(soff[1]), **new) if want_scores else None
        last = hidden[-1] if want_hidden else torch.empty(T, H, **new)
        x_buf = self._buffer("x", T, H, workspace)
        ctx = self._buffer("ctx", T, H, workspace)
        mid = self._buffer("mid", T, H, workspace)
        inter = self._buffer("inter", T, cfg.intermediate_size, workspace) if self.needs_inter else None
        part = None  # fp32 partial outputs of an FFN split over programs (small batches)
        if not self.needs_inter and not _common.fuse_ln(T, self.device):
            n_split = split_plan(T, self.layers[0].inter, self.layers[0].out.chunks, False, self.device)[0]
            part = self._buffer("ffn_part", n_split * T, H, workspace, torch.float32) if n_split > 1 else None
        max_len = p.max_len

        x = embed_ln(p.input_ids, p.inputs_embeds, p.position_ids, p.token_type_ids, *self.embeddings,
                     out=hidden[0] if want_hidden else x_buf)
        for i, layer in enumerate(self.layers):
            qkv_attention(x, p.cu_seqlens, p.key_valid, max_len, layer.q, layer.k, layer.v, heads, ctx=ctx,
                          scores=scores[i] if want_scores else None, soff=soff[0])
            a = attn_out_ln(ctx, x, layer.post, *layer.post_ln, out=mid)
            dst = hidden[i + 1] if want_hidden else (last if i == nl - 1 else x_buf)
            x = ffn_ln(a, layer.inter, layer.out, self.act, *layer.out_ln, layer.ffn_fused, out=dst, workspace=inter,
                       partials=part)
        pooled = None
        if want_pooled:
            pooled = torch.tanh(F.linear(last[p.pool_rows], *self.pooler))
        return Encoded(last_hidden=last, hidden_states=hidden, scores=scores, pooled=pooled)

    def encode(self, p: Packed, want_hidden: bool, want_scores: bool, want_pooled: bool) -> Encoded:
        if p.inputs_embeds is not None:
            p.inputs_embeds = p.inputs_embeds.contiguous()
        if want_scores:
            offs, total = p.score_offsets(self.cfg.num_attention_heads)
            soff = (torch.tensor(offs, dtype=torch.int64, device=self.device), total)
        else:
            soff = (None, 0)
        # Calls from several threads share the workspace and the graphs' static inputs: enqueue one
        # call's kernels at a time (they then run in order on the stream; outputs are never shared).
        with self._lock:
            if self.device.type == "cuda" and not interpreting() and p.tokens <= GRAPH_MAX_TOKENS:
                return self._graphed(p, soff, want_hidden, want_scores, want_pooled)
            return self._run(p, soff, want_hidden, want_scores, want_pooled)

    # -- CUDA graphs for small batches ------------------------------------------------------------
    _INPUTS = ("input_ids", "inputs_embeds", "position_ids", "token_type_ids", "cu_seqlens", "key_valid", "pool_rows")

    def _graphed(self, p: Packed, soff, want_hidden, want_scores, want_pooled) -> Encoded:
        key = (tuple(p.seqlens), p.input_ids is None, want_hidden, want_scores, want_pooled)
        entry = self._graphs.get(key, lambda: self._capture(p, soff, want_hidden, want_scores, want_pooled))
        if entry is None:  # first sight: run eagerly (and autotune); captured on a repeat
            return self._run(p, soff, want_hidden, want_scores, want_pooled)
        static, graph, out = entry
        for name in self._INPUTS:
            if static[name] is not None:
                static[name].copy_(getattr(p, name), non_blocking=True)
        graph.replay()

        def clone(t):
            return None if t is None else t.clone()
        return Encoded(last_hidden=clone(out.last_hidden), hidden_states=clone(out.hidden_states),
                       scores=clone(out.scores), pooled=clone(out.pooled))

    def _capture(self, p: Packed, soff, want_hidden, want_scores, want_pooled):
        static = {name: (None if getattr(p, name) is None else getattr(p, name).clone()) for name in self._INPUTS}
        sp = Packed(**{**p.__dict__, **static})
        static["_score_offsets"] = soff[0]  # read by the graph, never copied into: keep it alive
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._run(sp, soff, want_hidden, want_scores, want_pooled, workspace=False)
        return static, graph, out


class TritonBackend(Backend):
    name = "triton"

    def reasons(self, device, dtype):
        device = torch.device(device)
        r = []
        if (device.type == "cuda" or interpreting()) and not _load():  # elsewhere the device is reason enough
            r.append(f"triton is not importable ({_IMPORT_ERROR}); pip install 'sqbert_fast[triton]'")
        if dtype not in DTYPES:
            r.append(f"supports float16, bfloat16 and float32, the model is {dtype}")
        if device.type == "cuda":
            if interpreting():
                r.append("TRITON_INTERPRET=1 is set: kernels run on CPU tensors only")
            elif not torch.cuda.is_available():
                r.append("no CUDA device is available to this process")
            else:
                major, minor = torch.cuda.get_device_capability(device)
                if major < 8:
                    r.append(f"needs an sm_80+ GPU, {torch.cuda.get_device_name(device)} is sm_{major}{minor}")
        elif device.type == "cpu":
            if not interpreting():
                r.append("runs on CUDA devices, the model is on cpu (TRITON_INTERPRET=1 runs it on CPU "
                         "tensors, for tests)")
        else:
            r.append(f"runs on CUDA devices, the model is on {device}")
        return r

    def make_runner(self, model):
        return TritonRunner(model)


BACKEND = TritonBackend()
