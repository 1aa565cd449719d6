"""Run the scorer on a Ray cluster: workers read, score and write in parallel; the driver only plans.

    import ray
    from sqbert_fast.scoring.ray import score_dataset, score_file_ray
    ray.init(address="auto")
    score_file_ray("model_dir", "/shared/reviews.jsonl", "/shared/scores.parquet", task="classify",
                   num_actors=16, num_cpus=4)

``score_file_ray`` (``sqbert-fast score ... --ray ADDRESS``):

1. The driver never loads the model. It reads the checkpoint's config and tokenizer (and, for ``embed``, its
   sentence-transformers recipe) to fix the options, the output schema and the run's fingerprint.
2. It cuts the input into *shards* of consecutive rows (``shard_rows``, a multiple of ``window``): a Ray task
   counts the rows (JSONL/text: one unparsed pass that also records each shard's byte offset; Parquet: its
   footer; CSV/TSV: a parsing pass, and each shard then skips its predecessors' rows by parsing).
3. Ray Data sends the shards (a few integers each) to an actor pool holding one ``Scorer`` per actor. An
   actor reads its own rows from the input, runs exactly the single-machine pipeline on them (windows,
   length-sorted batches under the token budget) and writes the shard as part files into ``OUTPUT.parts/``
   (``part-NNNNNN.<format>``, ``.errors.jsonl``, ``.npy``), each fsynced and renamed into place, then a
   ``part-NNNNNN.done`` marker with its counts: the shard's commit. Only those counts return to the driver.
   Results are Arrow all the way: Parquet parts hold embeddings as ``fixed_size_list<float32>``.
4. When every shard is committed, the driver merges the parts in shard order into the single OUTPUT the user
   asked for, as the local path does (``merge=False`` / ``--ray-no-merge`` leaves the parts as the output).

Embeddings are quantized (``embedding_dtype``) by the actors with the local path's code. int8 ranges, unless
given, come from one Ray task that embeds the input's first ``int8_calibration_rows`` rows as the local path
does (same windows, same batches); the driver keeps them in state.json and hands them to every actor, so a
resumed run and every shard use the same ones.

Resume: a run killed at any point (driver SIGKILL, lost nodes) and started again with ``resume=True``
(``--resume``) skips shards whose ``.done`` marker exists and redoes the others; since a shard's rows, and
so its windows and batches, do not depend on the run, the merged file equals an uninterrupted run's. A
different input, model or option is refused, as locally. Ray itself retries a shard whose actor died.

``score_dataset`` is the Ray Data building block for pipelines of one's own: a Dataset in, a Dataset out
with Arrow result columns (plus ``error`` and ``tokens``), never pickled objects.

The checkpoint directory is shipped to the actors through the object store, so worker nodes need no copy
of it; the input and OUTPUT's directory must be reachable from every node (shared storage).

Sizing (``plan_actors``): one CPU is kept free of actors for Ray Data's own tasks; left to itself
(``num_cpus=None``) each actor gets an equal share of the rest; a plan that cannot be placed on the
cluster's nodes next to that reserved CPU is refused before anything starts, saying why.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from .readers import Row, _pick, csv_row_starts, detect_format, line_starts, read_rows
from .fingerprint import weights_fingerprint
from .scorer import Progress, Scorer, Summary, Window, freeze_heap, resolve_settings
from .tasks import TASKS, TaskOptions, check_positive_int, check_ranges, make_task, ranges_digest
from .writers import (_STATE_VERSION, ChunkedOutput, ResumeError, _differences, check_paths, detect_output_format,
                      records_table)

__all__ = ["ActorPlan", "cluster_nodes", "describe_run", "plan_actors", "read_dataset", "score_dataset",
           "score_file_ray"]

_RAY_STATE = "ray"


def _ship_dir(path: str) -> Any:
    """A local checkpoint directory -> {file name: bytes} (top-level files only), for the object store."""
    if not os.path.isdir(path):
        return path  # a hub id: each actor fetches it
    files = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                files[name] = f.read()
    return files


IO_CPUS = 1.0  # what Ray Data's read tasks ask for; kept free of actors


@dataclass(frozen=True)
class ActorPlan:
    num_actors: int
    num_cpus: float
    num_gpus: float


def _fits(nodes: list[dict], num_actors: int, cpus: float, gpus: float, io_cpus: float) -> bool:
    """Whether ``num_actors`` actors of (cpus, gpus) fit on ``nodes`` with ``io_cpus`` left on one node."""
    eps = 1e-9

    def room(free_cpu: float, free_gpu: float) -> float:
        if free_cpu < -eps or free_gpu < -eps:
            return -1
        by_cpu = math.floor((free_cpu + eps) / cpus) if cpus > 0 else math.inf
        by_gpu = math.floor((free_gpu + eps) / gpus) if gpus > 0 else math.inf
        return min(by_cpu, by_gpu)

    for io_node in range(len(nodes)):  # the node that keeps the readers' CPU
        total = 0.0
        for i, node in enumerate(nodes):
            n = room(node.get("CPU", 0.0) - (io_cpus if i == io_node else 0.0), node.get("GPU", 0.0))
            if n < 0:
                break
            total += n
        else:
            if total >= num_actors:
                return True
    return False


def plan_actors(nodes: list[dict], num_actors: int = 2, num_cpus: float | None = None, num_gpus: float = 0.0,
                io_cpus: float = IO_CPUS) -> ActorPlan:
    """Size the actor pool for ``nodes`` (``[{"CPU": n, "GPU": m}, ...]``, one dict per node), keeping
    ``io_cpus`` free on one node for Ray Data's read tasks. ``num_cpus=None``: the largest equal share that
    fits (rounded down to 0.01 CPU). Raises ValueError, saying why, for a plan that could never be scheduled."""
    num_actors = check_positive_int("ray_actors", num_actors)
    if num_cpus is not None and not num_cpus >= 0:
        raise ValueError(f"--ray-cpus-per-actor must be >= 0, got {num_cpus}")
    if not num_gpus >= 0:
        raise ValueError(f"--ray-gpus-per-actor must be >= 0, got {num_gpus}")
    cpu_total = sum(n.get("CPU", 0.0) for n in nodes)
    gpu_total = sum(n.get("GPU", 0.0) for n in nodes)
    have = (f"the cluster has {cpu_total:g} CPU(s) and {gpu_total:g} GPU(s) over {len(nodes)} node(s), and "
            f"Ray Data's read tasks need {io_cpus:g} CPU beside the actors (else the run waits forever)")
    if num_gpus > 0 and not _fits(nodes, num_actors, 0.0, num_gpus, io_cpus):
        raise ValueError(f"cannot schedule {num_actors} actor(s) of {num_gpus:g} GPU(s) each: the cluster has "
                         f"{gpu_total:g} GPU(s) over {len(nodes)} node(s); use fewer actors (--ray-actors) or "
                         "fewer GPUs per actor (--ray-gpus-per-actor)")
    if num_cpus is None:
        shares = {(n.get("CPU", 0.0) - extra) / m for n in nodes for extra in (0.0, io_cpus)
                  for m in range(1, num_actors + 1)}
        fitting = [c for c in (math.floor(x * 100) / 100 for x in shares)
                   if c > 0 and _fits(nodes, num_actors, c, num_gpus, io_cpus)]
        if not fitting:
            raise ValueError(f"cannot schedule {num_actors} actor(s): {have}; use fewer actors "
                             "(--ray-actors) or a cluster with more CPUs")
        return ActorPlan(num_actors, max(fitting), float(num_gpus))
    if not _fits(nodes, num_actors, num_cpus, num_gpus, io_cpus):
        hint = "use fewer actors (--ray-actors)"
        try:
            hint += f", or --ray-cpus-per-actor {plan_actors(nodes, num_actors, None, num_gpus, io_cpus).num_cpus:g}"
        except ValueError:
            pass
        raise ValueError(f"cannot schedule {num_actors} actor(s) of {num_cpus:g} CPU(s) each: {have}; {hint} "
                         "(leave --ray-cpus-per-actor out to size actors from the cluster)")
    return ActorPlan(num_actors, float(num_cpus), float(num_gpus))


def cluster_nodes() -> list[dict]:
    """The CPUs and GPUs of each live node of the running Ray cluster (totals: busy ones free up later)."""
    import ray

    nodes = [{"CPU": float(n["Resources"].get("CPU", 0.0)), "GPU": float(n["Resources"].get("GPU", 0.0))}
             for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        total = ray.cluster_resources()
        nodes = [{"CPU": float(total.get("CPU", 0.0)), "GPU": float(total.get("GPU", 0.0))}]
    return nodes




def _materialize(model: Any) -> tuple[Any, str | None]:
    """A shipped checkpoint ({file name: bytes}) -> a temporary directory (and its path, to remove)."""
    if not isinstance(model, dict):
        return model, None
    tmp = tempfile.mkdtemp(prefix="sqbert-fast-model-")
    for name, data in model.items():
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
    return tmp, tmp


@dataclass
class RunDescription:
    """What the driver decides without loading the model: resolved options, schema, the actors' Scorer kwargs."""
    task: str
    options: TaskOptions
    max_length: int
    columns: list            # task input fields (+ id field)
    scorer_kwargs: dict      # for the actors: every option resolved, so they follow the driver's decisions
    tokenizer_hash: str
    task_obj: Any            # a Task without a model: its schema


