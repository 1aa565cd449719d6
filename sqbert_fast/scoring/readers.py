"""Streaming readers: JSONL, CSV/TSV, Parquet and plain text lines -> ``Row`` records, in file order.

Memory stays bounded whatever the file size: text formats are read line by line, Parquet batch by batch.
A UTF-8 byte order mark opening a JSONL, CSV/TSV or text file is skipped (Excel and Notepad write one).

Two kinds of trouble are told apart:
- a *bad row* (undecodable bytes, a missing or non-string field) is yielded with ``error`` set, so the
  scorer writes it to the errors file with its id and the reason and goes on;
- a *malformed file* (a line that is not JSON, a JSONL line that is not an object, a CSV row with the
  wrong number of fields, an unreadable Parquet file) raises ``InputFormatError`` naming the file and line:
  guessing what such a file meant would silently shift or drop rows.

Row numbering: ``index`` counts data rows from 0 (header and blank JSONL/text lines are not rows); it is
the row's default id and what ``skip`` counts when a run is resumed. ``line`` is the 1-based physical line
(the row number for Parquet), for messages. ``nbytes`` is how much of the input the row spans, which the
progress meter uses to keep its ETA honest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FORMATS", "InputFormatError", "Row", "detect_format", "read_rows", "rows_from_records"]

FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "text", ".text": "text",
}


class InputFormatError(ValueError):
    """The input file is malformed (not a bad row: the file itself cannot be read as its format)."""


@dataclass
class Row:
    index: int                      # data row number, from 0
    line: int                       # 1-based physical line (row number for Parquet)
    nbytes: int                     # input bytes the row spans (1 for Parquet)
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def detect_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown input format {fmt!r} (known: {', '.join(FORMATS)})")
        return fmt
    name = os.fspath(path).lower()
    for compressed in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(compressed):
            raise ValueError(f"{path}: compressed input is not supported; decompress it first")
    ext = os.path.splitext(name)[1]
    if ext not in _EXTENSIONS:
        raise ValueError(f"cannot tell the format of {path} from its extension {ext!r}; "
                         f"pass --input-format ({', '.join(FORMATS)})")
    return _EXTENSIONS[ext]


def input_size(path: str | os.PathLike, fmt: str) -> int:
    """Total progress units of the file: bytes for text formats, rows for Parquet."""
    if fmt == "parquet":
        return _open_parquet(os.fspath(path)).metadata.num_rows
    return os.path.getsize(path)


def _open_parquet(path: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise InputFormatError(f"{path}: not a readable Parquet file ({err})") from None


def read_rows(path: str | os.PathLike, fmt: str | None = None, *, columns: Sequence[str] = (),
              skip: int = 0, parquet_batch_rows: int = 4096, at: tuple[int, int, int] | None = None) -> Iterator[Row]:
    """Yield the rows of ``path`` in order, skipping the first ``skip`` data rows (cheaply, unparsed where
    the format allows). ``columns`` are the fields the task needs; for JSONL/CSV/Parquet each must be present
    (a missing one makes the row bad), for text the single column is the line. ``at`` (JSONL and text only):
    ``(byte offset, row index, line number)`` of a line start found by ``line_starts``, to begin there
    without reading what comes before; CSV/TSV: of a row start found by ``csv_row_starts``."""
    fmt = detect_format(path, fmt)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path} does not exist")
    if at is not None and fmt not in ("jsonl", "text", "csv", "tsv"):
        raise ValueError(f"at= applies to JSONL, text, CSV and TSV input, not {fmt}")
    if fmt == "jsonl":
        return _read_jsonl(path, columns, skip, at)
    if fmt in ("csv", "tsv"):
        return _read_csv(path, columns, skip, "\t" if fmt == "tsv" else ",", at)
    if fmt == "parquet":
        return _read_parquet(path, columns, skip, parquet_batch_rows)
    return _read_text(path, columns, skip, at)


def line_starts(path: str | os.PathLike, every: int) -> tuple[int, list[tuple[int, int, int]]]:
    """One pass over a JSONL or text file, no parsing: (data rows, ``at`` positions of rows 0, every,
    2*every, ...) for ``read_rows(..., at=)``. Rows are counted as ``read_rows`` counts them."""
    starts, index, offset = [], 0, 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            content = raw[len(_BOM):] if line_no == 1 and raw.startswith(_BOM) else raw
            if content.strip():
                if index % every == 0:
                    starts.append((offset, index, line_no))
                index += 1
            offset += len(raw)
    return index, starts


_PHYSICAL_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def csv_row_starts(path: str | os.PathLike, every: int, delimiter: str = ",") -> tuple[int, list[tuple[int, int, int]]]:
    """``line_starts`` for CSV/TSV: (data rows, ``at`` positions of rows 0, every, 2*every, ...) for
    ``read_rows(..., at=)``, so that a shard of a CSV starts where it starts instead of parsing every row before
    it. The csv module finds the records (a quoted field may hold newlines), fed one physical line at a time so
    the byte offset after each record is exact; each position is the offset and line just past the record
    before it, as a read from the start numbers them. Raises InputFormatError as ``read_rows`` would."""
    consumed = [0]

    def lines():  # physical lines as the text reader's newline="" splits them: at \n, \r\n and a lone \r
        with open(path, "rb") as f:
            for i, raw in enumerate(f):
                if i == 0 and raw.startswith(_BOM):
                    consumed[0] += len(_BOM)
                    raw = raw[len(_BOM):]
                for part in _PHYSICAL_LINE.findall(raw):
                    consumed[0] += len(part)
                    yield part.decode("utf-8", "surrogateescape")

    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    rows, starts = 0, []
    try:
        if next(reader, None) is None:
            return 0, []
        starts.append((consumed[0], 0, reader.line_num + 1))
        for values in reader:
            if not values:
                continue
            rows += 1
            if rows % every == 0:
                starts.append((consumed[0], rows, reader.line_num + 1))
    except csv.Error as err:
        raise InputFormatError(f"{path}, line {reader.line_num}: malformed {kind} ({err})") from None
    return rows, [s for s in starts if s[1] < rows]


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"not valid UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r})"


def _pick(record: dict, columns: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """The wanted fields of one record; a missing or null field is the row's error (ids may be numbers)."""
    out = {}
    for name in columns:
        if name not in record or record[name] is None:
            return out, f"missing field {name!r}"
        out[name] = record[name]
    return out, None


