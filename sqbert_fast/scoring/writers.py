"""Output formats and the commit protocol that makes runs resumable.

Formats: JSONL (one object per row), CSV (fixed header; list/struct values JSON-encoded in their cell),
Parquet (typed columns: embeddings as ``fixed_size_list<float32 | float16 | int8 | uint8>`` by
``--embedding-dtype``, token tags as ``list<struct>``). Embeddings can go instead to one ``.npy`` file of
shape ``[rows, width]`` in the stored dtype whose row i belongs to record i. int8 embeddings come with
``OUTPUT.int8-ranges.npy``, the [2, dim] float32 minima and maxima they were quantized with (kept in
``state.json`` from the start of the run, so a resumed run uses the same).

Commit protocol (never lose or duplicate work): results are written as numbered *parts* into
``OUTPUT.parts/`` — one part per window of input rows, each written to a temp file, fsynced and renamed —
and only then is ``state.json`` (rows consumed, parts committed, counters) atomically replaced. A crash
at any instant leaves a state that names only complete parts; ``--resume`` deletes any part past it and
re-reads the input from the first unconsumed row. When the input is exhausted the parts are merged into
OUTPUT (Parquet: one row group per part; .npy: one header, then the shards' data), which is renamed into
place, and the parts directory is removed. Because parts are cut at the same rows in every run, the
merged file is byte-identical to that of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OUTPUT_FORMATS", "ChunkedOutput", "PathCollisionError", "ResumeError", "check_paths",
           "default_errors_path", "detect_output_format", "json_line", "records_table"]

OUTPUT_FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
               ".pq": "parquet"}
_STATE = "state.json"
_STATE_VERSION = 1


class ResumeError(RuntimeError):
    """Output from an earlier run is in the way, or it cannot be continued with these options."""


class PathCollisionError(ValueError):
    """Two of a run's files are one file (or one lies in OUTPUT.parts): writing one would destroy the other."""


def default_errors_path(output: str | os.PathLike) -> str:
    return os.fspath(output) + ".errors.jsonl"


def _same_file(a: str, b: str) -> bool:
    """The same path spelled twice, through a symlink or a hard link (inodes are compared where both exist)."""
    if os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(path: str, folder: str) -> bool:
    for p, d in ((os.path.abspath(path), os.path.abspath(folder)), (os.path.realpath(path), os.path.realpath(folder))):
        if p == d or p.startswith(d.rstrip(os.sep) + os.sep):
            return True
    return False


def ranges_path(output: str | os.PathLike) -> str:
    """Where int8 embeddings' ranges are written beside OUTPUT (sentence-transformers' ``ranges`` array)."""
    return os.fspath(output) + ".int8-ranges.npy"


def check_paths(input_path: str | os.PathLike | None, output: str | os.PathLike, errors_path: str | None = None,
                npy_path: str | None = None, ranges: bool = False) -> None:
    """Refuse a run whose files overlap, before anything is opened for writing or removed.

    The files a run writes are OUTPUT, the errors file, the embeddings .npy, the ``.tmp`` file beside each
    (merged into, then renamed) and everything under ``OUTPUT.parts`` (removed when the run ends). None may
    be the input, nor one another, however the path is spelled (``./x`` vs ``x``, a symlink, a hard link).
    ``--overwrite`` replaces a finished run's output; it never makes a collision acceptable.
    """
    output = os.fspath(output)
    parts = output + ".parts"
    written = []
    for role, path in (("OUTPUT", output), ("the errors file (--errors)", errors_path or default_errors_path(output)),
                       ("the embeddings file (--embeddings-npy)", npy_path),
                       ("the int8 ranges file", ranges_path(output) if ranges else None)):
        if path:
            path = os.fspath(path)
            written += [(role, path), (f"the temporary file of {role}", path + ".tmp")]
    files = ([("INPUT", os.fspath(input_path))] if input_path is not None else []) + written
    for role, path in files:
        if _inside(path, parts):
            raise PathCollisionError(f"{role} {path} is inside {parts}, the folder where the run keeps its parts "
                                     "(and removes when done): choose another path")
    for i, (role_a, a) in enumerate(files):
        for role_b, b in files[i + 1:]:
            if not _same_file(a, b):
                continue
            same = os.path.abspath(a) == os.path.abspath(b)
            role_b = role_b if same else f"{role_b} {b}"
            how = "" if same else " (the same file by another path, a symlink or a link)"
            if role_a == "INPUT":
                raise PathCollisionError(f"{role_b} is the input file {a}{how}: the run would destroy its own "
                                         "input; choose another path (--overwrite never allows this)")
            raise PathCollisionError(f"{role_a} {a} and {role_b} are the same file{how}: one would overwrite the "
                                     "other; choose different paths")


