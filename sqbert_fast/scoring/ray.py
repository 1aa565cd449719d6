"""Run the scorer on a Ray cluster with Ray Data.

    import ray
    from sqbert_fast.scoring.ray import score_dataset, score_file_ray
    ray.init(address="auto")
    score_file_ray("model_dir", "s3-or-shared/reviews.parquet", "scores.parquet", task="classify",
                   num_actors=16, num_cpus=4)

Ray Data reads the input in parallel (``read_json`` / ``read_csv`` / ``read_parquet`` / ``read_text``),
``map_batches`` sends each block of rows to an actor pool holding one loaded ``Scorer`` per actor
(``num_cpus`` / ``num_gpus`` per actor; its engine uses ``num_cpus`` threads), and the actor runs exactly
the single-machine code on it: tokenize, sort by length, batch under the token budget, run, post-process.
Results stream back in input order (``preserve_order``) to the driver, which writes the same formats
through the same writer as the local path (and so the same bytes, up to floating point differences from
different batch compositions).

The checkpoint directory is shipped to the actors through the object store, so worker nodes need no copy
of it; the input must be readable from every node (shared storage, or any URI pyarrow understands).
Bad rows go to the errors file as locally; without line numbers (Ray's readers do not keep them).
``--resume`` is not offered here: Ray Data retries failed tasks itself.

Sizing (``plan_actors``): Ray Data's read tasks ask for a CPU each, so one CPU is kept free of actors;
a pool that holds every CPU leaves the readers unscheduled and the run waits forever. Left to itself
(``num_cpus=None``) each actor gets an equal share of the rest; a plan that cannot be placed on the
cluster's nodes next to that reserved CPU is refused before anything starts, saying why.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .readers import Row, _pick, detect_format
from .scorer import Progress, Scorer, Summary, Window
from .tasks import check_positive_int
from .writers import check_paths

__all__ = ["ActorPlan", "cluster_nodes", "plan_actors", "read_dataset", "score_dataset", "score_file_ray"]

_RESULT = "_sqbert_fast_result"


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


class ScoringActor:
    """One model per actor; ``__call__`` scores one Ray Data batch (a pyarrow Table) as one window."""

    def __init__(self, model: Any, columns: list, id_field: str | None, scorer_kwargs: dict):
        self._tmp = None
        if isinstance(model, dict):
            self._tmp = tempfile.mkdtemp(prefix="sqbert-fast-model-")
            for name, data in model.items():
                with open(os.path.join(self._tmp, name), "wb") as f:
                    f.write(data)
            model = self._tmp
        self.scorer = Scorer(model, **scorer_kwargs)
        self.columns = columns
        self.id_field = id_field

    def __call__(self, batch) -> dict:
        n = batch.num_rows
        data = {c: batch.column(c).to_pylist() if c in batch.column_names else [None] * n for c in self.columns}
        rows = []
        for i in range(n):
            row = Row(i, i + 1, 1)
            row.fields, row.error = _pick({c: data[c][i] for c in self.columns}, self.columns)
            rows.append(row)
        win = self.scorer.prepare(Window(0, rows))
        results = self.scorer.compute(win, Progress(None, enabled=False))
        ids = data[self.id_field] if self.id_field else [None] * n
        # Pickled per row: exact floats and nested results, no schema negotiation with Arrow.
        out = np.empty(n, dtype=object)
        for i, (rid, result, enc) in enumerate(zip(ids, results, win.encodings)):
            tokens = len(enc.ids) if enc is not None else 0
            out[i] = pickle.dumps((rid, result, tokens), protocol=pickle.HIGHEST_PROTOCOL)
        return {_RESULT: out}

    def __del__(self):
        if self._tmp:
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
    """``ds`` -> a Dataset with one column of pickled ``(id, result, tokens)`` per row, in ``ds``'s order
    (result is a dict, or a str: the reason the row is bad). ``scorer_kwargs`` go to ``Scorer``.
    ``num_cpus=None`` sizes the actors from the cluster (``plan_actors``)."""
    import ray.data

    plan = plan_actors(cluster_nodes(), num_actors, num_cpus, num_gpus)
    num_actors, num_cpus, num_gpus = plan.num_actors, plan.num_cpus, plan.num_gpus
    probe_kwargs = dict(scorer_kwargs)
    if probe_kwargs.get("num_threads") is None:
        probe_kwargs["num_threads"] = max(1, int(num_cpus))
    task = probe_kwargs.get("task", "classify")
    from .tasks import TASKS, TaskOptions

    opts = TaskOptions(**{k: v for k, v in probe_kwargs.items() if k in TaskOptions.__dataclass_fields__})
    columns = TASKS[task].fields(opts)
    if id_field and id_field not in columns:
        columns = columns + [id_field]
    window = int(probe_kwargs.get("window", 2048))
    return ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs=dict(model=_ship_dir(model), columns=columns, id_field=id_field,
                                   scorer_kwargs=probe_kwargs),
        batch_size=batch_rows or window, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=num_cpus, num_gpus=num_gpus)


def score_file_ray(model: str, input_path: str, output_path: str, *, address: str | None = None,
                   num_actors: int = 2, num_cpus: float | None = None, num_gpus: float = 0.0,
                   input_format: str | None = None, output_format: str | None = None, id_field: str | None = None,
                   errors_path: str | None = None, embeddings_npy: str | None = None, overwrite: bool = False,
                   progress: bool = False, **scorer_kwargs: Any) -> Summary:
    """Score a file on Ray into a file in the same formats as ``Scorer.score_file``.

    ``address``: None uses the running Ray session (or starts a local one), "local" starts a local one,
    anything else is passed to ``ray.init(address=...)``."""
    import ray
    from ray.data import DataContext

    t0 = time.perf_counter()
    check_paths(input_path, output_path, errors_path, embeddings_npy)  # before Ray starts, and again on opening
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address)
    plan = plan_actors(cluster_nodes(), num_actors, num_cpus, num_gpus)  # refused before any output exists
    DataContext.get_current().execution_options.preserve_order = True
    in_fmt = detect_format(input_path, input_format)
    # The driver's own Scorer decides the output schema and the fingerprint, like the local path.
    local = Scorer(model, **{**scorer_kwargs, "device": None})  # on CPU: the driver needs no GPU
    out = local.open_output(input_path, output_path, in_fmt, output_format, id_field, errors_path,
                            embeddings_npy, False, overwrite)
    columns = local.columns(id_field)
    ds = score_dataset(read_dataset(input_path, in_fmt, columns), model, num_actors=plan.num_actors,
                       num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, id_field=id_field, **scorer_kwargs)
    stringify = bool(id_field) and out.fmt != "jsonl"
    window = local.window
    records: list = []
    errors: list = []
    index = pending = tokens = 0

    def flush():
        nonlocal records, errors, pending, tokens
        out.commit(records, errors, pending, pending, tokens)
        records, errors, pending, tokens = [], [], 0, 0

    meter = Progress(None, enabled=progress)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for blob in batch.column(_RESULT).to_pylist():
            rid, result, n = pickle.loads(blob)
            tokens += n
            rid = index if rid is None else rid
            if isinstance(result, str):
                errors.append({"id": rid, "row": index, "line": None, "reason": result})
            else:
                records.append({"id": str(rid) if stringify else rid, **result})
            index += 1
            pending += 1
            if pending == window:
                flush()
        meter.batch_done(batch.num_rows, 0)  # tokens are counted per commit
    flush()
    meter.close()
    out.finish()
    return Summary(rows=index, written=out.state["rows_written"], errors=out.state["errors"], tokens=out.state["tokens"],
                   seconds=time.perf_counter() - t0)
