"""Convert a BERT checkpoint into a SqueezeBERT one (``sqbert-fast convert --from-bert SRC DST``).

A SqueezeBERT whose six ``*_groups`` are all 1 is exactly a BERT: every Linear [out, in] becomes a
1x1 Conv1d [out, in, 1] and the module names change; nothing is approximated. The one catch:
transformers' SqueezeBERT hard-codes eps 1e-12 in the encoder LayerNorms, so a BERT with another
layer_norm_eps would not convert exactly, and is refused.

Every BERT head with a SqueezeBERT counterpart converts (``BERT_HEADS``); the head is read from the
config's ``architectures``, or from the tensors when the config names none, or given with ``head=``.
The written config names the SqueezeBERT class in ``architectures``.

The pooler: SqueezeBERT's heads all wrap a ``SqueezeBertModel``, which always has a pooler
(``transformer.pooler.dense``), and transformers' loader reports it missing when a checkpoint lacks
it. BERT's masked-LM, token-classification and question-answering heads are built without one, and
none of those heads reads it. For them the converter writes a zero pooler (weight and bias 0, so
``pooler_output`` is exactly 0, never random numbers that look trained) and says so in the
safetensors metadata (``sqbert_fast_pooler``). A pooler the BERT does have (BertModel,
BertForPreTraining, sequence classification, multiple choice) is carried over unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

import torch

from .config import SqueezeBertConfig
from .weights import read_state_dict

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
# A sentence-transformers checkpoint's recipe (max_seq_length, pooling, Normalize): carried over unchanged, so
# ``score --task embed`` on the conversion embeds as ``SentenceTransformer(src).encode()`` does.
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                               "1_Pooling/config.json")


def copy_sentence_transformers_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the sentence-transformers files of ``src`` (those of ``SENTENCE_TRANSFORMERS_FILES`` it has) into
    ``dst``; returns the names copied."""
    copied = []
    for name in SENTENCE_TRANSFORMERS_FILES:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            os.makedirs(os.path.dirname(os.path.join(dst, name)), exist_ok=True)
            shutil.copyfile(path, os.path.join(dst, name))
            copied.append(name)
    return copied

# BERT class -> the SqueezeBERT class it converts into
BERT_HEADS = {
    "BertModel": "SqueezeBertModel",
    "BertForPreTraining": "SqueezeBertForMaskedLM",  # the next-sentence head (cls.seq_relationship) is dropped
    "BertForMaskedLM": "SqueezeBertForMaskedLM",
    "BertForSequenceClassification": "SqueezeBertForSequenceClassification",
    "BertForMultipleChoice": "SqueezeBertForMultipleChoice",
    "BertForTokenClassification": "SqueezeBertForTokenClassification",
    "BertForQuestionAnswering": "SqueezeBertForQuestionAnswering",
}
# BERT heads that have no SqueezeBERT counterpart, and why
NO_COUNTERPART = {
    "BertForNextSentencePrediction": "SqueezeBERT has no next-sentence-prediction head",
    "BertLMHeadModel": "it is a causal (decoder) language model and SqueezeBERT's attention is bidirectional only",
}
# the short names accepted by ``--head``
HEAD_NAMES = {
    "model": "SqueezeBertModel",
    "masked-lm": "SqueezeBertForMaskedLM",
    "sequence-classification": "SqueezeBertForSequenceClassification",
    "multiple-choice": "SqueezeBertForMultipleChoice",
    "token-classification": "SqueezeBertForTokenClassification",
    "question-answering": "SqueezeBertForQuestionAnswering",
}
# head tensors (names after "bert." is stripped) that each SqueezeBERT class takes unchanged
_HEAD_TENSORS = {
    "SqueezeBertModel": (),
    "SqueezeBertForMaskedLM": ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                               "cls.predictions.transform.LayerNorm.weight",
                               "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias"),
    "SqueezeBertForSequenceClassification": ("classifier.weight", "classifier.bias"),
    "SqueezeBertForMultipleChoice": ("classifier.weight", "classifier.bias"),
    "SqueezeBertForTokenClassification": ("classifier.weight", "classifier.bias"),
    "SqueezeBertForQuestionAnswering": ("qa_outputs.weight", "qa_outputs.bias"),
}

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
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # non-persistent in newer transformers