def detect_output_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {fmt!r} (known: {', '.join(OUTPUT_FORMATS)})")
        return fmt
    ext = os.path.splitext(os.fspath(path).lower())[1]
    if ext not in _EXTENSIONS:
        raise ValueError(f"cannot tell the output format of {path} from its extension {ext!r}; "
                         f"pass --output-format ({', '.join(OUTPUT_FORMATS)})")
    return _EXTENSIONS[ext]


def _plain(value: Any) -> Any:
    """numpy values -> Python values, recursively (JSON and CSV cells)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def json_line(record: dict) -> bytes:
    return (json.dumps(_plain(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _csv_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([json.dumps(_plain(v), ensure_ascii=False, separators=(",", ":"))
                         if isinstance(v, (list, dict, np.ndarray)) else _plain(v) for v in row])
    return buf.getvalue().encode("utf-8")


def _fsync_write(path: str, data: bytes, suffix: str = ".tmp") -> None:
    tmp = path + suffix
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What changed between two fingerprints, one phrase per leaf (nested dicts: options, weights)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "weights" and not prefix:
            a, b = a or {}, b or {}
            files = [f for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
            out.append(f"the model weights changed: {', '.join(files) or 'none recorded'} "
                       f"differ from the interrupted run's")
        elif isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: was {a!r}, now {b!r}")
    return out


def numeric_array(values: np.ndarray):
    """A pyarrow array over a 1-D int or float NumPy array, without a copy. ``pa.array()`` would do, but its
    first call imports pandas (0.3 s of every ``score`` start-up) to ask whether the input is a pandas object."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(f"numeric_array takes a 1-D int or float array, not {values.dtype} of shape {values.shape}")
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def parquet_options(columns: list) -> dict:
    """Writer options for ``columns``: no dictionary encoding for float vectors (embeddings). Arrow would
    hash every value into a dictionary page before falling back to plain encoding, for nothing: about 1% of
    an int8 embedding run's time (perf, Sapphire Rapids). Other flat columns keep the default."""
    import pyarrow as pa

    def float_vector(typ) -> bool:
        listy = pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ)
        return listy and pa.types.is_floating(typ.value_type)

    if not any(float_vector(typ) for _, typ in columns):
        return {}
    return {"use_dictionary": [name for name, typ in columns if not float_vector(typ)]}


def records_table(columns: list, records: list[dict]):
    """Records -> a pyarrow Table of ``columns`` ((name, type) pairs); a missing or None value is null.
    Numeric vectors (embeddings, any stored dtype) go in as one flat buffer, not a Python object per value."""
    import pyarrow as pa

    arrays = []
    for name, typ in columns:
        values = [r.get(name) for r in records]
        listy = pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ)
        present = [v for v in values if v is not None]
        numeric = listy and (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type))
        if numeric and present and isinstance(present[0], np.ndarray):
            dtype = typ.value_type.to_pandas_dtype()
            mask = None
            if len(present) < len(values):  # nulls (bad rows): zero-filled slots under a validity mask
                mask = pa.array([v is None for v in values])
                fill = np.zeros(len(present[0]), dtype)
                values = [fill if v is None else v for v in values]
            flat = numeric_array(np.concatenate(values).astype(dtype, copy=False))
            if pa.types.is_fixed_size_list(typ):
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, typ.list_size, mask=mask))
                continue
            offsets = np.zeros(len(values) + 1, dtype=np.int32)
            np.cumsum([len(v) for v in values], out=offsets[1:])
            arrays.append(pa.ListArray.from_arrays(numeric_array(offsets), flat, mask=mask))
        elif (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and len(present) == len(values):
            arrays.append(numeric_array(np.asarray(values, dtype=typ.to_pandas_dtype())))  # ids
        else:
            arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(columns))