_BOM = b"\xef\xbb\xbf"


def _lines(path: str, skip: int, at: tuple[int, int, int] | None = None) -> Iterator[Row]:
    """A Row per non-blank line (blank lines, e.g. a trailing one, are not rows), raw bytes in ``fields``.
    A UTF-8 byte order mark opening the file is not part of the first line (``nbytes`` still counts it)."""
    offset, index, first_line = at or (0, 0, 1)
    with open(path, "rb") as f:
        f.seek(offset)
        for line_no, raw in enumerate(f, first_line):
            content = raw[len(_BOM):] if line_no == 1 and raw.startswith(_BOM) else raw
            if not content.strip():
                continue
            index += 1
            if index > skip:
                yield Row(index - 1, line_no, len(raw), {"raw": content})


def _read_jsonl(path: str, columns: Sequence[str], skip: int, at=None) -> Iterator[Row]:
    for row in _lines(path, skip, at):
        text, row.error = _decode(row.fields.pop("raw"))
        if row.error is None:
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputFormatError(f"{path}, line {row.line}: not valid JSON ({err.msg} at column {err.colno}); "
                                       "each line of a JSONL file must be one JSON object") from None
            if not isinstance(record, dict):
                raise InputFormatError(f"{path}, line {row.line}: expected a JSON object, got {type(record).__name__}")
            row.fields, row.error = _pick(record, columns)
        yield row


class _CountingReader(io.RawIOBase):
    """Counts bytes as csv pulls text through it, so each CSV row knows how much input it spanned."""

    def __init__(self, raw):
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self.consumed += n or 0
        return n


