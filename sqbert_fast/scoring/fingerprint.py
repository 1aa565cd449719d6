"""Fingerprints of the model a scoring run used, so that ``--resume`` refuses to mix two models in one output.

A checkpoint directory is fingerprinted from its files, without reading the tensors: for each weight file
(``model.safetensors`` and its shards, ``pytorch_model*.bin``, their ``*.index.json``) and ``config.json``,
its size and mtime (ns), a SHA-256 of the safetensors header (names, dtypes, shapes, offsets: the first 8
bytes give its length) and a SHA-256 of 16 blocks of 4 KiB spread over the file; files up to 1 MiB are
hashed whole. Re-saving a checkpoint rewrites its files, so their mtime changes even when the shapes (and
so the header and size) do not; the sampled blocks catch another checkpoint copied in with its old mtime.
A few ms per run, whatever the model's size.

A model handed over as an instance (or fetched from a hub) has no files to look at: its ``state_dict``
is hashed, every byte of every tensor (about a second per GB).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os

import torch

__all__ = ["WEIGHT_FILES", "file_fingerprint", "state_dict_fingerprint", "weights_fingerprint"]

WEIGHT_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                "pytorch_model*.bin.index.json")
_WHOLE = 1 << 20          # files up to this size are hashed whole
_SAMPLES, _BLOCK = 16, 4096
_MAX_HEADER = 100 << 20   # safetensors' own limit on the header


def file_fingerprint(path: str) -> dict:
    st = os.stat(path)
    fp: dict = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    with open(path, "rb") as f:
        if st.st_size <= _WHOLE:
            fp["sha256"] = hashlib.sha256(f.read()).hexdigest()
            return fp
        if path.endswith(".safetensors"):
            n = int.from_bytes(f.read(8), "little")
            if 0 < n <= min(st.st_size - 8, _MAX_HEADER):  # else not a safetensors file: loading says so
                fp["header_sha256"] = hashlib.sha256(f.read(n)).hexdigest()
        sample = hashlib.sha256()
        for i in range(_SAMPLES):
            f.seek(i * (st.st_size - _BLOCK) // (_SAMPLES - 1))
            sample.update(f.read(_BLOCK))
        fp["sample_sha256"] = sample.hexdigest()
    return fp


def weights_fingerprint(model_dir: str | os.PathLike) -> dict:
    """{file name: its fingerprint} for the weight files and config.json at the top of ``model_dir``."""
    model_dir = os.fspath(model_dir)
    names = sorted(n for n in os.listdir(model_dir)
                   if any(fnmatch.fnmatchcase(n, pattern) for pattern in WEIGHT_FILES)
                   and os.path.isfile(os.path.join(model_dir, n)))
    return {name: file_fingerprint(os.path.join(model_dir, name)) for name in names}


def state_dict_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of ``model.state_dict()``: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