def describe_run(model: str, id_field: str | None = None, **scorer_kwargs: Any) -> RunDescription:
    """Options, schema and fingerprint inputs from the checkpoint's config and tokenizer only (no weights)."""
    import sqbert_fast as sqf

    kw = dict(scorer_kwargs)
    task = kw.get("task", "classify")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    config = sqf.SqueezeBertConfig.from_pretrained(model)
    tokenizer = sqf.SqueezeBertTokenizerFast.from_pretrained(model)
    opts = TaskOptions(**{k: v for k, v in kw.items() if k in TaskOptions.__dataclass_fields__})
    opts, max_length = resolve_settings(task, model if os.path.isdir(model) else None, config, tokenizer,
                                        kw.get("max_length"), opts)
    kw.update(asdict(opts), max_length=max_length)
    task_obj = make_task(task, opts, None, tokenizer, config)
    if kw.get("embedding_ranges") is not None:  # checked here, not first in every actor
        if task != "embed" or opts.embedding_dtype != "int8":
            raise ValueError("embedding_ranges (--int8-ranges) only applies to --task embed --embedding-dtype int8")
        kw["embedding_ranges"] = check_ranges(kw["embedding_ranges"], task_obj.dim())
    columns = TASKS[task].fields(opts)
    if id_field and id_field not in columns:
        columns = columns + [id_field]
    tok_hash = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()
    return RunDescription(task, opts, max_length, columns, kw, tok_hash, task_obj)


