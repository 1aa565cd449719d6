"""``sqbert-fast quantize SRC DST``: write an int8 checkpoint of a float SqueezeBERT checkpoint (issue 19).

The six convs of every encoder layer are quantized as ``sqbert_fast.quantization`` defines (int8, symmetric, one
scale per output channel); DST gets ``model.safetensors`` with those int8 weights and their fp32 ``weight_scale``
tensors, everything else fp32, a config.json with a ``quantization`` block, and SRC's tokenizer and
sentence-transformers files. ``from_pretrained(DST)`` loads it as int8 with no argument; transformers cannot load
it (keep SRC for that).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import torch


class QuantizeError(ValueError):
    pass


def _same_place(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return os.path.commonpath([child, parent]) == parent


def quantize_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the int8 checkpoint of ``src`` into ``dst``; returns a summary (class, convs quantized, sizes)."""
    from .config import SqueezeBertConfig
    from .convert import TOKENIZER_FILES, copy_sentence_transformers_files
    from .modeling import MODEL_CLASSES, SqueezeBertModel
    from .weights import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME

    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isdir(src):
        raise QuantizeError(f"SRC {src} is not a directory (a checkpoint: config.json + model.safetensors)")
    if _same_place(src, dst):
        raise QuantizeError(f"DST is SRC ({dst}): quantizing in place would destroy the float checkpoint; "
                            "name another directory")
    if _inside(dst, src):
        raise QuantizeError(f"DST {dst} is inside SRC {src}; name a directory outside it")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise QuantizeError(f"DST {dst} exists and is not a directory")
    if os.path.isdir(dst) and os.listdir(dst) and not overwrite:
        raise QuantizeError(f"DST {dst} exists and is not empty (pass --overwrite to replace its checkpoint files)")
    config = SqueezeBertConfig.from_pretrained(src)
    if config.is_int8:
        raise QuantizeError(f"SRC {src} is already an int8 checkpoint")
    arch = (getattr(config, "architectures", None) or ["SqueezeBertModel"])[0]
    cls = MODEL_CLASSES.get(arch, SqueezeBertModel)
    model = cls.from_pretrained(src, backend="reference", dtype=torch.int8)
    convs = model._int8_convs()

    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=parent) as tmp:
        model.save_pretrained(tmp)
        copied = [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(src, name))]
        for name in copied:
            shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
        copied += copy_sentence_transformers_files(src, tmp)
        os.makedirs(dst, exist_ok=True)
        for stale in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME):  # would shadow or confuse the new model.safetensors
            if os.path.isfile(os.path.join(dst, stale)):
                os.remove(os.path.join(dst, stale))
        for name in os.listdir(tmp):
            if os.path.isdir(os.path.join(dst, name)) and os.path.isdir(os.path.join(tmp, name)):
                shutil.rmtree(os.path.join(dst, name))
            os.replace(os.path.join(tmp, name), os.path.join(dst, name))
    src_bytes = sum(os.path.getsize(os.path.join(src, f)) for f in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME)
                    if os.path.isfile(os.path.join(src, f)))
    return {"class": cls.__name__, "convs": len(convs), "layers": config.num_hidden_layers, "copied": copied,
            "src_bytes": src_bytes, "dst_bytes": os.path.getsize(os.path.join(dst, SAFE_WEIGHTS_NAME))}


def add_arguments(p) -> None:
    p.add_argument("src", metavar="SRC", help="float SqueezeBERT checkpoint directory")
    p.add_argument("dst", metavar="DST", help="directory to write the int8 checkpoint into (not SRC)")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint files of a non-empty DST")


def run(args) -> int:
    try:
        s = quantize_checkpoint(args.src, args.dst, overwrite=args.overwrite)
    except (QuantizeError, ValueError, OSError) as e:
        print(f"sqbert-fast quantize: error: {e}", file=sys.stderr)
        return 1
    size = f"{s['src_bytes'] / 1e6:.1f} MB -> {s['dst_bytes'] / 1e6:.1f} MB" if s["src_bytes"] else \
        f"{s['dst_bytes'] / 1e6:.1f} MB"
    print(f"{args.dst}: {s['class']}, {s['convs']} convs of {s['layers']} layers int8 (per output channel), "
          f"the rest fp32; model.safetensors {size}; copied {', '.join(s['copied']) or 'no tokenizer files'}")
    print("load with sqbert_fast.<class>.from_pretrained(DST) (int8 from its config.json); transformers cannot load it")
    return 0
