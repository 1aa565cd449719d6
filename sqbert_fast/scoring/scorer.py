"""The scoring pipeline: rows -> windows -> length-sorted batches -> model -> results in input order.

Two threads. A *prepare* thread reads and parses the input, tokenizes a window of rows at a time with the
Rust ``tokenizers`` library (which releases the GIL), marks bad rows, plans the window's batches and pads
them; the calling thread runs the model on one window while the next is being prepared (a queue of two
windows bounds memory). Results come back per window in input order, which is also the unit the file
writer commits (``writers.py``), so ``--resume`` re-forms the very same batches.

Progress is measured in input units (bytes of a text file, rows of Parquet). A window's units are known
once it is read, its tokens once it is tokenized; inside a window, work done is credited in proportion to
tokens computed, so the ETA stays honest although the batches run longest-first.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .batching import pad_batch, plan_batches
from .fingerprint import state_dict_fingerprint, weights_fingerprint
from .readers import Row, detect_format, input_size, read_rows, rows_from_records
from .recipe import read_recipe
from .tasks import TASKS, TaskOptions, check_positive_int, check_ranges, make_task, ranges_digest
from .writers import ChunkedOutput, detect_output_format

__all__ = ["Scorer", "Summary", "resolve_settings", "score"]

TRUNCATION_MODES = ("truncate", "error")


@dataclass
class Window:
    number: int
    rows: list[Row]
    inputs: list = field(default_factory=list)        # per row: tokenizer input (text or pair) or None
    encodings: list = field(default_factory=list)     # per row: tokenizers.Encoding or None
    pieces: list = field(default_factory=list)        # (row position, encoding) run by the model (QA: windows)
    batches: list = field(default_factory=list)       # (piece positions, padded tensors)
    tokens: int = 0
    units: int = 0


@dataclass
class Summary:
    rows: int = 0
    written: int = 0
    errors: int = 0
    tokens: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0      # inside the model and task heads
    wait_seconds: float = 0.0       # waiting for the prepare thread (reading, tokenizing)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        text = (f"{self.rows:,} rows ({self.written:,} written, {self.errors:,} errors), {self.tokens:,} tokens "
                f"in {_duration(self.seconds)}: {self.rows_per_s:,.1f} rows/s, {self.tokens_per_s:,.0f} tokens/s")
        if self.model_seconds and self.seconds:  # measured by the local pipeline only
            text += (f"; model busy {self.model_seconds / self.seconds:.0%} of the time, "
                     f"{self.wait_seconds:.1f} s waiting for input")
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """A one-line meter on stderr: rows and tokens done, their rates, percent and ETA, errors."""

    def __init__(self, total_units: int | None, done_units: int = 0, enabled: bool = True,
                 stream=None, interval: float = 0.5):
        self.total = total_units
        self.start_units = done_units
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.rows = self.tokens = self.errors = 0
        self.model_seconds = self.wait_seconds = 0.0
        self.units_closed = 0          # units of finished windows (this session)
        self.window_units = self.window_tokens = self.window_done = 0

    def start_window(self, win: Window) -> None:
        self.window_units, self.window_tokens, self.window_done = win.units, win.tokens, 0
        bad = sum(1 for e in win.encodings if e is None)
        self.errors += bad
        self.rows += bad

    def batch_done(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        self.window_done += tokens
        self.show()

    def end_window(self) -> None:
        self.units_closed += self.window_units
        self.window_units = self.window_tokens = self.window_done = 0
        self.show()

    def done_units(self) -> float:
        share = self.window_done / self.window_tokens if self.window_tokens else 0.0
        return self.units_closed + self.window_units * share

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{self.rows:,} rows", f"{self.tokens:,} tokens", f"{self.rows / elapsed:,.1f} rows/s",
                 f"{self.tokens / elapsed:,.0f} tok/s"]
        done = self.done_units()
        if self.total:
            remaining = max(self.total - self.start_units - done, 0)
            parts.append(f"{min(100.0, 100.0 * (self.start_units + done) / self.total):.1f}%")
            parts.append(f"ETA {_duration(elapsed * remaining / done)}" if done > 0 else "ETA ?")
        parts.append(f"{self.errors:,} errors")
        return " | ".join(parts)

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        # Not a terminal (a log file): a line every few seconds rather than a redraw twice a second.
        if not force and now - self.last < (self.interval if self.tty else 10 * self.interval):
            return
        self.last = now
        self.stream.write(("\r" + self.line() + "\033[K") if self.tty else self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.show(force=True)
            if self.tty:
                self.stream.write("\n")


class _Prefetch:
    """Runs a generator in a thread, ``depth`` items ahead; re-raises its exception in the consumer."""

    _END = object()

    def __init__(self, gen: Iterator, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(gen,), name="sqbert-fast-prepare", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, gen: Iterator) -> None:
        try:
            for item in gen:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as err:  # handed to the consumer, which raises it
            self._put((self._END, err))

    def __iter__(self):
        try:
            while True:
                item, err = self._queue.get()
                if err is not None:
                    raise err
                if item is self._END:
                    return
                yield item
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


def _valid_unicode(value: Any) -> bool:
    """False for strings holding lone surrogates (undecodable bytes, or JSON "\\ud800" escapes)."""
    strings = value if isinstance(value, tuple) else (value,)
    try:
        for s in strings:
            s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve_settings(task: str, model_dir: str | None, config, tokenizer, max_length: int | None,
                     options: TaskOptions) -> tuple[TaskOptions, int]:
    """Fill in what the caller left unset (None) from the checkpoint: for ``embed``, the
    sentence-transformers recipe in ``model_dir`` (max_seq_length, pooling, Normalize, do_lower_case; see
    recipe.py), else mean pooling, no normalisation; ``max_length`` defaults to the smaller of the
    tokenizer's model_max_length and max_position_embeddings (and the recipe's max_seq_length). Needs
    no model, only its config and tokenizer (Ray's driver calls it too). Returns (options, max_length)."""
    recipe = read_recipe(model_dir) if task == "embed" and model_dir and os.path.isdir(model_dir) else None
    limit = min(tokenizer.model_max_length, config.max_position_embeddings)
    if max_length is None and recipe is not None and recipe.max_seq_length:
        max_length = min(recipe.max_seq_length, limit)
    max_length = limit if max_length is None else int(max_length)
    if not 3 <= max_length <= config.max_position_embeddings:
        raise ValueError(f"max_length must be in [3, {config.max_position_embeddings}] "
                         f"(max_position_embeddings), got {max_length}")
    fields = asdict(options)
    if fields["pooling"] is None:
        fields["pooling"] = (recipe.pooling if recipe is not None else None) or "mean"
    if fields["normalize"] is None:
        fields["normalize"] = bool(recipe is not None and recipe.normalize)
    if recipe is not None and recipe.do_lower_case:
        fields["lowercase"] = True
    if task != "embed" and fields["embedding_dtype"] != "float32":
        raise ValueError("embedding_dtype (--embedding-dtype) only applies to --task embed")
    if task == "qa":
        if fields["doc_stride"] is None:  # transformers' QA pipeline: min(max_seq_len // 2, 128)
            fields["doc_stride"] = min(max_length // 2, 128)
        if fields["doc_stride"] >= max_length:
            raise ValueError(f"doc_stride (--doc-stride) must be less than max_length ({max_length}): consecutive "
                             f"context windows share doc_stride tokens, got {fields['doc_stride']}")
    elif fields["doc_stride"] is not None:
        raise ValueError("doc_stride (--doc-stride) only applies to --task qa")
    return TaskOptions(**fields), max_length


def freeze_heap() -> None:
    """For a process that exists to score (the CLI, a Ray actor), once its model is loaded: move everything
    allocated so far (torch, the model, the imports) into the collector's permanent generation. They are
    never garbage, and each full collection walked them all again: 3% of an int8 embedding run's time
    (perf, Sapphire Rapids, 7,050 rows). Not done by ``Scorer`` itself: that is the calling process's call."""
    gc.freeze()


class Scorer:
    """A loaded model + tokenizer + task, reusable across inputs.

    Args:
        model: a checkpoint directory (or hub id), or an sqbert_fast model instance (then pass ``tokenizer``).
        task: classify | embed | token-classify | qa | fill-mask.
        tokenizer: a directory, or a ``SqueezeBertTokenizerFast``; defaults to the model directory.
        backend, dtype, device: as ``from_pretrained`` / ``.to()``.
        max_length: longest sequence in tokens; default the smaller of the tokenizer's model_max_length and
            the model's max_position_embeddings, and for ``embed`` a sentence-transformers checkpoint's
            max_seq_length (``sentence_bert_config.json``).
        truncation: "truncate" cuts longer rows (QA cuts the context); "error" sends them to the errors.
        max_tokens: padded-token budget of a batch; max_batch_size: rows per batch at most.
        window: rows read, sorted and committed together (bounds memory; fixes the batches).
        num_threads: ``sqf.set_num_threads`` for the run.
        embedding_ranges: embed with ``embedding_dtype="int8"``: the per-dimension [minima, maxima], an array
            of shape [2, dim] or a .npy file (sentence-transformers' ``ranges``). Left out, each scored input
            is calibrated on its own first ``int8_calibration_rows`` rows (see ``calibrate``).
        **task_options: fields of ``TaskOptions`` (text_field, pair_field, question_field, context_field,
            all_scores, top_k, pooling, normalize, max_answer_tokens, embedding_dtype,
            int8_calibration_rows, doc_stride). For ``embed``, pooling and normalize left out (None) follow
            the checkpoint's sentence-transformers recipe (``recipe.py``: 1_Pooling, a Normalize module in
            modules.json), else mean and no normalisation; given ones win. ``embedding_dtype``: float32,
            float16, int8 or ubinary (``tasks.quantize_embeddings``), applied after normalisation. ``doc_stride``
            (qa): tokens shared by consecutive context windows, default min(max_length // 2, 128).
    """

    def __init__(self, model: Any, task: str = "classify", *, tokenizer: Any = None, backend: str = "auto",
                 dtype: Any = None, device: Any = None, max_length: int | None = None,
                 truncation: str = "truncate", max_tokens: int = 8192, max_batch_size: int = 256,
                 window: int = 2048, num_threads: int | None = None, embedding_ranges: Any = None,
                 **task_options: Any):
        import sqbert_fast as sqf

        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
        window = check_positive_int("window", window)
        max_tokens = check_positive_int("max_tokens", max_tokens)
        max_batch_size = check_positive_int("max_batch_size", max_batch_size)
        options = TaskOptions(**task_options)
        if num_threads is not None:
            sqf.set_num_threads(num_threads)
        # The weights' fingerprint, taken before they are read (see fingerprint.py); None: hash the state_dict.
        self._weights: dict | None = None
        model_dir = None
        if isinstance(model, (str, os.PathLike)):
            self.model_name = os.fspath(model)
            if os.path.isdir(model):
                self._weights = weights_fingerprint(model)
                model_dir = self.model_name
            cls = getattr(sqf, TASKS[task].model_class)
            model = cls.from_pretrained(model, backend=backend, dtype=dtype)
            if tokenizer is None:
                tokenizer = self.model_name
        else:
            self.model_name = type(model).__name__
            if tokenizer is None:
                raise ValueError("pass tokenizer= when model is a model instance")
        if device is not None:
            model = model.to(device)
        self.model = model
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = sqf.SqueezeBertTokenizerFast.from_pretrained(tokenizer)
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.options, self.max_length = resolve_settings(task, model_dir, model.config, tokenizer, max_length, options)
        self.task = make_task(task, self.options, model, tokenizer)
        self.embedding_ranges = None  # given by the caller; a run without them calibrates its own
        if embedding_ranges is not None:
            if task != "embed" or self.options.embedding_dtype != "int8":
                raise ValueError("embedding_ranges (--int8-ranges) only applies to --task embed --embedding-dtype int8")
            self.embedding_ranges = check_ranges(embedding_ranges, self.task.dim())
        self.truncation = truncation
        self.max_tokens = max(int(max_tokens), self.max_length)  # a full-length row must fit a batch
        self.max_batch_size = int(max_batch_size)
        self.window = int(window)
        self.pad_id = tokenizer.pad_token_id or 0
        # A private copy of the Rust tokenizer: the shared one has its padding/truncation switched per call.
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length, strategy=self.task.truncation,
                                    stride=self.options.doc_stride or 0)
        self._needs_offsets = task in ("token-classify", "qa")
        # qa: the room a window leaves for context is max_length - question - specials; the Rust tokenizer
        # panics (not an exception) when doc_stride does not fit in it, so such rows are refused first.
        self._pair_specials = self._tok.post_processor.num_special_tokens_to_add(True) if task == "qa" else 0

    # ---- public API ------------------------------------------------------------------------------
    def columns(self, id_field: str | None = None) -> list[str]:
        cols = self.task.columns()
        if id_field and id_field not in cols:
            cols = cols + [id_field]
        return cols

    def score(self, inputs: Any, *, id_field: str | None = None, input_format: str | None = None,
              progress: bool = False) -> Iterator[dict]:
        """Results in input order, one dict per row: ``{"id": ..., <task fields>}``, or
        ``{"id": ..., "error": reason}`` for a bad row. ``inputs``: a file path, or an iterable of texts,
        (text, pair) tuples or dict records."""
        cols = self.columns(id_field)
        if isinstance(inputs, (str, os.PathLike)):
            fmt = detect_format(inputs, input_format)
            self.task.ranges = self.embedding_ranges
            if self._needs_ranges() and self.embedding_ranges is None:
                self.calibrate(read_rows(inputs, fmt, columns=cols))
            rows = read_rows(inputs, fmt, columns=cols)
            meter = Progress(input_size(inputs, fmt), enabled=progress)
        else:
            inputs = iter(inputs)
            self.task.ranges = self.embedding_ranges
            if self._needs_ranges() and self.embedding_ranges is None:  # calibrate on the head, then score it with the rest
                head = list(itertools.islice(inputs, self.options.int8_calibration_rows))
                self.calibrate(rows_from_records(head, cols))
                inputs = itertools.chain(head, inputs)
            rows = rows_from_records(inputs, cols)
            meter = Progress(None, enabled=progress)
        try:
            for win, results in self.run_windows(rows, meter):
                for row, result in zip(win.rows, results):
                    rid = self._row_id(row, id_field)
                    yield {"id": rid, "error": result} if isinstance(result, str) else {"id": rid, **result}
        finally:
            meter.close()

    def score_file(self, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                   input_format: str | None = None, output_format: str | None = None, id_field: str | None = None,
                   errors_path: str | None = None, embeddings_npy: str | None = None, resume: bool = False,
                   overwrite: bool = False, progress: bool = True) -> Summary:
        """Score a file into a file in input order, committing each window; see ``writers.ChunkedOutput``."""
        t0 = time.perf_counter()
        in_fmt = detect_format(input_path, input_format)
        if not os.path.isfile(input_path):
            raise FileNotFoundError(f"input file {input_path} does not exist")
        total = input_size(input_path, in_fmt)  # fails on an unreadable file before any output is made
        out = self.open_output(input_path, output_path, in_fmt, output_format, id_field, errors_path,
                               embeddings_npy, resume, overwrite)
        if self._needs_ranges():
            # Calibrated once, kept in state.json: a resumed run quantizes with the very same ranges.
            if out.state.get("embedding_ranges") is not None:
                self.task.ranges = check_ranges(out.state["embedding_ranges"], self.task.dim())
            else:
                if self.embedding_ranges is None:
                    self.calibrate(read_rows(input_path, in_fmt, columns=self.columns(id_field)))
                else:
                    self.task.ranges = self.embedding_ranges
                out.state["embedding_ranges"] = self.task.ranges.tolist()
                out.commit_state()
        meter = Progress(total, out.state["units"], enabled=progress)
        if not out.complete:
            rows = read_rows(input_path, in_fmt, columns=self.columns(id_field), skip=out.rows_consumed)
            try:
                for win, results in self.run_windows(rows, meter, first_row=out.rows_consumed):
                    records, errors = self.split_results(win, results, id_field,
                                                         stringify_id=bool(id_field) and out.fmt != "jsonl")
                    out.commit(records, errors, len(win.rows), win.units, win.tokens)
            finally:
                meter.close()
        out.finish()
        return Summary(rows=meter.rows, written=out.state["rows_written"], errors=out.state["errors"],
                       tokens=meter.tokens, seconds=time.perf_counter() - t0, model_seconds=meter.model_seconds,
                       wait_seconds=meter.wait_seconds)

    def _needs_ranges(self) -> bool:
        return self.task.name == "embed" and self.options.embedding_dtype == "int8"

    def calibrate(self, inputs: Any, rows: int | None = None) -> np.ndarray:
        """int8 ranges from data, as sentence-transformers' calibration embeddings give them: the minimum and
        maximum of each dimension over the (normalised, if normalize) float32 embeddings of the first ``rows``
        rows of ``inputs`` (default ``int8_calibration_rows``; bad rows are skipped). A streaming scorer
        cannot see all embeddings before writing the first, so the head of the input stands for the whole;
        values beyond it are clipped to the range's ends. Sets and returns them ([2, dim] float32).
        ``inputs``: rows (readers.Row), or texts / (text, pair) tuples / dict records."""
        if self.task.name != "embed":
            raise ValueError("calibrate only applies to --task embed")
        rows = check_positive_int("int8_calibration_rows", rows or self.options.int8_calibration_rows)
        head = list(itertools.islice(iter(inputs), rows))
        if head and not isinstance(head[0], Row):
            head = list(rows_from_records(head, self.columns()))
        vectors = []
        self.task.calibrating = True
        try:
            for _, results in self.run_windows(head):
                vectors += [r["embedding"] for r in results if not isinstance(r, str)]
        finally:
            self.task.calibrating = False
        if not vectors:
            raise ValueError(f"no valid row among the first {rows} to calibrate the int8 ranges on "
                             "(pass --int8-ranges)")
        emb = np.stack(vectors)
        self.task.ranges = np.stack([emb.min(axis=0), emb.max(axis=0)]).astype(np.float32)
        return self.task.ranges

    def output_columns(self, output_format: str, id_field: str | None, embeddings_npy: str | None) -> list:
        import pyarrow as pa

        id_type = pa.string() if id_field and output_format != "jsonl" else pa.int64()
        cols = [("id", id_type)] + self.task.schema()
        if embeddings_npy:
            cols = [c for c in cols if c[0] != "embedding"]
        return cols

    def weights_fingerprint(self) -> dict:
        """The checkpoint files' fingerprints as they were when loaded, or (a model instance, a hub id) a
        hash of the model's state_dict as it is now."""
        if self._weights is not None:
            return self._weights
        return {"state_dict": state_dict_fingerprint(self.model)}

    def compute_dtype(self) -> torch.dtype:
        """The precision the model runs in: its GEMM weights' dtype (a bf16/fp16 CPU model keeps its
        embeddings and LayerNorms in fp32, so the first parameter's dtype does not tell)."""
        device_dtype = getattr(self.model, "_device_dtype", None)
        return device_dtype()[1] if device_dtype else next(self.model.parameters()).dtype

    def fingerprint(self, input_path, in_fmt: str, out_fmt: str, id_field, embeddings_npy) -> dict:
        """Everything that decides the output bytes; a resumed run must match it."""
        st = os.stat(input_path)
        return {
            "input": os.path.abspath(input_path), "input_format": in_fmt, "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns, "model": self.model_name, "weights": self.weights_fingerprint(),
            "tokenizer": hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest(),
            "backend": self.model.backend,
            "dtype": str(self.compute_dtype()), "task": self.task.name,
            "options": asdict(self.options), "max_length": self.max_length, "truncation": self.truncation,
            "max_tokens": self.max_tokens, "max_batch_size": self.max_batch_size, "window": self.window,
            "output_format": out_fmt, "id_field": id_field, "embeddings_npy": embeddings_npy,
            "embedding_ranges": ranges_digest(self.embedding_ranges),
        }

    def open_output(self, input_path, output_path, in_fmt, output_format, id_field, errors_path, embeddings_npy,
                    resume, overwrite) -> ChunkedOutput:
        out_fmt = detect_output_format(output_path, output_format)
        if embeddings_npy and self.task.name != "embed":
            raise ValueError("embeddings_npy (--embeddings-npy) only applies to --task embed")
        embed = self.task.name == "embed"
        return ChunkedOutput(
            output_path, out_fmt, self.output_columns(out_fmt, id_field, embeddings_npy),
            self.fingerprint(input_path, in_fmt, out_fmt, id_field, embeddings_npy),
            errors_path=errors_path, npy_path=embeddings_npy, resume=resume, overwrite=overwrite,
            input_path=input_path, npy_dtype=self.task.vector_dtype() if embed else np.float32,
            ranges=self._needs_ranges())

    # ---- the pipeline ------------------------------------------------------------------------------
    def run_windows(self, rows: Iterable[Row], meter: Progress | None = None,
                    first_row: int = 0) -> Iterator[tuple[Window, list]]:
        """(window, per-row results) in input order; a result is a dict, or a str (the row's error)."""
        meter = meter or Progress(None, enabled=False)
        prepared = iter(_Prefetch(self._prepared_windows(rows, first_row)))
        try:
            while True:
                t0 = time.perf_counter()
                win = next(prepared, None)
                t1 = time.perf_counter()
                meter.wait_seconds += t1 - t0
                if win is None:
                    return
                meter.start_window(win)
                results = self.compute(win, meter)
                meter.model_seconds += time.perf_counter() - t1
                meter.end_window()
                yield win, results
        finally:
            prepared.close()  # stops the prepare thread when the consumer stops early

    def _prepared_windows(self, rows: Iterable[Row], first_row: int) -> Iterator[Window]:
        number = first_row // self.window
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) == self.window:
                yield self.prepare(Window(number, batch))
                number, batch = number + 1, []
        if batch:
            yield self.prepare(Window(number, batch))

    def prepare(self, win: Window) -> Window:
        """Tokenize a window, mark its bad rows, plan and pad its batches (the prepare thread's work)."""
        n = len(win.rows)
        win.units = sum(r.nbytes for r in win.rows)
        win.inputs = [None] * n
        win.encodings = [None] * n
        todo = []
        for i, row in enumerate(win.rows):
            if row.error is None:
                inp, row.error = self.task.tokenizer_input(row.fields)
                if row.error is None and not _valid_unicode(inp):
                    row.error = "text is not valid Unicode (undecodable bytes or a lone surrogate)"
                if row.error is None:
                    win.inputs[i] = inp
                    todo.append(i)
        if self.options.doc_stride is not None:
            todo = self._check_questions(win, todo)
        for i, enc in zip(todo, self._encode([win.inputs[i] for i in todo])):
            row = win.rows[i]
            if isinstance(enc, str):
                row.error = enc
            elif self.truncation == "error" and enc.overflowing and self.options.doc_stride is None:
                row.error = f"longer than max_length={self.max_length} tokens (--truncation error)"
            else:
                row.error = self.task.check(enc)
            if row.error is None:
                win.encodings[i] = enc
        win.pieces = [(i, piece) for i in range(n) if win.encodings[i] is not None
                      for piece in self.task.pieces(win.encodings[i])]
        lengths = [len(piece.ids) for _, piece in win.pieces]
        win.tokens = sum(lengths)
        for batch in plan_batches(lengths, self.max_tokens, self.max_batch_size):
            win.batches.append((batch, pad_batch([win.pieces[p][1] for p in batch], self.pad_id)))
        return win

    def _check_questions(self, win: Window, todo: list[int]) -> list[int]:
        """qa: refuse rows whose question leaves a window no more than doc_stride context tokens (the Rust
        tokenizer would panic on them); returns the rows still to encode."""
        questions = [win.inputs[i][0] for i in todo]
        try:
            counted = self._tok.encode_batch_fast(questions, add_special_tokens=False)
        except Exception:  # a bad question: leave it to _encode, which names the row
            return todo
        keep = []
        for i, enc in zip(todo, counted):
            room = self.max_length - len(enc.ids) - self._pair_specials
            if room <= self.options.doc_stride:
                win.rows[i].error = (f"the question takes {len(enc.ids)} tokens, leaving {max(room, 0)} of "
                                     f"max_length={self.max_length} for context, which must be more than "
                                     f"doc_stride={self.options.doc_stride} (shorten it, or lower --doc-stride)")
            else:
                keep.append(i)
        return keep

    def _encode(self, inputs: list) -> list:
        if not inputs:
            return []
        encode = self._tok.encode_batch if self._needs_offsets else self._tok.encode_batch_fast
        try:
            return encode(inputs)
        except Exception:  # one bad row fails the whole Rust batch: find it, keep the others
            out = []
            for inp in inputs:
                try:
                    out.append(encode([inp])[0])
                except Exception as err:
                    out.append(f"tokenization failed: {err}")
            return out

    @torch.inference_mode()
    def compute(self, win: Window, meter: Progress) -> list:
        results: list = [row.error for row in win.rows]
        outputs: list = [None] * len(win.pieces)
        left = [0] * len(win.rows)  # pieces still to run, per row
        for i, _ in win.pieces:
            left[i] += 1
        for batch, tensors in win.batches:
            tensors = {k: v.to(self.device) for k, v in tensors.items()}
            encodings = [win.pieces[p][1] for p in batch]
            rows = [win.pieces[p][0] for p in batch]
            for p, out in zip(batch, self.task.run(tensors, encodings, [win.inputs[i] for i in rows])):
                outputs[p] = out
            done = 0
            for i in rows:
                left[i] -= 1
                done += left[i] == 0
            meter.batch_done(done, sum(len(e.ids) for e in encodings))
        per_row: dict[int, list] = {}
        for (i, _), out in zip(win.pieces, outputs):
            per_row.setdefault(i, []).append(out)
        for i, outs in per_row.items():
            results[i] = self.task.merge(outs)
        return results

    @staticmethod
    def _row_id(row: Row, id_field: str | None) -> Any:
        if id_field and id_field in row.fields:
            return row.fields[id_field]
        return row.index

    def split_results(self, win: Window, results: list, id_field: str | None,
                      stringify_id: bool = False) -> tuple[list[dict], list[dict]]:
        """Per-row results -> (output records, error records with id, row, line and reason)."""
        records, errors = [], []
        for row, result in zip(win.rows, results):
            rid = self._row_id(row, id_field)
            if isinstance(result, str):
                errors.append({"id": rid, "row": row.index, "line": row.line, "reason": result})
            else:
                records.append({"id": str(rid) if stringify_id else rid, **result})
        return records, errors


def score(model: Any, inputs: Any, task: str = "classify", *, id_field: str | None = None,
          input_format: str | None = None, progress: bool = False, **options: Any) -> Iterator[dict]:
    """Score ``inputs`` (a file path, or an iterable of texts / (text, pair) tuples / dicts) with ``model``.

    Returns an iterator of result dicts in input order (see ``Scorer.score``); ``options`` go to ``Scorer``.
    To score several inputs with one loaded model, build a ``Scorer`` once and call its ``score``.
    """
    return Scorer(model, task, **options).score(inputs, id_field=id_field, input_format=input_format,
                                                progress=progress)
