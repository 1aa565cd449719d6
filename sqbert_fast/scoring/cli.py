"""``sqbert-fast score MODEL INPUT OUTPUT --task ...``: batch offline scoring of a file.

Exit status: 0 done (bad rows, if any, are in the errors file), 1 the input or the run could not be
used (message on stderr), 130 interrupted (committed work is kept: rerun with --resume).
"""

from __future__ import annotations

import argparse
import os
import sys

from .readers import FORMATS
from .tasks import EMBEDDING_DTYPES, POOLINGS, TASKS
from .writers import OUTPUT_FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="SqueezeBERT checkpoint directory (or hub id); 'default' for the bundled model")
    p.add_argument("input", help="input file: .jsonl, .csv, .tsv, .parquet or .txt (one text per line)")
    p.add_argument("output", help="output file: .jsonl, .csv or .parquet (rows in input order)")
    p.add_argument("--task", required=True, choices=list(TASKS))
    io = p.add_argument_group("input and output")
    io.add_argument("--input-format", choices=FORMATS, help="default: from the input's extension")
    io.add_argument("--output-format", choices=OUTPUT_FORMATS, help="default: from the output's extension")
    io.add_argument("--text-field", default="text", help="field/column holding the text (default: text)")
    io.add_argument("--pair-field", help="field holding the second text of a pair (e.g. MNLI hypothesis)")
    io.add_argument("--id-field", help="field copied to the output's id (default: the row number, from 0)")
    io.add_argument("--question-field", default="question", help="qa: question field (default: question)")
    io.add_argument("--context-field", default="context", help="qa: context field (default: context)")
    io.add_argument("--errors", help="errors file, JSONL with id, row, line, reason (default: OUTPUT.errors.jsonl)")
    io.add_argument("--embeddings-npy", metavar="PATH",
                    help="embed: write embeddings to one [rows, width] .npy in the --embedding-dtype "
                         "(row i = record i of OUTPUT)")
    io.add_argument("--resume", action="store_true", help="continue an interrupted run from its last commit")
    io.add_argument("--overwrite", action="store_true", help="replace OUTPUT / discard an interrupted run")
    io.add_argument("--no-progress", action="store_true", help="no progress meter on stderr")
    t = p.add_argument_group("task options")
    t.add_argument("--all-scores", action="store_true", help="classify: also write every label's probability")
    t.add_argument("--top-k", type=int, default=5, help="fill-mask: predictions per [MASK] (default: 5)")
    t.add_argument("--pooling", choices=POOLINGS,
                   help="embed: default the checkpoint's sentence-transformers pooling (1_Pooling/), else mean")
    t.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="embed: L2-normalise the embeddings (default: yes when the checkpoint's modules.json "
                        "has a Normalize module)")
    t.add_argument("--embedding-dtype", choices=EMBEDDING_DTYPES, default="float32",
                   help="embed: how vectors are stored, as sentence-transformers' quantize_embeddings (after "
                        "--normalize): float32; float16 (a cast); ubinary (bit i = dimension i > 0, packed "
                        "into dim/8 uint8); int8 (each dimension's [min, max] cut into 256 buckets). A file "
                        "is written front to back, so int8 cannot take its ranges from all embeddings as "
                        "sentence-transformers does: they come from the first --int8-calibration-rows rows "
                        "(kept for --resume) or from --int8-ranges, and are written to OUTPUT.int8-ranges.npy "
                        "to quantize queries with (default: float32)")
    t.add_argument("--int8-calibration-rows", type=int, default=2048,
                   help="embed, int8: rows at the head of the input whose embeddings give each dimension's "
                        "range; later values outside it are clipped (default: 2048)")
    t.add_argument("--int8-ranges", metavar="NPY",
                   help="embed, int8: a [2, dim] float32 .npy of minima and maxima (e.g. another run's "
                        "OUTPUT.int8-ranges.npy) instead of calibrating")
    t.add_argument("--max-answer-tokens", type=int, default=30, help="qa: longest answer span (default: 30)")
    t.add_argument("--doc-stride", type=int,
                   help="qa: contexts longer than --max-length are scored in windows sharing this many tokens, "
                        "the best span over all windows wins, as transformers' QA pipeline does "
                        "(default: min(max length / 2, 128); must be less than the room the question leaves)")
    e = p.add_argument_group("execution")
    e.add_argument("--max-length", type=int,
                   help="tokens per row at most (default: the model's limit; embed: a sentence-transformers "
                        "checkpoint's max_seq_length)")
    e.add_argument("--truncation", choices=["truncate", "error"], default="truncate",
                   help="longer rows: cut them, or send them to the errors file (default: truncate; qa "
                        "windows long contexts instead, see --doc-stride)")
    e.add_argument("--max-tokens", type=int, default=8192, help="padded tokens per batch (default: 8192)")
    e.add_argument("--max-batch-size", type=int, default=256, help="rows per batch at most (default: 256)")
    e.add_argument("--window", type=int, default=2048,
                   help="rows sorted, batched and committed together (default: 2048)")
    e.add_argument("--backend", default="auto", help="engine backend (default: auto)")
    e.add_argument("--device", help="torch device, e.g. cuda (default: cpu)")
    e.add_argument("--dtype", help="float32 / float16 / bfloat16 (default: the checkpoint's)")
    e.add_argument("--threads", type=int, help="threads for the engine (sqf.set_num_threads)")
    r = p.add_argument_group("Ray (sqbert_fast.scoring.ray)")
    r.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'auto', 'local' or ray://host:10001")
    r.add_argument("--ray-actors", type=int, default=2, help="actors, one model each (default: 2)")
    r.add_argument("--ray-cpus-per-actor", type=float,
                   help="num_cpus per actor (default: an equal share of the cluster's CPUs, one kept for reading)")
    r.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="num_gpus per actor (default: 0)")
    r.add_argument("--ray-shard-rows", type=int,
                   help="rows per shard, the unit an actor reads, writes and commits (a multiple of --window; "
                        "default: 4 windows)")
    r.add_argument("--ray-no-merge", action="store_true",
                   help="leave the workers' part files in OUTPUT.parts/ (in input order by name) as the output "
                        "instead of merging them into OUTPUT")