def _npy_dtype(desc: RunDescription):
    import numpy as np

    return desc.task_obj.vector_dtype() if desc.task == "embed" else np.float32


def _int8(desc: RunDescription) -> bool:
    return desc.task == "embed" and desc.options.embedding_dtype == "int8"


def _calibrate(model: Any, scorer_kwargs: dict, input_path: str, in_fmt: str, columns: list) -> list:
    """Runs as a Ray task: the int8 ranges of the input's head, exactly as Scorer.score_file calibrates."""
    model, tmp = _materialize(model)
    try:
        scorer = Scorer(model, **scorer_kwargs)
        return scorer.calibrate(read_rows(input_path, in_fmt, columns=columns)).tolist()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _output_columns(desc: RunDescription, fmt: str, id_field: str | None, embeddings_npy: str | None) -> list:
    import pyarrow as pa

    cols = [("id", pa.string() if id_field and fmt != "jsonl" else pa.int64())] + desc.task_obj.schema()
    return [c for c in cols if not (embeddings_npy and c[0] == "embedding")]


class _PartWriter(ChunkedOutput):
    """The part-writing half of ChunkedOutput, for one actor: no state file, nothing opened or removed."""

    def __init__(self, parts: str, fmt: str, columns: list, npy: bool,  # noqa: super().__init__ not called
                 npy_dtype: Any = "float32"):
        import numpy as np

        self.parts, self.fmt, self.columns = parts, fmt, columns
        self.npy_dtype = np.dtype(npy_dtype)
        self.names = [name for name, _ in columns]
        self.npy_path, self.npy_column = ("(shards)" if npy else None), "embedding"
        self.tmp_suffix = f".{os.getpid()}.{os.urandom(4).hex()}.tmp"  # a killed run's actor may still be writing


