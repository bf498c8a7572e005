"""Benchmark scripts, run from a checkout; neither packaged in the wheel nor copied into the image.

Every benchmark trains and scores through the pipeline (``pipeline.run.run`` or the steps of
``pipeline.steps``) and keeps only its argument parsing and its report. What three or more of
them share is here: their options (``parser``; the data options -> ``data_options``: a
``pipeline.options.DataOptions``), one family trained and tested (``train_and_test``) and its
results row (``result_row``), the paired bootstrap, the hardware, and where results go:

- the raw results (JSON: every run, per-case ranks, every trial) go *outside* the checkout, to
  :func:`results_dir` (``$CINESYNC_RESULTS``, default ``~/.cache/cinesync/results``); ``--out``
  moves them. Whatever reads an earlier result (``data_scaling.py compare``, ``side_by_side.py``,
  ``pooled_seeds.py``, a re-run that appends to a file's ``runs`` or resumes a sweep) reads it there.
- the Markdown summary (and a figure, where a script draws one) goes next to the code, to
  ``benchmarks/results/`` (``SUMMARIES``, committed); ``--md-out`` moves it. Every summary
  names the command that regenerates it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

SUMMARIES = Path(__file__).resolve().parent / "results"
DEFAULT_RESULTS = "~/.cache/cinesync/results"
SIDE_INPUT_CACHE = "~/.cache/cinesync/side-inputs"  # built side inputs (the text encoder is minutes on a CPU)


def single_threaded() -> None:
    """One thread per library (the machine is shared) and no model download: call before torch loads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default encoder is packaged


def results_dir() -> Path:
    """Folder of the raw JSON results: ``$CINESYNC_RESULTS``, else ``~/.cache/cinesync/results``."""
    return Path(os.environ.get("CINESYNC_RESULTS", DEFAULT_RESULTS)).expanduser()


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


def parser(doc: str | None = None, *, data: bool = True, name: str | None = None, device: str | None = "auto",
           text: bool = False, into: argparse.ArgumentParser | None = None, **defaults) -> argparse.ArgumentParser:
    """The options benchmarks share, added to ``into`` (else to a new parser whose help is ``doc``):
    ``--out`` (the JSON results' folder) and ``--md-out`` (the Markdown summary's); with ``data`` the
    ``pipeline.options.DataOptions`` a benchmark reads (``data_options``) and ``--name``, the
    dataset's name in the results (required unless ``name``), ``defaults`` other default values by
    option (``path="..."``); ``--device`` (default ``device``; None: none); with ``text`` the
    item-text encoder (``--encoder``) and the side inputs' disk cache (``--text-cache-dir``)."""
    parser = into or argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--out", default=None, help=f"folder of the JSON results (default $CINESYNC_RESULTS, else {DEFAULT_RESULTS})")
    add("--md-out", default=None, help="folder of the Markdown summary (default benchmarks/results)")
    if data:
        add("--source", default=None, help="a data_contracts source kind (default: movielens with --path, else synthetic)")
        add("--path", default="", help="the data folder (read by path, never copied)")
        add("--name", required=name is None, default=name, help="dataset name used in the results")
        add("--ratings-path", default="", help="ratings file overriding the folder's (gzip ok)")
        add("--item-text-path", default="", help="item text joined on item_id (MeLU extrainfos, TMDB CSV)")
        add("--synthetic-users", type=int, default=1000, help="--source synthetic: number of users")
        add("--seed", type=int, default=0, help="seed of the synthetic data and of the split's holdouts")
        parser.set_defaults(**defaults)
    if device:
        add("--device", default=device, help="cpu, cuda or auto (the GPU where there is one)")
    if text:
        from models.content.item_text import DEFAULT_ENCODER

        add("--encoder", default=DEFAULT_ENCODER, help="sentence-transformers name or local path")
        add("--text-cache-dir", default=SIDE_INPUT_CACHE, help="where built side inputs are cached")
    return parser


