"""Property-based: fuzzed input files through ``Scorer.score_file``, for every input format.

Two properties, each bounded in examples and time (CI runs them; about 20 s in all on 2 cores):
- a corpus of rows, some bad in every way a row can be bad (empty, undecodable bytes, a lone surrogate,
  a missing, null or non-string field), written as JSONL, CSV, TSV, Parquet or text, with or without a
  UTF-8 byte order mark: the run completes, every good row is in OUTPUT and every bad row is in the
  errors file, each once, in input order;
- a valid file with random bytes overwritten, inserted or cut off: the run either completes with every
  row in OUTPUT or in the errors file exactly once, or refuses the file with ``InputFormatError`` naming
  where it is malformed; never another exception.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqbert_fast.scoring import InputFormatError, Scorer

from test_scoring import WORDS, models  # noqa: F401  (the tiny checkpoints fixture)

pa = pytest.importorskip("pyarrow", reason="the scoring extra (pip install sqbert_fast[scoring]) provides pyarrow")
import pyarrow.parquet as pq  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
FORMATS = ["jsonl", "csv", "tsv", "parquet", "text"]
EXT = {"jsonl": "jsonl", "csv": "csv", "tsv": "tsv", "parquet": "parquet", "text": "txt"}
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def scorer(models):
    return Scorer(models["classify"], "classify", window=3, max_tokens=64)


def _run(scorer, fmt: str, data: bytes):
    """Score ``data`` as a file of format ``fmt``: (output ids, error records), or the InputFormatError."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in." + EXT[fmt])
        with open(src, "wb") as f:
            f.write(data)
        out = os.path.join(d, "out.jsonl")
        try:
            summary = scorer.score_file(src, out, progress=False)
        except InputFormatError as err:
            assert "in." + EXT[fmt] in str(err)  # the message names the file
            return err
        with open(out, encoding="utf-8") as f:
            ids = [json.loads(line)["id"] for line in f]
        errors_path = out + ".errors.jsonl"
        errors = []
        if os.path.exists(errors_path):
            with open(errors_path, encoding="utf-8") as f:
                errors = [json.loads(line) for line in f]
        assert summary.written == len(ids) and summary.errors == len(errors)
        assert not os.path.exists(out + ".parts")
        return ids, errors


# ---- rows: good ones and every kind of bad one ----------------------------------------------------------

GOOD = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join) | st.text(min_size=1, max_size=20).filter(
    lambda s: s.strip() and "\n" not in s and "\r" not in s)
BLANK = st.sampled_from(["", " ", "\t ", "\u3000", "\u00a0\u2003"])  # empty once stripped
BAD_KINDS = ["blank", "latin1", "surrogate", "missing", "null", "number", "list"]
ROW = st.one_of(st.tuples(st.just("good"), GOOD), st.tuples(st.sampled_from(BAD_KINDS), GOOD | BLANK))
# Which bad kinds each format can hold (CSV/TSV/text cells are strings; Parquet strings are valid UTF-8).
KINDS = {"jsonl": set(BAD_KINDS), "csv": {"blank", "latin1"}, "tsv": {"blank", "latin1"},
         "text": {"blank", "latin1"}, "parquet": {"blank", "null"}}


def _cell(kind: str, text: str) -> str:
    """The text as the row holds it; a lone surrogate stands for bytes to write undecodable."""
    if kind == "blank":
        return text if not text.strip() else " "
    if kind == "latin1":
        return text + "\udcff"  # written as the byte 0xff (surrogateescape): not UTF-8
    return text


def _encode(fmt: str, rows: list[tuple[str, str]], bom: bool) -> bytes:
    if fmt == "parquet":
        values = [None if kind == "null" else _cell(kind, text) for kind, text in rows]
        buf = io.BytesIO()
        pq.write_table(pa.table({"text": pa.array(values, pa.string())}), buf, row_group_size=4)
        return buf.getvalue()
    if fmt == "jsonl":
        lines = []
        for kind, text in rows:
            record = {"text": text, "id": "x"}
            if kind == "blank":
                record["text"] = _cell(kind, text)
            elif kind == "missing":
                del record["text"]
            elif kind in ("null", "number", "list"):
                record["text"] = {"null": None, "number": 5, "list": [text]}[kind]
            line = json.dumps(record, ensure_ascii=False)
            if kind == "latin1":
                line = line.replace('"text": "', '"text": "\udcff', 1)
            elif kind == "surrogate":
                line = line.replace('"text": "', '"text": "\\ud800', 1)
            lines.append(line)
        body = "\n".join(lines) + "\n"
    elif fmt == "text":
        body = "".join(_cell(kind, text) + "\n" for kind, text in rows)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(["text", "id"])
        writer.writerows([_cell(kind, text), "x"] for kind, text in rows)
        body = buf.getvalue()
    return (BOM if bom else b"") + body.encode("utf-8", "surrogateescape")