def _done_path(parts: str, shard: int) -> str:
    return os.path.join(parts, f"part-{shard:06d}.done")


class ShardActor:
    """One model per actor; ``__call__`` scores whole shards (rows [start, stop) of the input) and commits
    each as part files in ``parts``. Returns, per shard, only its counts."""

    def __init__(self, model: Any, scorer_kwargs: dict, input_path: str, in_fmt: str, columns: list,
                 id_field: str | None, parts: str, out_fmt: str, out_columns: list, npy: bool,
                 npy_dtype: str = "float32"):
        model, self._tmp = _materialize(model)
        self.scorer = Scorer(model, **scorer_kwargs)
        self.scorer.task.ranges = self.scorer.embedding_ranges  # int8: the run's ranges, from the driver
        freeze_heap()
        self.input_path, self.in_fmt, self.columns, self.id_field = input_path, in_fmt, columns, id_field
        self.writer = _PartWriter(parts, out_fmt, out_columns, npy, npy_dtype)
        self.stringify = bool(id_field) and out_fmt != "jsonl"

    def score_shard(self, shard: int, start: int, stop: int, at: list | None) -> dict:
        done = _done_path(self.writer.parts, shard)
        if os.path.exists(done):  # a retried task whose first attempt got as far as its commit
            with open(done, encoding="utf-8") as f:
                return json.load(f)
        rows = read_rows(self.input_path, self.in_fmt, columns=self.columns, skip=start,
                         at=tuple(at) if at else None)
        records, errors, tokens, n = [], [], 0, 0
        for win, results in self.scorer.run_windows(itertools.islice(rows, stop - start), first_row=start):
            recs, errs = self.scorer.split_results(win, results, self.id_field, stringify_id=self.stringify)
            records += recs
            errors += errs
            tokens += win.tokens
            n += len(win.rows)
        if n != stop - start:
            raise RuntimeError(f"shard {shard}: expected rows {start}..{stop - 1} of {self.input_path}, read {n} "
                               "(did the input change during the run?)")
        counts = {"shard": shard, "rows": n, "written": len(records), "errors": len(errors), "tokens": tokens}
        width = self.writer.write_part(shard, records, errors)
        if width is not None:
            counts["npy_width"] = width
        tmp = done + self.writer.tmp_suffix
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(counts, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, done)  # the commit
        return counts

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = [self.score_shard(int(k), int(a), int(b), json.loads(at) if at else None)
               for k, a, b, at in zip(batch["shard"], batch["start"], batch["stop"], batch["at"])]
        return {key: np.array([c.get(key, 0) for c in out], dtype=np.int64)
                for key in ("shard", "rows", "written", "errors", "tokens")}

    def __del__(self):
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)


class ScoringActor:
    """For ``score_dataset``: one model per actor; a Ray Data batch (a pyarrow Table) in, Arrow columns out."""

    def __init__(self, model: Any, columns: list, id_field: str | None, scorer_kwargs: dict, out_columns: list):
        model, self._tmp = _materialize(model)
        self.scorer = Scorer(model, **scorer_kwargs)
        self.scorer.task.ranges = self.scorer.embedding_ranges
        freeze_heap()
        self.columns, self.id_field, self.out_columns = columns, id_field, out_columns

    def __call__(self, batch):
        import pyarrow as pa

        n = batch.num_rows
        data = {c: batch.column(c).to_pylist() if c in batch.column_names else [None] * n for c in self.columns}
        rows = []
        for i in range(n):
            row = Row(i, i + 1, 1)
            row.fields, row.error = _pick({c: data[c][i] for c in self.columns}, self.columns)
            rows.append(row)
        win = self.scorer.prepare(Window(0, rows))
        results = self.scorer.compute(win, Progress(None, enabled=False))
        records = [{} if isinstance(r, str) else r for r in results]
        table = records_table(self.out_columns, records)
        if self.id_field:
            table = table.append_column(self.id_field, batch.column(self.id_field))
        table = table.append_column("error", pa.array([r if isinstance(r, str) else None for r in results],
                                                      pa.string()))
        tokens = [0] * n
        for i, piece in win.pieces:
            tokens[i] += len(piece.ids)
        return table.append_column("tokens", pa.array(tokens, pa.int64()))

    def __del__(self):
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)


