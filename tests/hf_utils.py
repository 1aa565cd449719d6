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

# Small configs covering groups 1..4 mixed per layer type, head sizes 16/32/64, groups that do
# not align with heads, and the non-default activation.
SMALL_CONFIGS = {
    "h64_d16_mixed": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, q_groups=2, k_groups=4,
                          v_groups=1, post_attention_groups=2, intermediate_groups=4, output_groups=2),
    "h96_d32_unaligned": dict(hidden_size=96, num_attention_heads=3, intermediate_size=192, q_groups=2, k_groups=3,
                              v_groups=1, post_attention_groups=3, intermediate_groups=2, output_groups=3),
    "h128_d64_default_pattern": dict(hidden_size=128, num_attention_heads=2, intermediate_size=512, q_groups=4,
                                     k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4,
                                     output_groups=4),
    "h48_d16_bert_gelu_new": dict(hidden_size=48, num_attention_heads=3, intermediate_size=96, q_groups=1,
                                  k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1,
                                  output_groups=1, hidden_act="gelu_new", layer_norm_eps=1e-5),
}


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