def output_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(JSON folder, Markdown folder) of the parsed ``--out`` and ``--md-out``, both created."""
    json_dir = Path(args.out).expanduser() if args.out else results_dir()
    md_dir = Path(args.md_out).expanduser() if args.md_out else SUMMARIES
    json_dir.mkdir(parents=True, exist_ok=True)
    md_dir.mkdir(parents=True, exist_ok=True)
    return json_dir, md_dir


def previous_result(args: argparse.Namespace, stem: str) -> dict:
    """The results file ``<stem>.json`` an earlier run wrote (``{}`` if none): a re-run adds to it."""
    path = output_dirs(args)[0] / f"{stem}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(args: argparse.Namespace, stem: str, result: dict, markdown: str) -> Path:
    """``result`` to ``<stem>.json`` in the results folder, ``markdown`` to ``<stem>.md`` in the
    summaries' folder (and printed) -> the summaries' folder."""
    out, md_out = output_dirs(args)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (md_out / f"{stem}.md").write_text(markdown)
    print(markdown, flush=True)
    return md_out


def table(header: list[str], rows) -> list[str]:
    """Markdown table lines: the header, the rule, one line per row (cells as given)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(map(str, r)) + " |" for r in rows)]


def f4(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ----- the data, through the pipeline's options and steps ---------------------------------------


def data_options(args: argparse.Namespace, split_mode: str):
    """``pipeline.options.DataOptions`` of ``parser``'s data options, checked."""
    from pipeline.options import DataOptions, OptionsError

    source = args.source or ("movielens" if args.path else "synthetic")
    options = DataOptions(source=source, path=args.path or "", ratings_path=args.ratings_path or "",
                          item_text_path=args.item_text_path or "", synthetic_users=args.synthetic_users,
                          data_seed=args.seed, split_mode=split_mode, split_seed=args.seed)  # fmt: skip
    try:
        return options.check()
    except OptionsError as error:
        raise SystemExit(str(error)) from None


def prepare(options, name: str):
    """``pipeline.steps``: read, check the contracts, split -> (tables as read, ``steps.Split``)."""
    from pipeline import steps

    tables = steps.read_tables(options, name=name, progress=False)
    frames = steps.check_contracts(tables, options).frames
    return tables, steps.split_tables(frames["interactions"], frames["items"], frames["users"], options)


def side_inputs_for(families: list[str], split, encoder: str = "all-MiniLM-L6-v2", cache_dir: str = SIDE_INPUT_CACHE) -> dict:
    """The side inputs the families' specs name (``pipeline.steps.build_side_inputs``), cached on disk."""
    from models.registry import FAMILIES
    from pipeline import steps

    names = [name for family in families for name in FAMILIES[family].side_inputs]
    return steps.build_side_inputs(names, split.data.training_data(), text_encoder=encoder, cache_dir=Path(cache_dir))


def checkpoint_folder(family: str, inputs: dict) -> Path:
    """Where one benchmark training keeps its checkpoints: outside the checkout (``CINESYNC_HOME``),
    keyed by everything its training depends on, so a stopped run resumes and a change starts afresh."""
    from pipeline.paths import cinesync_home

    key = hashlib.sha256(json.dumps([family, inputs], sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = cinesync_home() / "benchmarks" / f"{family}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{family}: checkpoints in {folder}", flush=True)
    return folder


def print_epoch(label: str, log) -> None:
    print(f"  {label} epoch {log.epoch}: loss {log.train_loss:.4f} valid NDCG@10 "
          f"{log.valid.get('ndcg@10', float('nan')):.4f} ({log.seconds:.1f}s)", flush=True)  # fmt: skip


def train_and_test(family: str, overrides: dict, split, side_inputs: dict, device, key: dict, label: str = ""):
    """One family fitted (``pipeline.steps.fit_family``: seeded, early stopping on validation,
    checkpoints every epoch under a key of ``key`` and the whole config) and its test cases scored
    (``steps.evaluate``) -> (``result_row``, the fitted model)."""
    import torch

    from models.interface import training_config
    from pipeline import steps

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    folder = lambda config: checkpoint_folder(family, {**key, "config": training_config(config), "device": device.type})  # noqa: E731
    fitted = steps.fit_family(family, split.data.training_data(), overrides, side_inputs, device=device,
                              checkpoint_dir=folder, on_epoch=lambda log: print_epoch(label or family, log))  # fmt: skip
    row = result_row(family, fitted, steps.evaluate(fitted.model, split.test_cases, split.data.n_items, device=device), split)
    print(f"{label or family}: test NDCG@10 {row['ndcg@10']:.4f} (best epoch {row['best_epoch']}, {row['train_seconds']}s)")
    return row, fitted.model


def result_row(family: str, fitted, test, split) -> dict:
    """The results row of one trained family (``steps.Fitted``) and its test evaluation: the test
    metrics of "all" (flat) and of every slice (``test``), the validation curve ([epoch, seconds
    since training began, valid NDCG@10]), timings, peak memory, each test user's rank and slice
    (by raw user id: what pairs two runs' cases) and the config."""
    from dataclasses import asdict

    import torch

    report, device = fitted.report, next(iter(fitted.model.parameters()), torch.empty(0)).device
    curve, elapsed = [], 0.0
    for e in report.epochs:
        elapsed += e.seconds
        curve.append([e.epoch, round(elapsed, 2), e.valid.get("ndcg@10")])
    seconds = max(fitted.seconds, elapsed)  # a resumed run: the epochs it did not repeat count too
    max_epochs = getattr(fitted.model.config, "max_epochs", None)
    raw = dict(zip(split.data.users["user_idx"].tolist(), split.data.users["user_id"].tolist()))
    cases = test.per_case
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    return {
        "model": family,
        **{k: float(v) for k, v in test.metrics["all"].items()},
        "test": {name: {k: float(v) for k, v in m.items()} for name, m in test.metrics.items()},
        "best_valid_ndcg@10": report.best_valid.get("ndcg@10"),
        "best_epoch": report.best_epoch,
        "epochs_run": len(report.epochs),
        "stopped_early": report.stopped_early,
        "capped_at_max_epochs": max_epochs is not None and len(report.epochs) >= max_epochs and not report.stopped_early,
        "train_seconds": round(seconds, 1),
        "seconds_to_best_valid": round(next((c[1] for c in curve if c[0] == report.best_epoch), seconds), 1),
        "seconds_per_epoch": round(elapsed / max(len(curve), 1), 2),
        "peak_memory_mib": round(peak, 1),
        "valid_curve": curve,
        "test_ranks_by_user": {str(raw[u]): int(r) for u, r in zip(cases["user_idx"], cases["rank"])},
        "test_slices_by_user": {str(raw[u]): str(s) for u, s in zip(cases["user_idx"], cases["slice"])},
        "config": asdict(fitted.model.config),
    }


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def hardware(device) -> dict:
    import torch

    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# ----- comparing two runs' test cases -----------------------------------------------------------


def slice_ranks(row: dict, slice_name: str = "all") -> dict[str, int]:
    """A results row's test rank of each user of ``slice_name`` ("all": every user)."""
    return {u: int(r) for u, r in row["test_ranks_by_user"].items() if slice_name in ("all", row["test_slices_by_user"][u])}


def paired_bootstrap(ranks_a: dict[str, int], ranks_b: dict[str, int], n_resamples: int = 2000, seed: int = 0) -> dict:
    """NDCG@10(a) - NDCG@10(b) over the same test cases (keys) and 95% intervals of that
    difference and of the ratio, resampling the cases."""
    import numpy as np

    from models.metrics import ndcg_gains

    users = sorted(set(ranks_a) & set(ranks_b))
    if len(users) != len(ranks_a) or len(users) != len(ranks_b):
        raise SystemExit(f"the two runs scored different test users ({len(ranks_a)} vs {len(ranks_b)}, {len(users)} shared)")
    a, b = (ndcg_gains([ranks[u] for u in users]) for ranks in (ranks_a, ranks_b))
    idx = np.random.default_rng(seed).integers(0, len(users), size=(n_resamples, len(users)))
    mean_a, mean_b = a[idx].mean(1), b[idx].mean(1)
    diff, ratio = mean_a - mean_b, mean_a / np.maximum(mean_b, 1e-12)
    return {
        "ndcg@10_diff": float(a.mean() - b.mean()) if users else 0.0,
        "n_cases": len(users),
        "n_resamples": n_resamples,
        "ndcg@10_diff_ci95": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))],
        "ndcg@10_ratio_ci95": [float(np.quantile(ratio, 0.025)), float(np.quantile(ratio, 0.975))],
        "share_of_resamples_ours_better": float((diff > 0).mean()),
    }
