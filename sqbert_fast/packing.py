"""Input validation, packing and unpacking (DESIGN.md §3).

A padded batch ``[batch, seq]`` becomes packed token rows ``[tokens]``: the tokens whose
attention_mask is 1, sequences back to back, with ``cu_seqlens`` (flash-attention's varlen
convention) marking where each sequence starts. Every token keeps its column position, so
left padding and masks with holes embed exactly as in transformers.

One transformers quirk is kept: its pooler reads column 0 even when column 0 is padding. Such
a token is packed too, as a *query-only* row (``key_valid = 0``): it attends to the real
tokens but nobody attends to it, which is exactly what transformers computes for it.

Every check that protects the kernels happens here, once, for every backend, and raises a
Python exception naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .config import SqueezeBertConfig


@dataclass
class Packed:
    batch: int
    seq_len: int
    tokens: int
    input_ids: Optional[torch.Tensor]       # [T] int64, or None when inputs_embeds is given
    inputs_embeds: Optional[torch.Tensor]   # [T, E]
    token_type_ids: torch.Tensor            # [T] int64
    position_ids: torch.Tensor              # [T] int64
    cu_seqlens: torch.Tensor                # [B + 1] int64
    key_valid: torch.Tensor                 # [T] uint8 (0 = query-only padding row)
    pool_rows: torch.Tensor                 # [B] int64: packed row of each sequence's column 0
    flat_index: Optional[torch.Tensor]      # [T] int64 into B*S, None when nothing was dropped
    seqlens: list                           # python ints, len B
    real: Optional[torch.Tensor]            # [B, S] bool: the attention_mask; None when all real

    # What every backend needs and none recomputes: the longest sequence, and where each sequence's
    # [heads, L, L] block of attention scores starts in a layer's flat score buffer.
    @property
    def max_len(self) -> int:
        return max(self.seqlens)

    def score_offsets(self, heads: int) -> tuple[list, int]:
        """(start of each sequence's [heads, L, L] score block, total per layer)."""
        offs, total = [], 0
        for n in self.seqlens:
            offs.append(total)
            total += heads * n * n
        return offs, total

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """[T, ...] packed rows -> [B, S, ...], zeros where no row was computed."""
        if self.flat_index is None:
            return x.reshape(self.batch, self.seq_len, *x.shape[1:])
        out = x.new_zeros((self.batch * self.seq_len, *x.shape[1:]))
        out.index_copy_(0, self.flat_index, x)
        return out.view(self.batch, self.seq_len, *x.shape[1:])

    def unpack_scores(self, flat: torch.Tensor, heads: int) -> torch.Tensor:
        """Per-sequence [heads, L, L] blocks (concatenated) -> [B, heads, S, S] pre-softmax scores.

        Masked key columns hold float lowest, as transformers' additive mask gives; rows of
        padded query positions that were never computed hold it too.
        """
        B, S = self.batch, self.seq_len
        out = flat.new_full((B, heads, S, S), torch.finfo(flat.dtype).min)
        starts = self.cu_seqlens.tolist()
        for b, (L, off) in enumerate(zip(self.seqlens, self.score_offsets(heads)[0])):
            block = flat[off: off + heads * L * L].view(heads, L, L)
            if self.flat_index is None:
                out[b] = block
            else:
                cols = self.flat_index[starts[b]: starts[b] + L] - b * S
                out[b][:, cols[:, None], cols[None, :]] = block
        return out


def _as_2d(name: str, t: torch.Tensor, shape: tuple, integer: bool) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if integer and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but input_ids/inputs_embeds imply {shape}")
    return t


def _check_range(name: str, t: torch.Tensor, hi: int, what: str) -> None:
    if t.numel() == 0:
        return
    lo_t, hi_t = torch.aminmax(t)
    lo_v, hi_v = int(lo_t), int(hi_t)
    if lo_v < 0 or hi_v >= hi:
        bad = lo_v if lo_v < 0 else hi_v
        raise IndexError(f"{name} contains {bad}, outside [0, {hi}) ({what})")


def pack(
    config: SqueezeBertConfig,
    input_ids: Optional[torch.Tensor] = None,
    attention_mask: Optional[torch.Tensor] = None,
    token_type_ids: Optional[torch.Tensor] = None,
    position_ids: Optional[torch.Tensor] = None,
    inputs_embeds: Optional[torch.Tensor] = None,
    device: Optional[torch.device] = None,
) -> Packed:
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
    if input_ids is None and inputs_embeds is None:
        raise ValueError("You have to specify either input_ids or inputs_embeds")
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq_len], got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
    else:
        if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.dtype.is_floating_point:
            raise TypeError("inputs_embeds must be a floating point torch.Tensor")
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.embedding_size:
            raise ValueError(f"inputs_embeds must be [batch, seq_len, {config.embedding_size}], "
                             f"got shape {tuple(inputs_embeds.shape)}")
        B, S = inputs_embeds.shape[:2]
    if B == 0 or S == 0:
        raise ValueError(f"empty batch: input of shape {(B, S)}")
    device = device if device is not None else (input_ids if input_ids is not None else inputs_embeds).device
    shape = (B, S)

    if position_ids is None:
        if S > config.max_position_embeddings:
            raise ValueError(f"sequence length {S} is longer than max_position_embeddings="
                             f"{config.max_position_embeddings}; truncate the input")
        position_ids = torch.arange(S, device=device).expand(B, S)
    else:
        if not isinstance(position_ids, torch.Tensor):
            raise TypeError("position_ids must be a torch.Tensor")
        if position_ids.dim() == 1:
            position_ids = position_ids.unsqueeze(0)
        if position_ids.dim() == 2 and position_ids.shape[0] == 1 and B > 1:
            position_ids = position_ids.expand(B, -1)
        _as_2d("position_ids", position_ids, shape, integer=True)
        _check_range("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings")

    if token_type_ids is None:
        token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
    else:
        _as_2d("token_type_ids", token_type_ids, shape, integer=True)
        _check_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")

    if input_ids is not None:
        _check_range("input_ids", input_ids, config.vocab_size, f"vocab_size={config.vocab_size}")

    if attention_mask is None:
        real = None
    else:
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
        if tuple(attention_mask.shape) != shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids/inputs_embeds imply {shape}")
        # one reduction decides the common cases: all ones (dense) or 0/1 (integer masks)
        if attention_mask.dtype == torch.bool:
            dense = bool(attention_mask.all())
        elif attention_mask.dtype.is_floating_point or attention_mask.dtype.is_complex:
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must contain only 0 and 1")
            dense = bool(attention_mask.all())
        else:
            lo_t, hi_t = torch.aminmax(attention_mask)
            lo, hi = int(lo_t), int(hi_t)
            if lo < 0 or hi > 1:
                raise ValueError("attention_mask must contain only 0 and 1")
            dense = lo == 1
        real = None
        if not dense:
            real = attention_mask.to(device=device, dtype=torch.bool)
            has_real = real.any(dim=1)
            if not bool(has_real.all()):
                row = int((~has_real).nonzero()[0])
                raise ValueError(f"attention_mask row {row} masks every token; each sequence needs at least one")

    position_ids = position_ids.to(device=device, dtype=torch.long)
    token_type_ids = token_type_ids.to(device=device, dtype=torch.long)
    if input_ids is not None:
        input_ids = input_ids.to(device=device, dtype=torch.long)
    else:
        inputs_embeds = inputs_embeds.to(device=device)

    if real is None:  # dense: nothing to drop, packing is a reshape
        T = B * S
        cu = torch.arange(0, T + 1, S, dtype=torch.long, device=device)
        return Packed(
            batch=B, seq_len=S, tokens=T,
            input_ids=input_ids.reshape(T) if input_ids is not None else None,
            inputs_embeds=inputs_embeds.reshape(T, -1) if inputs_embeds is not None else None,
            token_type_ids=token_type_ids.reshape(T).contiguous(),
            position_ids=position_ids.reshape(T).contiguous(),
            cu_seqlens=cu,
            key_valid=torch.ones(T, dtype=torch.uint8, device=device),
            pool_rows=cu[:-1],
            flat_index=None, seqlens=[S] * B, real=None,
        )

    keep = real.clone()
    keep[:, 0] = True  # the pooler reads column 0, real or not
    flat_index = keep.reshape(-1).nonzero().flatten()
    lens = keep.sum(dim=1)
    cu = torch.zeros(B + 1, dtype=torch.long, device=device)
    torch.cumsum(lens, 0, out=cu[1:])
    T = int(cu[-1])
    return Packed(
        batch=B, seq_len=S, tokens=T,
        input_ids=input_ids.reshape(-1)[flat_index] if input_ids is not None else None,
        inputs_embeds=inputs_embeds.reshape(B * S, -1)[flat_index] if inputs_embeds is not None else None,
        token_type_ids=token_type_ids.reshape(-1)[flat_index],
        position_ids=position_ids.reshape(-1)[flat_index],
        cu_seqlens=cu,
        key_valid=real.reshape(-1)[flat_index].to(torch.uint8),
        pool_rows=cu[:-1].clone(),
        flat_index=flat_index, seqlens=lens.tolist(), real=real,
    )