def _scorer_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        task=args.task, backend=args.backend, dtype=args.dtype, device=args.device, max_length=args.max_length,
        truncation=args.truncation, max_tokens=args.max_tokens, max_batch_size=args.max_batch_size,
        window=args.window, num_threads=args.threads, text_field=args.text_field, pair_field=args.pair_field,
        question_field=args.question_field, context_field=args.context_field, all_scores=args.all_scores,
        top_k=args.top_k, pooling=args.pooling, normalize=args.normalize, max_answer_tokens=args.max_answer_tokens,
        embedding_dtype=args.embedding_dtype, int8_calibration_rows=args.int8_calibration_rows,
        embedding_ranges=args.int8_ranges, doc_stride=args.doc_stride,
    )


def _model_dir(name: str) -> str:
    if name == "default":
        from ..convert import copy_sentence_transformers_files
        from ..default_model import default_model_dir, source_bert_dir

        path = default_model_dir()
        if not os.path.isfile(os.path.join(path, "modules.json")):  # converted before the recipe was carried
            copy_sentence_transformers_files(source_bert_dir(), path)
        return path
    return name


def run(args: argparse.Namespace) -> int:
    from .readers import InputFormatError
    from .writers import PathCollisionError, ResumeError

    try:
        if not os.path.isfile(args.input) and not args.ray:
            raise FileNotFoundError(f"input file {args.input} does not exist")
        model = _model_dir(args.model)
        if args.ray:
            from .ray import score_file_ray

            summary = score_file_ray(
                model, args.input, args.output, address=args.ray, num_actors=args.ray_actors,
                num_cpus=args.ray_cpus_per_actor, num_gpus=args.ray_gpus_per_actor,
                input_format=args.input_format, output_format=args.output_format, id_field=args.id_field,
                errors_path=args.errors, embeddings_npy=args.embeddings_npy, overwrite=args.overwrite,
                resume=args.resume, merge=not args.ray_no_merge, shard_rows=args.ray_shard_rows,
                progress=not args.no_progress, **_scorer_kwargs(args))
        else:
            from .scorer import Scorer, freeze_heap

            scorer = Scorer(model, **_scorer_kwargs(args))
            freeze_heap()
            summary = scorer.score_file(
                args.input, args.output, input_format=args.input_format, output_format=args.output_format,
                id_field=args.id_field, errors_path=args.errors, embeddings_npy=args.embeddings_npy,
                resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: committed work is kept; rerun with --resume to continue {args.output}",
              file=sys.stderr)
        return 130
    except (InputFormatError, ResumeError, OSError, ValueError) as err:
        print(f"sqbert-fast score: error: {err}", file=sys.stderr)
        parts = args.output + ".parts"
        if not isinstance(err, (ResumeError, PathCollisionError)) and os.path.isdir(parts):
            print(f"note: {parts} holds the work committed so far. Rerun with --resume to continue it "
                  "(same input and options), or with --overwrite to start again", file=sys.stderr)
        return 1
    print(f"done: {summary}", file=sys.stderr)
    if summary.errors:
        print(f"{summary.errors:,} bad rows listed in {args.errors or args.output + '.errors.jsonl'}", file=sys.stderr)
    return 0
