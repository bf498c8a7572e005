"""Benchmark scripts, run from a checkout; neither packaged in the wheel nor copied into the image.

Where a benchmark's results go (``benchmarks/README.md``, "Where results go"):

- the raw results (JSON: every run, per-case ranks, every trial) go *outside* the checkout, to
  :func:`results_dir` (``$CINESYNC_RESULTS``, default ``~/.cache/cinesync/results``); ``--out``
  moves them. Whatever reads an earlier result (``serving.py --validated-configs``,
  ``data_scaling.py compare``, ``side_by_side.py``, ``pooled_seeds.py``, a re-run that appends to
  a file's ``runs`` or resumes a sweep) reads it from there.
- the Markdown summary (and a figure, where a script draws one) goes next to the code, to
  :func:`summaries_dir` (``benchmarks/results/``, committed); ``--md-out`` moves it. Every summary
  names the command that regenerates it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

SUMMARIES = Path(__file__).resolve().parent / "results"
DEFAULT_RESULTS = "~/.cache/cinesync/results"


def results_dir() -> Path:
    """Folder of the raw JSON results: ``$CINESYNC_RESULTS``, else ``~/.cache/cinesync/results``."""
    return Path(os.environ.get("CINESYNC_RESULTS", DEFAULT_RESULTS)).expanduser()


def summaries_dir() -> Path:
    """Folder of the committed Markdown summaries: ``benchmarks/results/``."""
    return SUMMARIES


def find_result(path: str | Path) -> Path:
    """An earlier result named on a command line: ``path`` itself if it exists, else the file of that
    name in :func:`results_dir` (so ``benchmarks/results/<name>.json``, as older commands wrote it,
    and a bare ``<name>.json`` both find it)."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    moved = results_dir() / given.name
    if moved.is_file():
        return moved
    raise SystemExit(f"{path}: no such result file (nor {moved}; $CINESYNC_RESULTS moves the results folder)")


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The shell command that runs ``benchmarks/<script>`` with ``argv`` (default: this process's)."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def with_commands(result: dict, command: str) -> list[str]:
    """Add ``command`` to ``result["commands"]`` (the commands that wrote a results file a re-run
    adds to, in order, each once) -> that list."""
    commands = [c for c in result.get("commands", []) if c != command] + [command]
    result["commands"] = commands
    return commands


def commands_note(commands: list[str]) -> str:
    """The Markdown lines that end a summary: the command(s) that regenerate it."""
    if len(commands) == 1:
        return f"\n- command: `{commands[0]}`\n"
    return "\n- commands (in this order; each adds to the same results file):\n" + "".join(f"  - `{c}`\n" for c in commands)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` (the JSON results' folder) and ``--md-out`` (the Markdown summary's folder)."""
    parser.add_argument("--out", default=None,
                        help=f"folder of the JSON results (default $CINESYNC_RESULTS, else {DEFAULT_RESULTS})")
    parser.add_argument("--md-out", default=None, help="folder of the Markdown summary (default benchmarks/results)")


def output_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(JSON folder, Markdown folder) for parsed ``add_output_arguments`` options, both created."""
    json_dir = Path(args.out).expanduser() if args.out else results_dir()
    md_dir = Path(args.md_out).expanduser() if args.md_out else summaries_dir()
    json_dir.mkdir(parents=True, exist_ok=True)
    md_dir.mkdir(parents=True, exist_ok=True)
    return json_dir, md_dir