def _is_row(fmt: str, kind: str, text: str) -> bool:
    """Text lines blank to the byte (ASCII whitespace) are not rows, as blank JSONL lines are not."""
    return fmt != "text" or kind != "blank" or bool(_cell(kind, text).encode("utf-8").strip())


@FUZZ
@given(fmt=st.sampled_from(FORMATS), rows=st.lists(ROW, min_size=1, max_size=12), bom=st.booleans())
def test_every_bad_row_lands_in_the_errors_file(scorer, fmt, rows, bom):
    if fmt == "parquet":
        bom = False  # a byte order mark belongs to text files
    rows = [(kind if kind in KINDS[fmt] or kind == "good" else "blank", text) for kind, text in rows]
    rows = [r for r in rows if _is_row(fmt, *r)]
    result = _run(scorer, fmt, _encode(fmt, rows, bom))
    assert not isinstance(result, Exception), result
    ids, errors = result
    assert ids == [i for i, (kind, _) in enumerate(rows) if kind == "good"]
    assert [e["row"] for e in errors] == [i for i, (kind, _) in enumerate(rows) if kind != "good"]
    for e in errors:
        assert e["reason"] and e["id"] == e["row"]


# ---- random damage to a valid file -------------------------------------------------------------------------

def _valid(fmt: str) -> bytes:
    rows = [("good", " ".join(WORDS[i:i + 4])) for i in range(0, 40, 4)] + [("blank", " "), ("latin1", "plot")]
    return _encode(fmt, [r for r in rows if fmt != "parquet" or r[0] != "latin1"], bom=False)


@FUZZ
@given(fmt=st.sampled_from(FORMATS),
       edits=st.lists(st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 10**6),
                                st.binary(min_size=1, max_size=3)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 10**6))
def test_damaged_files_are_scored_or_refused_by_name(scorer, fmt, edits, cut):
    data = bytearray(_valid(fmt))
    for op, pos, value in edits:
        pos %= len(data) + 1
        if op == "set":
            data[pos:pos + len(value)] = value
        elif op == "insert":
            data[pos:pos] = value
        else:
            del data[pos:pos + len(value)]
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    result = _run(scorer, fmt, bytes(data))
    if isinstance(result, Exception):
        return  # malformed file: refused, naming the file
    ids, errors = result
    assert sorted(ids + [e["row"] for e in errors]) == list(range(len(ids) + len(errors)))
    assert ids == sorted(ids)


# ---- CSV/TSV shards start where they start (csv_row_starts + read_rows(at=)) ----------------------------
CELL = st.text(alphabet=st.sampled_from(list('ab ,\t"\n\r') + ["\u00e9", "\u4e00"]), max_size=8)


@FUZZ
@given(cells=st.lists(CELL, min_size=0, max_size=40), blank_every=st.integers(2, 9), every=st.integers(1, 7),
       bom=st.booleans(), crlf=st.booleans(), tsv=st.booleans())
def test_csv_shard_starts_read_the_same_rows_as_a_full_read(cells, blank_every, every, bom, crlf, tsv):
    """Quoted fields with newlines, delimiters and quotes inside, blank lines between records, a BOM, CRLF: every
    position csv_row_starts gives reads, through read_rows(at=), exactly the rows (index, line, fields) a read
    from the start gives from there on. The Ray path plans its CSV shards with it."""
    from sqbert_fast.scoring.readers import csv_row_starts, read_rows

    delim, ext = ("\t", "tsv") if tsv else (",", "csv")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delim, lineterminator="\r\n" if crlf else "\n")
    w.writerow(["id", "text"])
    for i, c in enumerate(cells):
        w.writerow([i, c])
        if i % blank_every == 0:
            buf.write("\r\n" if crlf else "\n")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "in." + ext)
        with open(path, "wb") as f:
            f.write((BOM if bom else b"") + buf.getvalue().encode("utf-8"))
        rows, starts = csv_row_starts(path, every, delim)
        try:
            full = [(r.index, r.line, r.fields, r.error) for r in read_rows(path, ext, columns=["id", "text"])]
        except InputFormatError:  # e.g. a lone \r the writer left unquoted: the shards say so too
            with pytest.raises(InputFormatError):
                for offset, index, line in starts:
                    list(read_rows(path, ext, columns=["id", "text"], skip=index, at=(offset, index, line)))
            return
        assert rows == len(full) == len(cells)
        assert [s[1] for s in starts] == list(range(0, rows, every))
        for offset, index, line in starts:
            part = [(r.index, r.line, r.fields, r.error)
                    for r in read_rows(path, ext, columns=["id", "text"], skip=index, at=(offset, index, line))]
            assert part == full[index:]