class ChunkedOutput:
    """Writes committed parts for OUTPUT and merges them at the end. See the module docstring.

    ``columns`` are ``(name, pyarrow type)`` of each record, id first; ``fingerprint`` holds everything
    that decides the bytes of the output (input, model, task options, window, budget): resuming with a
    different one is refused, since the merged file would mix two runs.
    """

    # What a part is written under before its rename; Ray's workers make it unique per process, so two
    # attempts at one part (a killed run's actor still finishing) never write into one file.
    tmp_suffix = ".tmp"

    def __init__(self, output: str | os.PathLike, fmt: str, columns: list, fingerprint: dict, *,
                 errors_path: str | None = None, npy_path: str | None = None, npy_column: str = "embedding",
                 resume: bool = False, overwrite: bool = False, input_path: str | os.PathLike | None = None,
                 npy_dtype: Any = np.float32, ranges: bool = False):
        check_paths(input_path, output, errors_path, npy_path, ranges)
        self.output = os.fspath(output)
        self.fmt = fmt
        self.columns = columns
        self.names = [name for name, _ in columns]
        self.errors_path = errors_path or default_errors_path(self.output)
        self.npy_path = npy_path
        self.npy_column = npy_column
        self.npy_dtype = np.dtype(npy_dtype)
        self.ranges_path = ranges_path(self.output) if ranges else None
        self.parts = self.output + ".parts"
        self.fingerprint = fingerprint
        self.state = {"version": _STATE_VERSION, "fingerprint": fingerprint, "parts": 0, "rows_consumed": 0,
                      "units": 0, "rows_written": 0, "errors": 0, "tokens": 0, "complete": False}
        self._open(resume, overwrite)

    # ---- start / resume ------------------------------------------------------------------------
    def _open(self, resume: bool, overwrite: bool) -> None:
        state_path = os.path.join(self.parts, _STATE)
        if os.path.isdir(self.parts) and os.path.isfile(state_path) and resume:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            if state.get("version") != _STATE_VERSION:
                raise ResumeError(f"{self.parts} was written by another version of sqbert-fast; remove it")
            old = state.get("fingerprint", {})
            detail = "; ".join(_differences(old, self.fingerprint))
            if detail:
                raise ResumeError(f"cannot resume {self.output}: the run differs from the interrupted one ({detail}); "
                                  f"pass --overwrite to discard {self.parts} and start again")
            self.state = state
            keep = {self._part_name(i, ext) for i in range(state["parts"]) for ext in self._exts()}
            for name in os.listdir(self.parts):  # parts written after the last commit: redo them
                if name != _STATE and name not in keep:
                    os.remove(os.path.join(self.parts, name))
            return
        if os.path.exists(self.parts):
            if not (overwrite or resume):
                raise ResumeError(f"{self.parts} holds an interrupted run: pass --resume to continue it, "
                                  "or --overwrite to start again")
            shutil.rmtree(self.parts)
        if os.path.exists(self.output) and not overwrite:
            raise ResumeError(f"{self.output} exists (from a finished run?); pass --overwrite to replace it")
        for stale in (self.errors_path, self.npy_path, self.ranges_path):
            if stale and os.path.exists(stale):
                os.remove(stale)
        os.makedirs(self.parts)
        self._write_state()

    @property
    def rows_consumed(self) -> int:
        return self.state["rows_consumed"]

    @property
    def complete(self) -> bool:
        return self.state["complete"]

    def _exts(self) -> tuple[str, ...]:
        main = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}[self.fmt]
        return (main, "errors.jsonl") + (("npy",) if self.npy_path else ())

    @staticmethod
    def _part_name(i: int, ext: str) -> str:
        return f"part-{i:06d}.{ext}"

    def _part(self, i: int, ext: str) -> str:
        return os.path.join(self.parts, self._part_name(i, ext))

    def _write_state(self) -> None:
        _fsync_write(os.path.join(self.parts, _STATE), json.dumps(self.state, indent=1).encode("utf-8"))

    def commit_state(self) -> None:
        """Record what the caller put in ``state`` (int8 ranges) before the first part is written."""
        self._write_state()

    # ---- commit ------------------------------------------------------------------------------------
    def commit(self, records: list[dict], errors: list[dict], rows: int, units: int, tokens: int) -> None:
        """Write one window's results as a part, then record it. ``rows`` input rows were consumed."""
        i = self.state["parts"]
        width = self.write_part(i, records, errors, self.state.get("npy_width") or 0)
        if width is not None:
            self.state["npy_width"] = width
        st = self.state
        st["parts"] = i + 1
        st["rows_consumed"] += rows
        st["units"] += units
        st["rows_written"] += len(records)
        st["errors"] += len(errors)
        st["tokens"] += tokens
        self._write_state()

    def write_part(self, i: int, records: list[dict], errors: list[dict], npy_width: int = 0) -> int | None:
        """Write part ``i`` (records, errors, and the .npy shard), each file fsynced and renamed into place;
        returns the .npy width (None without one). Touches no state: Ray's workers call it in parallel."""
        width = None
        if self.npy_path:
            vectors = [r.pop(self.npy_column) for r in records]
            if vectors:
                data = np.stack(vectors).astype(self.npy_dtype, copy=False)
            else:
                data = np.zeros((0, npy_width), self.npy_dtype)
            width = int(data.shape[1])
            with open(self._part(i, "npy") + self.tmp_suffix, "wb") as f:
                np.save(f, data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(self._part(i, "npy") + self.tmp_suffix, self._part(i, "npy"))
        main = self._exts()[0]
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            tmp = self._part(i, main) + self.tmp_suffix
            pq.write_table(self.to_table(records), tmp, **parquet_options(self.columns))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self._part(i, main))
        elif self.fmt == "csv":
            _fsync_write(self._part(i, main), _csv_bytes([[r.get(n) for n in self.names] for r in records]),
                         self.tmp_suffix)
        else:
            _fsync_write(self._part(i, main), b"".join(json_line(r) for r in records), self.tmp_suffix)
        _fsync_write(self._part(i, "errors.jsonl"), b"".join(json_line(e) for e in errors), self.tmp_suffix)
        return width

    def to_table(self, records: list[dict]):
        return records_table(self.columns, records)

    # ---- finish --------------------------------------------------------------------------------
    def mark_complete(self) -> None:
        self.state["complete"] = True
        self._write_state()

    def finish(self) -> None:
        """Merge the committed parts into OUTPUT (and the errors file, and the .npy), then clean up."""
        if not self.state["complete"]:
            self.mark_complete()
        n = self.state["parts"]
        main = self._exts()[0]
        tmp = self.output + ".tmp"
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, pa.schema(self.columns), **parquet_options(self.columns)) as writer:
                for i in range(n):
                    table = pq.ParquetFile(self._part(i, main)).read()  # read_table imports pyarrow.dataset and pandas
                    if table.num_rows:
                        writer.write_table(table)
        else:
            with open(tmp, "wb") as out:
                if self.fmt == "csv":
                    out.write(_csv_bytes([self.names]))
                for i in range(n):
                    with open(self._part(i, main), "rb") as f:
                        shutil.copyfileobj(f, out)
        os.replace(tmp, self.output)
        if self.npy_path:
            self._merge_npy(n)
        self.write_ranges()
        with open(self.errors_path + ".tmp", "wb") as out:
            for i in range(n):
                with open(self._part(i, "errors.jsonl"), "rb") as f:
                    shutil.copyfileobj(f, out)
        if self.state["errors"]:
            os.replace(self.errors_path + ".tmp", self.errors_path)
        else:
            os.remove(self.errors_path + ".tmp")
        shutil.rmtree(self.parts)

    def write_ranges(self) -> None:
        """int8: OUTPUT.int8-ranges.npy, so that queries can be quantized as the corpus was."""
        if self.ranges_path and self.state.get("embedding_ranges") is not None:
            with open(self.ranges_path + ".tmp", "wb") as f:
                np.save(f, np.asarray(self.state["embedding_ranges"], dtype=np.float32))
                f.flush()
                os.fsync(f.fileno())
            os.replace(self.ranges_path + ".tmp", self.ranges_path)

    def _merge_npy(self, n: int) -> None:
        width = self.state.get("npy_width") or 0
        rows = self.state["rows_written"]
        tmp = self.npy_path + ".tmp"
        with open(tmp, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(self.npy_dtype),
                                                       "fortran_order": False, "shape": (rows, width)})
            for i in range(n):
                shard = np.load(self._part(i, "npy"), mmap_mode="r")
                out.write(np.ascontiguousarray(shard).tobytes())
        os.replace(tmp, self.npy_path)