def read_dataset(path: str, fmt: str | None, columns: list):
    """The input as a Ray Dataset with (at least) ``columns``; text-like columns kept as strings."""
    import pyarrow as pa
    import ray.data

    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        return ray.data.read_parquet(path, columns=columns)
    if fmt in ("csv", "tsv"):
        from pyarrow import csv as pacsv

        return ray.data.read_csv(
            path, parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                 include_columns=columns))
    if fmt == "jsonl":
        return ray.data.read_json(path, lines=True, file_extensions=None)
    if len(columns) != 1:
        raise ValueError(f"plain text input holds one text per line; this task needs fields {columns}")
    ds = ray.data.read_text(path)
    return ds if columns[0] == "text" else ds.rename_columns({"text": columns[0]})


def score_dataset(ds, model: str, *, num_actors: int = 2, num_cpus: float | None = None, num_gpus: float = 0.0,
                  id_field: str | None = None, batch_rows: int | None = None, **scorer_kwargs: Any):
    """``ds`` -> a Dataset of Arrow columns, one row per input row in ``ds``'s order: the task's result
    columns (embeddings as ``fixed_size_list<float32>``; null for a bad row), the id field when given,
    ``error`` (the reason a row is bad, else null) and ``tokens``. ``scorer_kwargs`` go to ``Scorer``.
    ``num_cpus=None`` sizes the actors from the cluster (``plan_actors``). The driver loads no model."""
    import ray.data

    plan = plan_actors(cluster_nodes(), num_actors, num_cpus, num_gpus)
    desc = describe_run(model, id_field, **scorer_kwargs)
    kw = desc.scorer_kwargs
    if _int8(desc) and kw.get("embedding_ranges") is None:
        raise ValueError("score_dataset with embedding_dtype='int8' needs embedding_ranges: a Dataset streams "
                         "through the actors, so there is no head to calibrate on first (Scorer.calibrate on a "
                         "sample gives them)")
    if kw.get("num_threads") is None:
        kw["num_threads"] = max(1, int(plan.num_cpus))
    out_columns = [c for c in _output_columns(desc, "parquet", None, None) if c[0] != "id"]
    return ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs=dict(model=_ship_dir(model), columns=desc.columns, id_field=id_field,
                                   scorer_kwargs=kw, out_columns=out_columns),
        batch_size=batch_rows or int(kw.get("window") or 2048), batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=plan.num_actors), num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)


def _plan_shards(path: str, fmt: str, columns: list, shard_rows: int) -> dict:
    """Runs as a Ray task (the driver does not read the input): rows, and each shard's start (+ byte position)."""
    if fmt in ("jsonl", "text"):
        rows, starts = line_starts(path, shard_rows)
        return {"rows": rows, "at": [list(a) for a in starts]}
    if fmt in ("csv", "tsv"):  # each shard seeks to its first row: no re-parsing of the rows before it
        next(read_rows(path, fmt, columns=columns), None)  # the header names the columns, or a clear error now
        rows, starts = csv_row_starts(path, shard_rows, "\t" if fmt == "tsv" else ",")
        return {"rows": rows, "at": [list(a) for a in starts]}
    if fmt == "parquet":
        from .readers import _open_parquet

        return {"rows": _open_parquet(path).metadata.num_rows, "at": None}
    return {"rows": sum(1 for _ in read_rows(path, fmt, columns=columns)), "at": None}