class ConversionError(ValueError):
    """The source cannot be converted; the message says why (the CLI prints it without a traceback)."""


def bert_config_to_squeezebert(bert: dict) -> SqueezeBertConfig:
    if not isinstance(bert, dict):
        raise ConversionError(f"a config must be a JSON object, got {type(bert).__name__}")
    mt = bert.get("model_type")
    if mt != "bert":
        raise ConversionError(f"expected a BERT config (model_type 'bert'), got model_type={mt!r}")
    if bert.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only absolute position embeddings convert to SqueezeBERT, "
                              f"got position_embedding_type={bert['position_embedding_type']!r}")
    if bert.get("is_decoder") or bert.get("add_cross_attention"):
        raise ConversionError("a BERT decoder (is_decoder / add_cross_attention) has no SqueezeBERT counterpart: "
                              "SqueezeBERT's attention is bidirectional only")
    eps = bert.get("layer_norm_eps", 1e-12)
    if eps != 1e-12:
        raise ConversionError(f"layer_norm_eps={eps}: SqueezeBERT's encoder LayerNorms always use 1e-12, "
                              "so this BERT would not convert exactly")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "problem_type")
    d = {k: bert[k] for k in keys if k in bert}
    d.update(embedding_size=d.get("hidden_size", 768), q_groups=1, k_groups=1, v_groups=1,
             post_attention_groups=1, intermediate_groups=1, output_groups=1)
    for k in ("id2label", "label2id"):
        if k in bert:
            d[k] = bert[k]
    try:
        config = SqueezeBertConfig(**d)
        config.validate()
    except (TypeError, AttributeError, KeyError, OverflowError, ValueError) as e:
        raise ConversionError(f"the BERT config does not make a valid SqueezeBERT config: {e}") from None
    return config


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, t in state.items():
        k = key[len("bert."):] if key.startswith("bert.") else key
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k in out:
            raise ConversionError(f"the checkpoint holds tensor {k!r} twice (with and without the 'bert.' prefix)")
        out[k] = t
    return out


def detect_head(bert_config: dict, state: dict[str, torch.Tensor]) -> str:
    """The SqueezeBERT class a BERT checkpoint converts into (``state`` with 'bert.' already stripped):
    from the config's ``architectures`` when it names one, else from the head tensors present."""
    archs = bert_config.get("architectures") or []
    archs = [archs] if isinstance(archs, str) else archs if isinstance(archs, list) else []
    archs = [a for a in archs if isinstance(a, str)]
    for arch in archs:
        if arch in BERT_HEADS:
            return BERT_HEADS[arch]
    for arch in archs:
        if arch in NO_COUNTERPART:
            raise ConversionError(f"{arch} cannot be converted: {NO_COUNTERPART[arch]}")
    if archs:
        raise ConversionError(f"unsupported BERT head {archs[0]!r}; convertible heads are "
                              f"{', '.join(BERT_HEADS)} (or pick one with --head)")
    heads = {k.split(".")[0] if not k.startswith("cls.") else ".".join(k.split(".")[:2]) for k in state
             if not k.startswith(("embeddings.", "encoder.", "pooler."))}
    if "cls.predictions" in heads:
        return "SqueezeBertForMaskedLM"
    if "cls.seq_relationship" in heads:
        raise ConversionError("BertForNextSentencePrediction cannot be converted: "
                              + NO_COUNTERPART["BertForNextSentencePrediction"])
    if "qa_outputs" in heads:
        return "SqueezeBertForQuestionAnswering"
    if "classifier" in heads:
        raise ConversionError("the config names no architecture and a 'classifier' head could be sequence "
                              "classification, multiple choice or token classification; pick one with --head")
    if heads:
        raise ConversionError(f"the config names no architecture and the checkpoint has tensors of an unknown "
                              f"head ({', '.join(sorted(heads))})")
    return "SqueezeBertModel"


