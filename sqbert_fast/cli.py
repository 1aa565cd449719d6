"""The ``sqbert-fast`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them together, so commands are added without touching each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "info": ("sqbert_fast.cli_info", "what was built, what this machine supports, which backends run"),
    "convert": ("sqbert_fast.convert", "convert a BERT checkpoint into a SqueezeBERT one (--from-bert)"),
    "demo": ("sqbert_fast.demo", "embed a bundled text file with the default model; parity and time per backend"),
    "bench": ("sqbert_fast.bench", "latency benchmark against transformers, torch.compile, ONNX Runtime, OpenVINO"),
    "score": ("sqbert_fast.scoring.cli", "batch offline scoring of text files"),
    "quantize": ("sqbert_fast.cli_quantize", "write an int8 checkpoint (int8 conv weights + fp32 scales) of a float one"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqbert-fast", description="Fused-kernel SqueezeBERT inference")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # command not part of this build
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
