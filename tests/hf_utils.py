"""Shared helpers for tests that compare sqbert_fast with transformers itself."""

from __future__ import annotations

import torch
import transformers

import sqbert_fast as sqf

CLASS_NAMES = (
    "SqueezeBertModel",
    "SqueezeBertForMaskedLM",
    "SqueezeBertForSequenceClassification",
    "SqueezeBertForMultipleChoice",
    "SqueezeBertForTokenClassification",
    "SqueezeBertForQuestionAnswering",
)

def sized(hidden_size: int, num_attention_heads: int, intermediate_size: int, groups: tuple, **kw) -> dict:
    """A config's sizes; groups: the q, k, v, post-attention, intermediate and output convs' group counts."""
    names = ("q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")
    return dict(hidden_size=hidden_size, num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                **dict(zip(names, groups)), **kw)


# Named small configs; each suite picks the ones it needs with configs(...).
CONFIGS = {
    # groups 1..4 mixed per layer type, head sizes 16/32/64, groups that do not align with heads, and the
    # non-default activation: the parity suites (SMALL_CONFIGS)
    "h64_d16_mixed": sized(64, 4, 128, groups=(2, 4, 1, 2, 4, 2)),
    "h96_d32_unaligned": sized(96, 3, 192, groups=(2, 3, 1, 3, 2, 3)),
    "h128_d64_default_pattern": sized(128, 2, 512, groups=(4, 4, 4, 1, 4, 4)),
    "h48_d16_bert_gelu_new": sized(48, 3, 96, groups=(1, 1, 1, 1, 1, 1), hidden_act="gelu_new", layer_norm_eps=1e-5),
    # the CPU kernel suites (test_cpu_kernels.py, test_neon.py), sized around their vector widths and tiles
    # groups of 12 channels = 3 heads of 4: fused Q/K/V + attention, FFN group by group
    "aligned": sized(48, 12, 96, groups=(4, 4, 4, 4, 4, 4)),
    # groups of 8 channels, heads of 12: general path; FFN 3 groups -> 1 group
    "unaligned": sized(24, 2, 72, groups=(3, 3, 1, 2, 3, 1)),
    # groups of 10 channels, heads of 6: general path; FFN 2 groups -> 1 group
    "unaligned_h30": sized(30, 5, 70, groups=(3, 3, 1, 2, 2, 1)),
    # hidden 18, heads of 6, groups of 6: every row, head and group ends in a partial (4-lane) vector
    "tails": sized(18, 3, 54, groups=(3, 3, 3, 3, 3, 3)),
    # reduction depths past one K block of the fp32 GEMM (192) that do not split evenly (200 -> 2 x 100,
    # 404 -> 135 + 135 + 134), output widths that leave partial panels (202 per group, 600 Q|K|V)
    "kblocks": sized(200, 5, 404, groups=(1, 1, 1, 1, 2, 1)),
    # head size 32 (MiniLM's; the default config's is 64): the AVX-512 bf16 packers of K^T and V take
    # whole 32-dim chunks, and 16 keys at a time
    "d32": sized(64, 2, 128, groups=(2, 2, 2, 1, 2, 2)),
}


def configs(*names: str) -> dict:
    return {name: CONFIGS[name] for name in names}


SMALL_CONFIGS = configs("h64_d16_mixed", "h96_d32_unaligned", "h128_d64_default_pattern", "h48_d16_bert_gelu_new")


def hf_config(**overrides) -> transformers.SqueezeBertConfig:
    kw = dict(vocab_size=211, num_hidden_layers=2, max_position_embeddings=128, type_vocab_size=3,
              num_labels=3)
    kw.update(overrides)
    kw.setdefault("embedding_size", kw.get("hidden_size", 768))
    return transformers.SqueezeBertConfig(**kw)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (biases and LayerNorms included) non-trivial random values, so a
    kernel that ignores a bias or a LayerNorm weight fails the parity tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layernorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    return model


def make_hf(class_name: str, config, seed: int = 0):
    return randomize_(getattr(transformers, class_name)(config), seed).eval()


def save_hf(class_name: str, config, path, seed: int = 0):
    hf = make_hf(class_name, config, seed)
    hf.save_pretrained(path)
    return hf


def padded_batch(batch: int, seq: int, vocab: int, pattern: str, seed: int = 0):
    """(input_ids, attention_mask) with right/left padding or holes in the mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    lengths = [max(1, seq - (i * seq) // (batch + 1)) for i in range(batch)]
    for i, n in enumerate(lengths):
        if pattern == "right":
            mask[i, n:] = 0
        elif pattern == "left":
            mask[i, : seq - n] = 0
        elif pattern == "holes":
            mask[i, 1::3] = 0 if seq > 2 else 1
            mask[i, -1] = 1 if i % 2 else 0
        elif pattern != "none":
            raise ValueError(pattern)
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


def mixed_batch(batch: int = 8, seq: int = 128, vocab: int = 30522, seed: int = 0, device="cpu"):
    """(input_ids, attention_mask) with right padding and lengths spread over 8..seq."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min(8, seq), seq + 1, (batch,), generator=g)
    mask = (torch.arange(seq)[None, :] < lens[:, None]).long()
    ids = torch.randint(1, vocab, (batch, seq), generator=g).masked_fill(mask == 0, 0)
    return ids.to(device), mask.to(device)


def save_default_config(path, layers: int = 2, seed: int = 0):
    """SqueezeBERT's default config (hidden 768, groups 4/4/4/1/4/4) with `layers` layers and transformers'
    own random init (realistic magnitudes, as the GPU benchmark uses: the issue's absolute fp16/bf16 bounds
    assume them), saved to `path`; returns the transformers model (the GPU tests' ground truth)."""
    torch.manual_seed(seed)
    hf = transformers.SqueezeBertModel(transformers.SqueezeBertConfig(num_hidden_layers=layers)).eval()
    hf.save_pretrained(path)
    return hf


def max_diff_real(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> float:
    """Max abs difference over real (unmasked) positions; `real` is [B, S] and a/b are [B, S, ...]."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b)[real.bool()].abs().max())


def max_diff_scores(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> float:
    """Pre-softmax scores [B, heads, S, S]: compare real query rows x real key columns."""
    assert a.shape == b.shape, (a.shape, b.shape)
    r = real.bool()
    sel = (r[:, None, :, None] & r[:, None, None, :]).expand_as(a)
    return float((a - b)[sel].abs().max())


def load_ours(class_name: str, path, backend: str):
    return getattr(sqf, class_name).from_pretrained(path, backend=backend)
