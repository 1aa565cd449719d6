"""Convert a BERT checkpoint into a SqueezeBERT one (``sqbert-fast convert --from-bert SRC DST``).

A SqueezeBERT whose six ``*_groups`` are all 1 is exactly a BERT: every Linear [out, in] becomes a
1x1 Conv1d [out, in, 1] and the module names change; nothing is approximated. The one catch:
transformers' SqueezeBERT hard-codes eps 1e-12 in the encoder LayerNorms, so a BERT with another
layer_norm_eps would not convert exactly, and is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import torch

from .config import SqueezeBertConfig
from .weights import read_state_dict

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

_LAYER_MAP = {
    "attention.self.query": ("attention.query", True),
    "attention.self.key": ("attention.key", True),
    "attention.self.value": ("attention.value", True),
    "attention.output.dense": ("post_attention.conv1d", True),
    "attention.output.LayerNorm": ("post_attention.layernorm", False),
    "intermediate.dense": ("intermediate.conv1d", True),
    "output.dense": ("output.conv1d", True),
    "output.LayerNorm": ("output.layernorm", False),
}
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")


def bert_config_to_squeezebert(bert: dict) -> SqueezeBertConfig:
    mt = bert.get("model_type")
    if mt != "bert":
        raise ValueError(f"expected a BERT config (model_type 'bert'), got model_type={mt!r}")
    if bert.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings convert to SqueezeBERT, "
                         f"got position_embedding_type={bert['position_embedding_type']!r}")
    eps = float(bert.get("layer_norm_eps", 1e-12))
    if eps != 1e-12:
        raise ValueError(f"layer_norm_eps={eps}: SqueezeBERT's encoder LayerNorms always use 1e-12, "
                         "so this BERT would not convert exactly")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")
    d = {k: bert[k] for k in keys if k in bert}
    d.update(embedding_size=d.get("hidden_size", 768), q_groups=1, k_groups=1, v_groups=1,
             post_attention_groups=1, intermediate_groups=1, output_groups=1)
    for k in ("id2label", "label2id"):
        if k in bert:
            d[k] = bert[k]
    return SqueezeBertConfig(**d)


def bert_state_to_squeezebert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Returns (SqueezeBERT state dict, has_mlm_head). Unknown keys are an error, not dropped."""
    out: dict[str, torch.Tensor] = {}
    has_mlm = any(k.startswith("cls.predictions.") for k in state)
    prefix = "transformer." if has_mlm else ""
    for key, t in state.items():
        k = key[len("bert."):] if key.startswith("bert.") else key
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.endswith("position_ids") or k.startswith("cls.seq_relationship"):
            continue
        if k.startswith(("embeddings.", "pooler.")):
            out[prefix + k] = t
        elif k.startswith("cls.predictions."):
            if k == "cls.predictions.decoder.weight" or k == "cls.predictions.decoder.bias":
                continue  # tied to the word embeddings / cls.predictions.bias
            out[k] = t
        else:
            m = _LAYER_RE.match(k)
            if not m or m.group(2) not in _LAYER_MAP:
                raise ValueError(f"don't know how to convert BERT tensor {key!r}")
            name, is_conv = _LAYER_MAP[m.group(2)]
            out[f"{prefix}encoder.layers.{m.group(1)}.{name}.{m.group(3)}"] = (
                t.unsqueeze(-1) if is_conv and m.group(3) == "weight" else t)
    return out, has_mlm


def convert_bert(src: str, dst: str) -> str:
    """Write a SqueezeBERT checkpoint (config.json, model.safetensors, tokenizer files) to dst."""
    from safetensors.torch import save_file

    cfg_path = os.path.join(src, "config.json")
    if not os.path.isfile(cfg_path):
        raise OSError(f"no config.json in {src}")
    with open(cfg_path, encoding="utf-8") as f:
        config = bert_config_to_squeezebert(json.load(f))
    state, has_mlm = bert_state_to_squeezebert(read_state_dict(src))
    config.architectures = ["SqueezeBertForMaskedLM" if has_mlm else "SqueezeBertModel"]
    os.makedirs(dst, exist_ok=True)
    config.save_pretrained(dst)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    return dst


def add_arguments(p) -> None:
    p.add_argument("--from-bert", metavar="SRC", required=True, help="directory of a BERT checkpoint (transformers layout)")
    p.add_argument("dst", metavar="DST", help="output directory for the SqueezeBERT checkpoint")


def run(args) -> int:
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.dst)) or ".") as tmp:
        convert_bert(args.from_bert, tmp)
        os.makedirs(args.dst, exist_ok=True)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(args.dst, name))
    print(f"wrote SqueezeBERT checkpoint to {args.dst}")
    return 0