def _read_csv(path: str, columns: Sequence[str], skip: int, delimiter: str, at=None) -> Iterator[Row]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    with open(path, "rb") as raw, open(path, "rb") as body:
        # surrogateescape keeps undecodable bytes as lone surrogates: the row holding them is reported bad,
        # the rest of the file still parses. utf-8-sig drops a byte order mark opening the file (Excel
        # writes one), which would otherwise stick to the first column's name.
        counter = _CountingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 13), encoding="utf-8-sig",
                                errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputFormatError(f"{path}, line {reader.line_num}: malformed {kind} header ({err})") from None
        for name in columns:
            if name not in header:
                raise InputFormatError(f"{path}, line 1: the {kind} header has no column {name!r} "
                                       f"(columns: {', '.join(header)})")
        positions = [header.index(name) for name in columns]
        index, prev_line, prev_bytes = 0, reader.line_num, 0
        if at is not None:  # the rows from a start csv_row_starts found, read through a second handle
            offset, index, line_no = at
            body.seek(offset)
            counter = _CountingReader(body)
            text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 13), encoding="utf-8", errors="surrogateescape",
                                    newline="")
            reader = csv.reader(text, delimiter=delimiter, strict=True)
            prev_line, skip = line_no - 1, max(skip, index)
            reader_base = prev_line  # csv's line_num counts from the seek
        else:
            reader_base = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # e.g. an unterminated quote: name the line where the row starts
                raise InputFormatError(f"{path}, line {prev_line + 1}: malformed {kind} ({err})") from None
            first_line, prev_line = prev_line + 1, reader_base + reader.line_num
            # Bytes are read ahead in small blocks, so a row's share is lumpy, but the shares sum to the file
            # size: good enough for the ETA, which is all they are for.
            nbytes, prev_bytes = counter.consumed - prev_bytes, counter.consumed
            if not values:
                continue
            index += 1
            if index <= skip:
                continue
            if len(values) != len(header):
                raise InputFormatError(f"{path}, line {first_line}: {len(values)} fields where the header has "
                                       f"{len(header)}")
            row = Row(index - 1, first_line, nbytes)
            row.fields = {name: values[p] for name, p in zip(columns, positions)}
            for name, value in row.fields.items():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    row.error = f"field {name!r} is not valid UTF-8"
                    break
            yield row


def _read_parquet(path: str, columns: Sequence[str], skip: int, batch_rows: int) -> Iterator[Row]:
    pf = _open_parquet(path)
    names = pf.schema_arrow.names
    for name in columns:
        if name not in names:
            raise InputFormatError(f"{path}: the Parquet schema has no column {name!r} (columns: {', '.join(names)})")
    index = 0
    try:
        for group in range(pf.num_row_groups):
            group_rows = pf.metadata.row_group(group).num_rows
            if index + group_rows <= skip:  # resume: whole row groups are skipped unread
                index += group_rows
                continue
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns)):
                data = batch.to_pydict()
                for i in range(batch.num_rows):
                    index += 1
                    if index <= skip:
                        continue
                    row = Row(index - 1, index, 1)
                    row.fields, row.error = _pick({name: data[name][i] for name in columns}, columns)
                    yield row
    except InputFormatError:
        raise
    except Exception as err:
        raise InputFormatError(f"{path}: Parquet read failed near row {index + 1} ({err})") from None


def _read_text(path: str, columns: Sequence[str], skip: int, at=None) -> Iterator[Row]:
    if len(columns) != 1:
        raise ValueError(f"plain text input holds one text per line; this task needs fields {list(columns)}: "
                         "use JSONL, CSV or Parquet")
    for row in _lines(path, skip, at):
        text, row.error = _decode(row.fields.pop("raw").rstrip(b"\r\n"))
        if row.error is None:
            row.fields = {columns[0]: text}
        yield row


def rows_from_records(records, columns: Sequence[str], skip: int = 0) -> Iterator[Row]:
    """In-memory inputs for the Python API: str (one text), tuple/list (text, pair) or dict records."""
    for index, record in enumerate(records):
        if index < skip:
            continue
        row = Row(index, index + 1, 1)
        if isinstance(record, dict):
            row.fields, row.error = _pick(record, columns)
        elif isinstance(record, str):
            if len(columns) != 1:
                row.error = f"a plain string cannot fill fields {list(columns)}; pass a dict or a tuple"
            row.fields = {columns[0]: record}
        elif isinstance(record, (tuple, list)):
            if len(record) != len(columns):
                row.error = f"expected {len(columns)} values ({', '.join(columns)}), got {len(record)}"
            else:
                row.fields = dict(zip(columns, record))
        else:
            row.error = f"unsupported record type {type(record).__name__}"
        yield row