class _RayOutput(ChunkedOutput):
    """OUTPUT.parts/ for a Ray run: state.json holds the fingerprint and the shard plan; a shard is committed
    when its ``.done`` marker exists. Resuming keeps committed shards and removes everything else."""

    def _open(self, resume: bool, overwrite: bool) -> None:
        state_path = os.path.join(self.parts, "state.json")
        if resume and os.path.isfile(state_path):
            try:
                with open(state_path, encoding="utf-8") as f:
                    state = json.load(f)
            except (OSError, ValueError) as err:
                raise ResumeError(f"{state_path} is unreadable ({err}); pass --overwrite to start again") from None
            if _RAY_STATE not in state:
                raise ResumeError(f"{self.parts} holds an interrupted run without --ray: resume it without --ray, "
                                  "or pass --overwrite to start again")
            if state.get("version") != _STATE_VERSION:
                raise ResumeError(f"{self.parts} was written by another version of sqbert-fast; remove it")
            detail = "; ".join(_differences(state.get("fingerprint", {}), self.fingerprint))
            if detail:
                raise ResumeError(f"cannot resume {self.output}: the run differs from the interrupted one ({detail}); "
                                  f"pass --overwrite to discard {self.parts} and start again")
            self.state = state
            return
        super()._open(resume, overwrite)
        self.state[_RAY_STATE] = {}

    def committed(self) -> dict[int, dict]:
        out = {}
        for name in os.listdir(self.parts):
            if name.startswith("part-") and name.endswith(".done"):
                with open(os.path.join(self.parts, name), encoding="utf-8") as f:
                    counts = json.load(f)
                out[counts["shard"]] = counts
        return out

    def clean_uncommitted(self) -> None:
        """Remove every part file of a shard without a .done marker (a partial attempt) and temp files."""
        done = {f"part-{k:06d}" for k in self.committed()}
        for name in os.listdir(self.parts):
            if name == "state.json":
                continue
            if name.endswith(".tmp") or name[:11] not in done:
                os.remove(os.path.join(self.parts, name))


