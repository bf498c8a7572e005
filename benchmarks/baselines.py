"""Model benchmark on a MovieLens folder, standard split (default: popularity, EASE, SASRec).

    python benchmarks/baselines.py --path ../shared/data/ml-100k --name ml-100k
    python benchmarks/baselines.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz
    python benchmarks/baselines.py --path ../shared/data/ml-100k --name ml-100k --tag sequential \
        --models sasrec,bert4rec --models-config '{"sasrec": {"patience": 30}}'

Reads the data by path (never copied), validates it against the data contracts, splits it under
DESIGN.md's *standard* leave-one-out protocol, trains each model with early stopping on
validation NDCG@10, scores the test cases by full ranking, and writes
``baselines-<name>-<device>.json`` to the results folder outside the checkout (``benchmarks.results_dir()``)
plus a Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks import add_output_arguments, command_line, commands_note, output_dirs
from data_contracts.sources.movielens import read_movielens
from data_contracts.suites import ContractConfig
from data_contracts.validate import validate_tables
from models.device import pick_device, seed_everything
from models.interface import training_config
from models.metrics import evaluate
from models.registry import build_model
from models.split import leave_one_out_split
from tasks.local_state import cinesync_home

# Real sizes unless overridden; written out so the JSON says what ran. SASRec's batch size and
# dropout are the ones sweep.py chose on ml-100k *validation* NDCG@10 (benchmarks/README.md).
BENCHMARK_OVERRIDES = {
    "sasrec": {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 200, "dropout": 0.3, "batch_size": 32,
               "max_epochs": 200, "patience": 20},
}


def load_standard_split(path: str, name: str, ratings_path: str | None):
    """Read, validate and split (standard leave-one-out, seed 0) -> (tables, data, summary, seconds)."""
    started = time.perf_counter()
    tables = read_movielens(path, ratings_path=ratings_path, name=name)
    validate_tables(tables.interactions, tables.items, tables.users, ContractConfig(), dataset=name)
    data, summary = leave_one_out_split(tables.interactions, tables.items, tables.users, mode="standard", seed=0)
    return tables, data, summary, time.perf_counter() - started


def peak_memory_mib(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device``, or the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def checkpoint_folder(family: str, dataset_sha256: str, config: dict) -> Path:
    """Where one benchmark training keeps its checkpoints: outside the checkout (``CINESYNC_HOME``,
    default ``~/.cache/cinesync``), keyed by family, dataset checksum and the whole config, so a
    stopped run resumes where it was and a changed config starts afresh."""
    key = hashlib.sha256(json.dumps([family, dataset_sha256, config], sort_keys=True).encode()).hexdigest()[:16]
    return cinesync_home() / "benchmarks" / f"{family}-{key}"


def train_and_score(
    family: str, data, overrides: dict, device: torch.device, label: str = "", dataset_sha256: str | None = None
) -> dict:
    """Train one model (seeded), score the test cases, and return its results row.

    With ``dataset_sha256`` the training checkpoints every epoch into :func:`checkpoint_folder` and
    a run that was stopped resumes from its last epoch (the resumed run is bit-identical to an
    unbroken one; the epochs before the stop keep the seconds the stopped process measured).
    """
    seed_everything(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(family, data.n_items, overrides, n_users=data.n_users).to(device)
    checkpoints = None
    if dataset_sha256 is not None:
        checkpoints = checkpoint_folder(family, dataset_sha256, {**training_config(model.config), "device": device.type})
        checkpoints.mkdir(parents=True, exist_ok=True)
        print(f"{label or family}: checkpoints in {checkpoints}", flush=True)
    t0 = time.perf_counter()
    report = model.fit(data.training_data(), device, progress=True, checkpoint_dir=checkpoints)
    train_seconds = time.perf_counter() - t0
    result = evaluate(model.score, data.stage("test"), data.n_items, device=device, max_len=model.history_length)
    m = result.metrics["all"]
    raw_user = dict(zip(data.users["user_idx"].tolist(), data.users["user_id"].tolist()))
    elapsed = 0.0
    curve = []  # [epoch, seconds since training started (end of that epoch), valid NDCG@10]
    for e in report.epochs:
        elapsed += e.seconds
        curve.append([e.epoch, round(elapsed, 2), e.valid.get("ndcg@10")])
    train_seconds = max(train_seconds, elapsed)  # a resumed run: the epochs it did not repeat count too
    to_best = next((c[1] for c in curve if c[0] == report.best_epoch), train_seconds)
    print(f"{label or family}: test NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f} MRR {m['mrr']:.4f} "
          f"(best epoch {report.best_epoch}, {train_seconds:.0f}s)", flush=True)
    return {
        "model": family,
        "hr@10": m["hr@10"],
        "ndcg@10": m["ndcg@10"],
        "mrr": m["mrr"],
        "hr@20": m["hr@20"],
        "ndcg@20": m["ndcg@20"],
        "coverage@10": m["coverage@10"],
        "best_valid_ndcg@10": report.best_valid.get("ndcg@10"),
        "best_epoch": report.best_epoch,
        "epochs_run": len(report.epochs),
        "train_seconds": round(train_seconds, 1),
        "seconds_to_best_valid": round(to_best, 1),
        "seconds_per_epoch": round(elapsed / max(len(curve), 1), 2),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
        "valid_curve": curve,
        # rank of each test target, by raw user id: lets side_by_side.py pair the cases of two runs
        "test_ranks_by_user": {str(raw_user[u]): int(r) for u, r in zip(result.per_case["user_idx"], result.per_case["rank"])},
        "config": asdict(model.config),
    }


def hardware(device: torch.device) -> dict:
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def run(path: str, name: str, ratings_path: str | None, models: list[str], device: str, overrides: dict) -> dict:
    tables, data, summary, prep_seconds = load_standard_split(path, name, ratings_path)
    dev = pick_device(device)
    rows = [
        train_and_score(family, data, overrides.get(family, {}), dev, f"{name} {family}", tables.checksum)
        for family in models
    ]
    return {
        "dataset": name,
        "path": str(path),
        "ratings_path": ratings_path,
        "dataset_sha256": tables.checksum,
        "split": {"mode": "standard", "seed": 0, **asdict(summary)},
        "n_test_cases": len(data.stage("test")),
        "prep_seconds": round(prep_seconds, 1),
        "hardware": hardware(dev),
        "results": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, standard split, "
        f"{result['n_test_cases']} test cases, {result['hardware']['device']}"
        + (f" {result['hardware']['gpu']}" if result["hardware"]["gpu"] else f", {result['hardware']['cpu_threads']} threads")
        + ")",
        "",
        "| model | HR@10 | NDCG@10 | MRR | best valid NDCG@10 | epochs (best) | s to best valid | s/epoch | train s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['model']} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['mrr']:.4f} | "
            f"{(r['best_valid_ndcg@10'] or 0):.4f} | {r['epochs_run']} ({r['best_epoch']}) | {r.get('seconds_to_best_valid', '')} | "
            f"{r.get('seconds_per_epoch', '')} | {r['train_seconds']} | {r.get('peak_memory_mib', '')} |"
        )
    return "\n".join(lines) + "\n"


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """--path, --name, --ratings-path: the MovieLens data a benchmark reads (by path, never copied)."""
    parser.add_argument("--path", required=True, help="MovieLens folder (any release format)")
    parser.add_argument("--name", required=True, help="dataset name used in the results")
    parser.add_argument("--ratings-path", default=None, help="ratings file overriding the folder's (gzip ok)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--models", default="popularity,ease,sasrec")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tag", default="baselines", help="results file prefix")
    parser.add_argument("--models-config", default="{}", help='JSON per-family overrides, e.g. \'{"sasrec": {"patience": 30}}\'')
    add_output_arguments(parser)
    args = parser.parse_args()
    given = json.loads(args.models_config)
    overrides = {f: {**BENCHMARK_OVERRIDES.get(f, {}), **given.get(f, {})} for f in {*BENCHMARK_OVERRIDES, *given}}
    result = run(args.path, args.name, args.ratings_path, args.models.split(","), args.device, overrides)
    out, md_out = output_dirs(args)
    tag = f"{args.tag}-{args.name}-{result['hardware']['device'].split(':')[0]}"
    result["command"] = command_line("baselines.py")
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1))
    text = markdown(result) + commands_note([result["command"]])
    (md_out / f"{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
