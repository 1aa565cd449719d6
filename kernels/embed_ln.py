# embed_ln: embeddings gather (word or inputs_embeds, position, token type) + sum + LayerNorm.
#
# Layout: packed token rows — input_ids / position_ids / token_type_ids [T] int64 (or
# inputs_embeds [T, H]); embedding tables [rows, H]; out [T, H].
# Fusion: a program owns BLOCK_T whole rows; it gathers and sums the three embeddings chunk by
# chunk in fp32, writes the sum (rounded to the activation dtype, as the reference rounds it) and
# normalises the rows in place after a CTA barrier (common.ln_rows). Memory-bound; runs once per
# forward.
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRET, cast, ln_rows


@triton.jit
def _embed_ln_kernel(ids_ptr, emb_ptr, pos_ptr, typ_ptr, word_ptr, pos_tab_ptr, typ_tab_ptr, gamma_ptr, beta_ptr,
                     out_ptr, T, H, eps, HAS_IDS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    rows64 = rows.to(tl.int64)
    offs = tl.arange(0, BLOCK_C)
    pos = tl.load(pos_ptr + rows64, mask=rmask, other=0)
    typ = tl.load(typ_ptr + rows64, mask=rmask, other=0)
    if HAS_IDS:
        ids = tl.load(ids_ptr + rows64, mask=rmask, other=0)
    for c in range(0, H, BLOCK_C):
        cols = c + offs
        m = rmask[:, None] & (cols < H)[None, :]
        if HAS_IDS:
            e = tl.load(word_ptr + ids[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        else:
            e = tl.load(emb_ptr + rows64[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        e += tl.load(pos_tab_ptr + pos[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        e += tl.load(typ_tab_ptr + typ[:, None] * H + cols[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows64[:, None] * H + cols[None, :], cast(e, out_ptr.dtype.element_ty), mask=m)
    tl.debug_barrier()  # the rows this program wrote are re-read by other threads of it
    ln_rows(out_ptr, gamma_ptr, beta_ptr, rows, rmask, H, eps, BLOCK_T, BLOCK_C)


def embed_ln(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, position_ids: torch.Tensor,
             token_type_ids: torch.Tensor, word: torch.Tensor, pos_table: torch.Tensor, type_table: torch.Tensor,
             gamma: torch.Tensor, beta: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    T, H = position_ids.shape[0], word.shape[1]
    if out is None:
        out = torch.empty(T, H, dtype=word.dtype, device=word.device)
    has_ids = input_ids is not None
    block_t = 4 if INTERPRET else 8
    _embed_ln_kernel[(triton.cdiv(T, block_t),)](
        input_ids if has_ids else position_ids, inputs_embeds if not has_ids else word, position_ids, token_type_ids,
        word, pos_table, type_table, gamma, beta, out, T, H, eps,
        HAS_IDS=has_ids, BLOCK_T=block_t, BLOCK_C=min(triton.next_power_of_2(H), 256), num_warps=4)
    return out