def score_file_ray(model: str, input_path: str, output_path: str, *, address: str | None = None,
                   num_actors: int = 2, num_cpus: float | None = None, num_gpus: float = 0.0,
                   input_format: str | None = None, output_format: str | None = None, id_field: str | None = None,
                   errors_path: str | None = None, embeddings_npy: str | None = None, overwrite: bool = False,
                   resume: bool = False, merge: bool = True, shard_rows: int | None = None, progress: bool = False,
                   **scorer_kwargs: Any) -> Summary:
    """Score a file on Ray into a file in the same formats as ``Scorer.score_file`` (see the module docstring).

    ``address``: None uses the running Ray session (or starts a local one), "local" starts a local one,
    anything else is passed to ``ray.init(address=...)``. ``shard_rows``: rows per shard (a multiple of
    ``window``; default 4 windows). ``merge=False`` leaves the committed parts in ``OUTPUT.parts/`` as the
    output instead of merging them into OUTPUT."""
    import ray
    import ray.data

    t0 = time.perf_counter()
    check_paths(input_path, output_path, errors_path, embeddings_npy,
                scorer_kwargs.get("task") == "embed" and scorer_kwargs.get("embedding_dtype") == "int8")
    in_fmt = detect_format(input_path, input_format)
    out_fmt = detect_output_format(output_path, output_format)
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"input file {input_path} does not exist")
    if embeddings_npy and scorer_kwargs.get("task") != "embed":
        raise ValueError("embeddings_npy (--embeddings-npy) only applies to --task embed")
    desc = describe_run(model, id_field, **scorer_kwargs)
    kw = desc.scorer_kwargs
    window = check_positive_int("window", kw.get("window") or 2048)
    shard_rows = check_positive_int("shard_rows", shard_rows or 4 * window)
    if shard_rows % window:
        raise ValueError(f"shard_rows ({shard_rows}) must be a multiple of window ({window}), so that shards are "
                         "cut where the single-machine path cuts its windows")
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address)
    plan = plan_actors(cluster_nodes(), num_actors, num_cpus, num_gpus)  # refused before any output exists
    if kw.get("num_threads") is None:
        kw["num_threads"] = max(1, int(plan.num_cpus))
    st = os.stat(input_path)
    fingerprint = {
        "input": os.path.abspath(input_path), "input_format": in_fmt, "input_size": st.st_size,
        "input_mtime_ns": st.st_mtime_ns, "model": os.fspath(model),
        "weights": weights_fingerprint(model) if os.path.isdir(model) else None, "tokenizer": desc.tokenizer_hash,
        "backend": kw.get("backend", "auto"), "dtype": str(kw.get("dtype")), "device": str(kw.get("device")),
        "task": desc.task, "options": asdict(desc.options), "max_length": desc.max_length,
        "truncation": kw.get("truncation", "truncate"),
        "max_tokens": max(int(kw.get("max_tokens") or 8192), desc.max_length),
        "max_batch_size": kw.get("max_batch_size", 256), "window": window, "output_format": out_fmt,
        "id_field": id_field, "embeddings_npy": embeddings_npy, "shard_rows": shard_rows, "merge": merge,
        "embedding_ranges": ranges_digest(kw.get("embedding_ranges")),
    }
    out = _RayOutput(output_path, out_fmt, _output_columns(desc, out_fmt, id_field, embeddings_npy), fingerprint,
                     errors_path=errors_path, npy_path=embeddings_npy, resume=resume, overwrite=overwrite,
                     input_path=input_path, npy_dtype=_npy_dtype(desc), ranges=_int8(desc))
    if _int8(desc):  # fixed once per run (state.json), before any shard is scored
        if out.state.get("embedding_ranges") is None:
            if kw.get("embedding_ranges") is None:
                out.state["embedding_ranges"] = ray.get(
                    ray.remote(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)(_calibrate).remote(
                        _ship_dir(model), kw, os.path.abspath(input_path), in_fmt, desc.columns))
            else:
                out.state["embedding_ranges"] = kw["embedding_ranges"].tolist()
            out.commit_state()
        kw = dict(kw, embedding_ranges=check_ranges(out.state["embedding_ranges"], desc.task_obj.dim()))
    shards_state = out.state[_RAY_STATE]
    if "rows" not in shards_state:  # counted once by a Ray task, kept for --resume
        shards_state.update(ray.get(ray.remote(num_cpus=0)(_plan_shards).remote(
            os.path.abspath(input_path), in_fmt, desc.columns, shard_rows)))
        out._write_state()
    total = shards_state["rows"]
    n_shards = -(-total // shard_rows)
    out.clean_uncommitted()
    committed = out.committed()
    at = shards_state.get("at")
    todo = [{"shard": k, "start": k * shard_rows, "stop": min(total, (k + 1) * shard_rows),
             "at": json.dumps(at[k]) if at else ""} for k in range(n_shards) if k not in committed]
    meter = Progress(total, sum(c["rows"] for c in committed.values()), enabled=progress)
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
            ShardActor, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs=dict(model=_ship_dir(model), scorer_kwargs=kw,
                                       input_path=os.path.abspath(input_path), in_fmt=in_fmt, columns=desc.columns,
                                       id_field=id_field, parts=os.path.abspath(out.parts), out_fmt=out_fmt,
                                       out_columns=out.columns, npy=bool(embeddings_npy),
                                       npy_dtype=str(out.npy_dtype)),
            compute=ray.data.ActorPoolStrategy(size=plan.num_actors), num_cpus=plan.num_cpus,
            num_gpus=plan.num_gpus)
        for counts in ds.iter_rows():  # per shard: five integers
            meter.units_closed += int(counts["rows"])
            meter.batch_done(int(counts["rows"]), int(counts["tokens"]))
        meter.close()
    committed = out.committed()
    missing = [k for k in range(n_shards) if k not in committed]
    if missing:
        raise RuntimeError(f"shards {missing[:5]} were not committed; rerun with --resume")
    st_ = out.state
    st_["parts"] = n_shards
    st_["rows_consumed"] = st_["units"] = total
    st_["rows_written"] = sum(c["written"] for c in committed.values())
    st_["errors"] = sum(c["errors"] for c in committed.values())
    st_["tokens"] = sum(c["tokens"] for c in committed.values())
    widths = [c["npy_width"] for c in committed.values() if c.get("npy_width")]
    if embeddings_npy:
        st_["npy_width"] = widths[0] if widths else 0
    if merge:
        for k in range(n_shards):
            os.remove(_done_path(out.parts, k))
        out.finish()
    else:
        out.mark_complete()
        out.write_ranges()
    return Summary(rows=total, written=st_["rows_written"], errors=st_["errors"], tokens=st_["tokens"],
                   seconds=time.perf_counter() - t0)