def bert_state_to_squeezebert(state: dict[str, torch.Tensor], target: str,
                              drop_other_heads: bool = False) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Returns (SqueezeBERT state dict for class ``target``, notes). A tensor that has no place in the
    target is an error, not silently dropped, unless ``drop_other_heads`` (the head was named
    explicitly) and it belongs to another head; the notes say what was dropped or filled in, and why."""
    if target not in _HEAD_TENSORS:
        raise ConversionError(f"unknown SqueezeBERT class {target!r}")
    state = _strip(state)
    notes: list[str] = []
    prefix = "" if target == "SqueezeBertModel" else "transformer."
    head = set(_HEAD_TENSORS[target])
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    if target == "SqueezeBertForMaskedLM":
        state = dict(state)
        dec_w = state.pop("cls.predictions.decoder.weight", None)
        dec_b = state.pop("cls.predictions.decoder.bias", None)
        emb = state.get("embeddings.word_embeddings.weight")
        if dec_w is not None and emb is not None and not torch.equal(dec_w, emb):
            raise ConversionError("the BERT's MLM decoder weight is not tied to its word embeddings "
                                  "(tie_word_embeddings=False); SqueezeBERT's MLM head always ties them")
        if dec_b is not None:
            if "cls.predictions.bias" not in state:
                state["cls.predictions.bias"] = dec_b  # checkpoints that kept only the decoder's copy
            elif not torch.equal(dec_b, state["cls.predictions.bias"]):
                raise ConversionError("cls.predictions.decoder.bias differs from cls.predictions.bias; "
                                      "SqueezeBERT's MLM head ties them")
        nsp = [k for k in state if k.startswith("cls.seq_relationship.")]
        if nsp:
            for k in nsp:
                del state[k]
            notes.append("dropped the next-sentence-prediction head (cls.seq_relationship): "
                         "SqueezeBertForMaskedLM has none")
    for k, t in state.items():
        if k.endswith(_BUFFERS):
            continue
        if k.startswith(("embeddings.", "pooler.")):
            out[prefix + k] = t
        elif k.startswith("encoder."):
            m = _LAYER_RE.match(k)
            if not m or m.group(2) not in _LAYER_MAP:
                raise ConversionError(f"don't know how to convert BERT tensor {k!r}")
            name, is_conv = _LAYER_MAP[m.group(2)]
            out[f"{prefix}encoder.layers.{m.group(1)}.{name}.{m.group(3)}"] = (
                t.unsqueeze(-1) if is_conv and m.group(3) == "weight" else t)
        elif k in head:
            out[k] = t
        elif drop_other_heads:
            dropped.append(k)
        else:
            raise ConversionError(f"BERT tensor {k!r} has no place in {target} "
                                  "(pick the head that has it with --head)")
    if dropped:
        notes.append(f"dropped {len(dropped)} tensor(s) {target} has no place for: {', '.join(sorted(dropped)[:4])}"
                     + (" ..." if len(dropped) > 4 else ""))
    lacking = sorted(head - out.keys())
    if lacking:
        raise ConversionError(f"the checkpoint has no {', '.join(lacking)}, so it is not a trained {target} head; "
                              "convert it with --head model and load it with the head class (which initialises "
                              "the head afresh)")
    emb = out.get(prefix + "embeddings.word_embeddings.weight")
    if (prefix + "pooler.dense.weight") not in out and emb is not None:
        h = emb.shape[1]
        out[prefix + "pooler.dense.weight"] = torch.zeros(h, h, dtype=emb.dtype)
        out[prefix + "pooler.dense.bias"] = torch.zeros(h, dtype=emb.dtype)
        notes.append("the BERT has no pooler, so a zero pooler was written (pooler_output is 0"
                     + (")" if target == "SqueezeBertModel" else f"; {target} does not use it)"))
    return out, notes


def _check_against_model(config: SqueezeBertConfig, target: str, state: dict[str, torch.Tensor]) -> None:
    """Every tensor the target class needs is there, with its shape, and nothing else."""
    from .modeling import MODEL_CLASSES

    with torch.device("meta"):
        model = MODEL_CLASSES[target](config, backend="reference")
    tied = set(model._tied_keys)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(expected.keys() - state.keys())
    extra = sorted(state.keys() - expected.keys())
    if missing or extra:
        raise ConversionError(f"the converted checkpoint does not match {target}: "
                              f"missing {missing[:3]}, unexpected {extra[:3]} (is the config consistent with the weights?)")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise ConversionError(f"BERT tensor for {k} has shape {tuple(state[k].shape)}, but the config implies {shape}")
        if not state[k].dtype.is_floating_point:
            raise ConversionError(f"BERT tensor for {k} has dtype {state[k].dtype}, expected a floating point type")


def convert_bert(src: str | os.PathLike, dst: str | os.PathLike, head: str | None = None,
                 verbose: bool = False) -> str:
    """Write a SqueezeBERT checkpoint (config.json, model.safetensors, tokenizer files, and the
    sentence-transformers files when ``src`` has them) converted from the BERT
    checkpoint in ``src`` to ``dst``. ``head`` (a SqueezeBERT class name or a ``HEAD_NAMES`` key) overrides the
    head read from the config. Everything is checked before anything is written; the files are written to a
    temporary directory beside ``dst`` and moved into place. Raises ConversionError (a ValueError) or OSError."""
    from safetensors.torch import save_file

    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isdir(src):
        raise ConversionError(f"{src} is not a directory (expected a BERT checkpoint: config.json + weights)")
    cfg_path = os.path.join(src, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConversionError(f"no config.json in {src}")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ConversionError(f"{dst} exists and is not a directory")
    if os.path.isdir(dst) and os.path.samefile(src, dst):
        raise ConversionError("the destination is the source directory; converting in place would overwrite the BERT")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            bert = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{cfg_path} is not valid JSON: {e}") from None
    config = bert_config_to_squeezebert(bert)
    state = read_state_dict(src)
    if head is None:
        target = detect_head(bert, _strip(state))
    else:
        target = HEAD_NAMES.get(head, head)
        if target not in _HEAD_TENSORS:
            raise ConversionError(f"unknown head {head!r}; choose from {', '.join(HEAD_NAMES)}")
    out, notes = bert_state_to_squeezebert(state, target, drop_other_heads=head is not None)
    _check_against_model(config, target, out)
    config.architectures = [target]

    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=parent) as tmp:
        config.save_pretrained(tmp)
        metadata = {"format": "pt", "sqbert_fast_converted_from": "bert"}
        if any("zero pooler" in n for n in notes):
            metadata["sqbert_fast_pooler"] = "zeros: the source BERT had no pooler"
        save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata=metadata)
        for name in TOKENIZER_FILES:
            if os.path.isfile(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
        copy_sentence_transformers_files(src, tmp)
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(tmp):
            if os.path.isdir(os.path.join(dst, name)) and os.path.isdir(os.path.join(tmp, name)):
                shutil.rmtree(os.path.join(dst, name))  # a 1_Pooling/ from an earlier conversion
            os.replace(os.path.join(tmp, name), os.path.join(dst, name))
    if verbose:
        for n in notes:
            print(f"note: {n}")
        print(f"wrote {target} checkpoint to {dst}")
    return dst


def add_arguments(p) -> None:
    p.add_argument("--from-bert", metavar="SRC", required=True, help="directory of a BERT checkpoint (transformers layout)")
    p.add_argument("--head", choices=sorted(HEAD_NAMES), default=None,
                   help="the SqueezeBERT head to convert into (default: from the config's architectures, "
                        "else from the tensors)")
    p.add_argument("dst", metavar="DST", help="output directory for the SqueezeBERT checkpoint")


def run(args) -> int:
    try:
        convert_bert(args.from_bert, args.dst, head=args.head, verbose=True)
    except (OSError, ValueError) as e:
        print(f"sqbert-fast convert: error: {e}", file=sys.stderr)
        return 1
    return 0
