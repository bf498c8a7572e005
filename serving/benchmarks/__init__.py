"""The serving benchmarks, run from a checkout (``python serving/benchmarks/latency.py ...``,
``python serving/benchmarks/score_ab.py ...``): neither packaged in the wheel (``pyproject.toml``
excludes ``serving.benchmarks*``) nor copied into the image (``.dockerignore``).

Their results go where every benchmark's go (``benchmarks``: the raw JSON outside the checkout,
``benchmarks.results_dir()``; ``--out`` moves it); their Markdown summaries, each naming the
command that regenerates it, stay beside them in ``serving/benchmarks/results/`` (``--md-out``
moves them).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import benchmarks
from benchmarks import commands_note, results_dir, single_threaded

__all__ = ["add_output_arguments", "command_line", "commands_note", "output_dirs", "results_dir", "single_threaded", "SUMMARIES"]

SUMMARIES = Path(__file__).resolve().parent / "results"


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The shell command that runs ``serving/benchmarks/<script>`` with ``argv`` (default: this process's)."""
    return shlex.join(["python", f"serving/benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` (the JSON results' folder) and ``--md-out`` (the Markdown summary's folder)."""
    parser.add_argument("--out", default=None,
                        help=f"folder of the JSON results (default $CINESYNC_RESULTS, else {benchmarks.DEFAULT_RESULTS})")
    parser.add_argument("--md-out", default=None, help="folder of the Markdown summary (default serving/benchmarks/results)")


def output_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(JSON folder, Markdown folder) for parsed ``add_output_arguments`` options, both created."""
    return benchmarks.output_dirs(argparse.Namespace(out=args.out, md_out=args.md_out or str(SUMMARIES)))
