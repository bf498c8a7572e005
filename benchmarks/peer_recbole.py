"""RecBole's SASRec, BERT4Rec, LightGCN and NGCF on OUR split, scored by OUR evaluator.

    python benchmarks/peer_recbole.py setup                     # .venv-recbole (RecBole 1.2.1, CPU torch)
    python benchmarks/peer_recbole.py run --path ../shared/data/ml-100k --name ml-100k \
        --models SASRec,BERT4Rec
    python benchmarks/peer_recbole.py run --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz --models SASRec
    python benchmarks/peer_recbole.py collect --path ... --name ...   # re-evaluate finished runs

Our side is the pipeline's: the data read, checked and split by ``pipeline.steps`` (standard mode).
RecBole runs in its own virtual environment (``numpy<2``, ``setuptools<70``) through
``benchmarks/recbole_worker.py``, which imports nothing from this project but our evaluator
(``models.metrics``: the venv has pyarrow for it); the split goes over as one ``.inter`` file of every user's sequence in OUR order (timestamps 0, 1, 2, ...), so RecBole's
own leave-one-out cuts it where ours does (the worker checks every target and input). Its ranks
and top-100 lists are re-evaluated here with ``models.metrics`` and every rank recomputed from
the saved scores (``rank_check_mismatches``). Users with exactly 3 interactions are the one case
RecBole cuts differently (no validation case); they are counted (``users_with_3_interactions``).
benchmarks/README.md ("Side by side with RecBole") says the rest.

Writes ``recbole-<name>.json`` to the results folder (``benchmarks.results_dir()``) and ``.md`` to
``benchmarks/results/``; a re-run of some models keeps the other models' rows of the same dataset
checksum. Work files live in ``outputs/recbole/<name>/``. The worker saves its whole training
state after every epoch: the same ``run`` command after a kill continues exactly where it stopped
(``--fresh`` starts over). ``touch outputs/recbole/<name>/<model>[-select-ours]/STOP`` asks it to
test the best epoch so far after the current one (marked ``stopped_on_request_after_epoch``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402
from models.data import SplitData  # noqa: E402
from models.metrics import exclusion_mask, metrics_from_ranks, target_ranks  # noqa: E402

WORKER = REPO / "benchmarks" / "recbole_worker.py"
CONSTRAINTS = REPO / "benchmarks" / "recbole-constraints.txt"
VENV = REPO / ".venv-recbole"
WORKDIR = REPO / "outputs" / "recbole"  # ignored by git
MODELS = ("SASRec", "BERT4Rec", "LightGCN", "NGCF")

# torch 2.13's metadata asks for setuptools>=77.0.3 while RecBole 1.2.1 needs setuptools<70, so
# pip cannot resolve both in one step: the peer packages first, then setuptools is pinned back.
# scipy < 1.12: RecBole 1.2.1's LightGCN / NGCF build their adjacency with dok_matrix._update,
# which scipy 1.12 removed.
# pyarrow: the worker ranks with models.metrics, whose module imports it.
PEER_REQUIREMENTS = ("recbole==1.2.1", "numpy<2", "pandas<2.2", "scipy<1.12", "torch==2.13.0", "pyarrow")
PEER_SETUPTOOLS = "setuptools<70"
# Only the worker process gets this: torch >= 2.6 loads with weights_only=True by default, and
# RecBole's test step reloads its own checkpoint, which pickles its Config object.
PEER_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

INTER_HEADER = ("user_id:token", "item_id:token", "timestamp:float")


# --------------------------------------------------------------------------------------------
# Peer environment


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path = VENV, constraints: Path = CONSTRAINTS, refreeze: bool = False) -> None:
    """Create the peer venv; install exactly the recorded versions when the constraints exist.

    ``refreeze`` (or a missing constraints file) resolves the loose requirements and records the
    installed versions in ``constraints``.
    """
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    pinned = constraints.is_file() and not refreeze
    with tempfile.TemporaryDirectory() as tmp:
        step1 = list(pip) + list(PEER_REQUIREMENTS)
        setuptools_spec = PEER_SETUPTOOLS
        if pinned:
            lines = [ln.strip() for ln in constraints.read_text().splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            others = [ln for ln in lines if not ln.lower().startswith("setuptools==")]
            setuptools_spec = next((ln for ln in lines if ln.lower().startswith("setuptools==")), PEER_SETUPTOOLS)
            step1_constraints = Path(tmp) / "constraints.txt"
            step1_constraints.write_text("\n".join(others) + "\n")
            step1 += ["-c", str(step1_constraints)]
        subprocess.run(step1, check=True)
        subprocess.run(list(pip) + [setuptools_spec], check=True)
    check = "import recbole, torch, numpy; from recbole.trainer import Trainer; print(recbole.__version__, torch.__version__, numpy.__version__)"
    subprocess.run([str(venv_python(venv)), "-c", check], check=True)
    subprocess.run([str(venv_python(venv)), str(WORKER), "--check"], check=True)  # the worker's imports, ours included
    if not pinned:
        frozen = subprocess.run(
            [str(venv_python(venv)), "-m", "pip", "freeze", "--all", "--exclude", "pip"],
            check=True, capture_output=True, text=True,
        ).stdout
        constraints.write_text(
            "# Exact versions in .venv-recbole (written by `benchmarks/peer_recbole.py setup`).\n"
            "# torch's metadata wants setuptools>=77.0.3; setup installs setuptools last, on purpose.\n"
            + frozen
        )
    print(f"peer venv ready: {venv}")


def worker_command(spec_path: Path, python: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the worker subprocess; PEER_ENV is set in that env only, never here."""
    argv = [str(python or venv_python()), str(WORKER), str(spec_path)]
    env = {**os.environ, **PEER_ENV}
    return argv, env


# --------------------------------------------------------------------------------------------
# Conversion


def recbole_sequences(data: SplitData) -> tuple[pd.DataFrame, dict[str, list[int]], dict[str, int]]:
    """Our split as RecBole input.

    Returns (inter, sequences, counts): ``inter`` has columns user_id, item_id (raw ids) and
    timestamp = 0, 1, 2, ... in OUR order per user (training part, validation target, test
    target); ``sequences`` maps each raw user id (str) with evaluation cases to its full raw item
    sequence; ``counts`` says how many users fall in each handling case.
    """
    if set(data.cases["slice"]) - {"warm"}:
        raise ValueError("the RecBole comparison needs a standard-mode split (no cold holdouts)")
    cases = data.cases
    parts = [
        pd.DataFrame({"user_idx": data.train["user_idx"].to_numpy(np.int64),
                      "item_idx": data.train["item_idx"].to_numpy(np.int64), "part": 0}),
    ]
    for part, stage in ((1, "valid"), (2, "test")):
        stage_cases = cases[cases["stage"] == stage]
        parts.append(pd.DataFrame({"user_idx": stage_cases["user_idx"].to_numpy(np.int64),
                                   "item_idx": stage_cases["target_item"].to_numpy(np.int64), "part": part}))
    frame = pd.concat(parts, ignore_index=True)
    # Training rows are already in our order per user; a stable sort keeps it.
    frame = frame.sort_values(["user_idx", "part"], kind="stable").reset_index(drop=True)
    position = frame.groupby("user_idx").cumcount().to_numpy(np.int64)
    user_ids = data.users.set_index("user_idx")["user_id"]
    item_ids = data.items.set_index("item_idx")["item_id"]
    inter = pd.DataFrame({
        "user_id": user_ids.loc[frame["user_idx"]].to_numpy(np.int64),
        "item_id": item_ids.loc[frame["item_idx"]].to_numpy(np.int64),
        "timestamp": position.astype(np.float64),
    })

    test_users = set(cases.loc[cases["stage"] == "test", "user_idx"].to_numpy(np.int64).tolist())
    lengths = frame.groupby("user_idx").size()
    raw_user = dict(zip(data.users["user_idx"].to_numpy(np.int64), data.users["user_id"].to_numpy(np.int64)))
    sequences: dict[str, list[int]] = {}
    for user_idx, group in inter.groupby(frame["user_idx"].to_numpy(), sort=True):
        if int(user_idx) in test_users:
            sequences[str(int(raw_user[int(user_idx)]))] = group["item_id"].astype(int).tolist()
    counts = {
        "users": int(len(lengths)),
        "users_with_cases": int(len(test_users)),
        "users_train_only": int((lengths < 3).sum()),
        "users_with_3_interactions": int((lengths == 3).sum()),
        "rows": int(len(inter)),
    }
    return inter, sequences, counts


def recbole_dataset_name(name: str) -> str:
    # Never a name RecBole ships presets for (its ml-100k.yaml would change the loaded columns).
    return "cinesync_" + re.sub(r"[^A-Za-z0-9_]+", "_", name)


def write_atomic_files(data: SplitData, folder: Path, dataset: str) -> dict[str, int]:
    """Write ``folder/<dataset>/<dataset>.inter`` and ``folder/sequences.json``; return counts."""
    inter, sequences, counts = recbole_sequences(data)
    target = folder / dataset
    target.mkdir(parents=True, exist_ok=True)
    with open(target / f"{dataset}.inter", "w") as handle:
        handle.write("\t".join(INTER_HEADER) + "\n")
        inter.to_csv(handle, sep="\t", header=False, index=False, float_format="%.0f")
    (folder / "sequences.json").write_text(json.dumps(sequences))
    return counts


# --------------------------------------------------------------------------------------------
# Re-evaluation with the project's evaluator


def evaluate_predictions(predictions: list[dict], data: SplitData, ks=(10, 20)) -> dict:
    """Metrics of the worker's per-user ranks and top lists, with ``models.metrics``.

    Checks that the users and targets are exactly our test cases (raises otherwise) and maps raw
    item ids to item_idx for coverage.
    """
    test = data.stage("test")
    user_id = dict(zip(data.users["user_idx"].to_numpy(np.int64), data.users["user_id"].to_numpy(np.int64)))
    item_idx = dict(zip(data.items["item_id"].to_numpy(np.int64), data.items["item_idx"].to_numpy(np.int64)))
    expected = {int(user_id[u]): int(t) for u, t in zip(test["user_idx"], test["target_item"])}
    got = {int(p["user_id"]): int(item_idx[int(p["target_item_id"])]) for p in predictions}
    if len(got) != len(predictions) or got != expected:
        missing = len(set(expected) - set(got))
        wrong = sum(1 for u, t in got.items() if expected.get(u) != t)
        raise ValueError(f"predictions do not match our test cases: {missing} users missing, {wrong} wrong targets")
    ranks = np.array([int(p["rank"]) for p in predictions], dtype=np.int64)
    top = [[int(item_idx[i]) for i in p["top_item_ids"]] for p in predictions]
    return metrics_from_ranks(ranks, top, data.n_items, ks)


def rank_check(scores_path: Path, predictions: list[dict], data: SplitData) -> int:
    """How many worker ranks differ from ``models.metrics.target_ranks`` on the saved scores."""
    saved = np.load(scores_path)
    scores, columns, users = saved["scores"], saved["column_item_ids"], saved["user_ids"]
    item_idx = dict(zip(data.items["item_id"].to_numpy(np.int64), data.items["item_idx"].to_numpy(np.int64)))
    ours = np.full((len(users), data.n_items + 1), -np.inf, dtype=np.float32)
    real = columns > 0
    ours[:, [item_idx[int(i)] for i in columns[real]]] = scores[:, real]
    test = data.stage("test")
    user_idx = dict(zip(data.users["user_id"].to_numpy(np.int64), data.users["user_idx"].to_numpy(np.int64)))
    by_user = test.set_index("user_idx")
    rows = by_user.loc[[user_idx[int(u)] for u in users]]
    exclude = exclusion_mask(list(rows["history"]), data.n_items)
    targets = torch.from_numpy(rows["target_item"].to_numpy(np.int64, copy=True))
    recomputed = target_ranks(torch.from_numpy(ours), targets, exclude).numpy()
    worker = {int(p["user_id"]): int(p["rank"]) for p in predictions}
    return int(sum(worker[int(u)] != int(r) for u, r in zip(users, recomputed)))


# what a results row copies from the worker's result.json, as it is
WORKER_FIELDS = ("best_valid_ndcg@10", "best_valid_ndcg@10_recbole", "best_epoch", "epochs_run", "stopped_on_request_after_epoch",
                 "seconds_to_best_valid", "seconds_per_epoch", "train_seconds_per_epoch", "fit_seconds", "total_seconds",
                 "peak_rss_mib", "environment", "epochs")  # fmt: skip


def model_row(model: str, out_dir: Path, data: SplitData) -> dict:
    worker = json.loads((out_dir / "result.json").read_text())
    predictions = json.loads((out_dir / "predictions.json").read_text())
    metrics = evaluate_predictions(predictions, data)
    return {
        "model": model, "library": f"recbole {worker['environment']['recbole']}",
        **{k: metrics[k] for k in ("hr@10", "ndcg@10", "mrr", "hr@20", "ndcg@20", "coverage@10", "n_cases")},
        **{k: worker.get(k) for k in WORKER_FIELDS}, "selected_on": worker.get("selected_on", "RecBole's metric"),
        "recbole_test_result": worker["test_result_recbole"], "recbole_best_valid_result": worker["best_valid_result_recbole"],
        "checks": {
            "test_target_mismatches": worker["test_target_mismatches"],
            "test_input_mismatches": worker["test_input_mismatches"],
            "valid_target_mismatches": max((e["valid_target_mismatches"] for e in worker["epochs"]), default=0),
            "rank_check_mismatches": rank_check(out_dir / "test_scores.npz", predictions, data),
            "train_pairs_recbole": worker["train_pairs"],
            "valid_cases_recbole": worker["valid_cases"],
            "test_cases_recbole": worker["test_cases"],
        },
        "test_ranks_by_user": {str(int(p["user_id"])): int(p["rank"]) for p in predictions},
        "config": worker["recbole_config"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Runner


def _running_worker(out_dir: Path) -> int | None:
    """PID of a worker of an earlier attempt still running on ``out_dir`` (its runner was killed)."""
    try:
        pid = int((out_dir / "worker.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if "recbole_worker" in cmdline else None


def run_worker(spec: dict, out_dir: Path, python: Path | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    while (pid := _running_worker(out_dir)) is not None:
        print(f"[peer_recbole] waiting for the worker of an earlier attempt (pid {pid})", flush=True)
        time.sleep(30)
    (out_dir / "STOP").unlink(missing_ok=True)  # a stop request belongs to the run it was made for
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    argv, env = worker_command(spec_path, python)
    log_path = out_dir / "worker.log"
    print(f"[peer_recbole] {spec['model']}: {' '.join(argv)} (log {log_path})", flush=True)
    with open(log_path, "a") as log:
        process = subprocess.Popen(argv, env=env, cwd=out_dir, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        (out_dir / "worker.pid").write_text(str(process.pid))
        for line in process.stdout:
            log.write(line)
            log.flush()
            if "[cinesync]" in line or "Error" in line or "Traceback" in line:
                print(line.rstrip(), flush=True)
        code = process.wait()
    if code != 0:
        tail = log_path.read_text().splitlines()[-30:]
        raise RuntimeError(f"RecBole worker for {spec['model']} failed ({code}):\n" + "\n".join(tail))


def progress(out_dir: Path) -> str:
    """One line on a worker still running (or killed): its epochs so far, from epochs.json."""
    path = out_dir / "epochs.json"
    if not path.is_file():
        return f"no epoch finished yet in {out_dir}"
    epochs = json.loads(path.read_text())
    best = max(epochs, key=lambda e: e["valid_ndcg@10_recbole"])
    last = epochs[-1]
    return (
        f"{len(epochs)} epochs, last {last['epoch']} at {last['elapsed_seconds']:.0f}s "
        f"(RecBole valid NDCG@10 {last['valid_ndcg@10_recbole']:.4f}, ours {last['valid_ndcg@10']:.4f}); "
        f"best so far epoch {best['epoch']} (RecBole {best['valid_ndcg@10_recbole']:.4f}, "
        f"ours {best['valid_ndcg@10']:.4f}) at {best['elapsed_seconds']:.0f}s"
    )


def result_stem(name: str, select_on: str = "recbole") -> str:
    """``recbole-<name>``, or ``recbole-<name>-select-ours`` for runs chosen on our validation."""
    return f"recbole-{name}" if select_on == "recbole" else f"recbole-{name}-select-{select_on}"


def worker_dir(workdir: Path, model: str, select_on: str = "recbole") -> Path:
    return workdir / (model if select_on == "recbole" else f"{model}-select-{select_on}")


def benchmark(args: argparse.Namespace, train: bool) -> dict:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown model(s) {sorted(unknown)}; choose from {MODELS}")
    started = time.perf_counter()
    tables, split = bench.prepare(bench.data_options(args, "standard"), args.name)
    data, summary = split.data, split.summary
    workdir = Path(args.workdir) / args.name
    dataset = recbole_dataset_name(args.name)
    if train:
        conversion = write_atomic_files(data, workdir / "data", dataset)
    else:  # never rewrite the input of a worker that may still be running
        conversion = recbole_sequences(data)[2]
    print(f"[peer_recbole] {args.name}: {conversion} -> {workdir}", flush=True)
    prep_seconds = time.perf_counter() - started

    stem = result_stem(args.name, args.select_on)
    result = bench.previous_result(args, stem)
    rows: dict[str, dict] = {}
    commands: list[str] = []
    if result.get("dataset_sha256") == tables.checksum:
        rows = {r["model"]: r for r in result.get("results", [])}
        commands = result.get("commands", [])
    for model in models:
        out_dir = worker_dir(workdir, model, args.select_on)
        if train:
            spec = {
                "model": model,
                "dataset": dataset,
                "data_path": str(workdir / "data"),
                "sequences_path": str(workdir / "data" / "sequences.json"),
                "out_dir": str(out_dir),
                "seed": args.seed,
                "device": args.device,
                "max_epochs": args.max_epochs,
                "overrides": json.loads(args.overrides),
                # Continue from out_dir/last.pth (written after every epoch) when a killed run left one.
                "resume": not args.fresh,
                "select_on": args.select_on,
            }
            if args.fresh and out_dir.exists():
                shutil.rmtree(out_dir)
            run_worker(spec, out_dir, Path(args.python) if args.python else None)
        if not train and not (out_dir / "result.json").is_file():
            print(f"[peer_recbole] {args.name} RecBole {model}: not finished; {progress(out_dir)}", flush=True)
            continue
        row = model_row(model, out_dir, data)
        row["max_epochs"] = json.loads((out_dir / "spec.json").read_text()).get("max_epochs")
        rows[model] = row
        print(f"[peer_recbole] {args.name} RecBole {model}: test NDCG@10 {row['ndcg@10']:.4f} "
              f"HR@10 {row['hr@10']:.4f} MRR {row['mrr']:.4f}; best epoch {row['best_epoch']} of "
              f"{row['epochs_run']}, {row['seconds_to_best_valid']}s to best", flush=True)
        result = {
            "dataset": args.name,
            "path": str(args.path),
            "ratings_path": args.ratings_path,
            "dataset_sha256": tables.checksum,
            "split": {"mode": "standard", "seed": args.seed, **summary.to_dict()},
            "n_test_cases": int(len(data.stage("test"))),
            "conversion": conversion,
            "prep_seconds": round(prep_seconds, 1),
            "protocol": "DESIGN.md full ranking; ranks and top lists recomputed by models.metrics",
            "results": [rows[m] for m in MODELS if m in rows],
            "commands": commands,
        }
        bench.with_commands(result, bench.command_line("peer_recbole.py"))
        bench.write_report(args, stem, result, markdown(result) + bench.commands_note(result["commands"]))
    return result


def markdown(result: dict) -> str:
    env = (result["results"][0] if result["results"] else {"environment": {}})["environment"]
    lines = [f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, standard split, {result['n_test_cases']} "
             f"test cases, RecBole {env.get('recbole', '?')} in its own venv, torch {env.get('torch', '?')}, "
             f"{env.get('device', '?')}, {env.get('torch_threads', '?')} threads)", "",
             "Metrics: our evaluator (full ranking, history excluded, ties against the target). "
             "RecBole's own test numbers (history not excluded, NDCG/MRR cut at 10) for reference.", ""]  # fmt: skip
    lines += bench.table(["model", "HR@10", "NDCG@10", "MRR", "best valid NDCG@10 (ours / RecBole's)", "epochs (best)", "s to best valid",
                    "s per epoch", "peak RSS MiB", "RecBole's test NDCG@10 / HR@10"], [
        [f"RecBole {r['model']}", f"{r['hr@10']:.4f}", f"{r['ndcg@10']:.4f}", f"{r['mrr']:.4f}",
         f"{r['best_valid_ndcg@10']:.4f} / {r['best_valid_ndcg@10_recbole']:.4f}",
         f"{r['epochs_run']} ({r['best_epoch']})" + ("" if r.get("stopped_on_request_after_epoch") is None else " \\*"),
         f"{r['seconds_to_best_valid']:.0f}", f"{r['seconds_per_epoch']:.1f}", f"{r['peak_rss_mib']:.0f}",
         f"{r['recbole_test_result'].get('ndcg@10', float('nan')):.4f} / {r['recbole_test_result'].get('hit@10', float('nan')):.4f}"]
        for r in result["results"]])  # fmt: skip
    lines += ["", "Epochs are RecBole's 0-based indices; the clock starts at the first training epoch "
              "(dataset loading excluded) and ends with the best epoch's validation."]
    if any(r.get("stopped_on_request_after_epoch") is not None for r in result["results"]):
        lines += ["", "\\* cut short on request before RecBole's early stopping ended it: the best epoch so far, "
                  "not a converged run."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="create .venv-recbole")
    p_setup.add_argument("--venv", default=str(VENV))
    p_setup.add_argument("--refreeze", action="store_true", help="resolve anew and rewrite recbole-constraints.txt")
    for command, text in (("run", "train RecBole models and evaluate them"),
                          ("collect", "re-evaluate finished worker outputs without training")):
        p = bench.parser(into=sub.add_parser(command, help=text), device=None)  # --seed: RecBole's too
        p.add_argument("--models", default="SASRec,BERT4Rec")
        p.add_argument("--max-epochs", type=int, default=None, help="cap RecBole's epochs (default: its 300)")
        p.add_argument("--fresh", action="store_true",
                       help="delete a previous attempt of these models instead of resuming it")
        p.add_argument("--select-on", default="recbole", choices=("recbole", "ours"),
                       help="validation number RecBole's early stopping and best epoch use: its own metric "
                            "(default, as RecBole users run it) or our protocol's (history excluded)")
        p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
        p.add_argument("--overrides", default="{}", help="JSON of extra RecBole config values")
        p.add_argument("--python", default=None, help="python of the peer venv (default .venv-recbole)")
        p.add_argument("--workdir", default=str(WORKDIR))
    args = parser.parse_args()
    if args.command == "setup":
        setup(Path(args.venv), refreeze=args.refreeze)
    else:
        benchmark(args, train=args.command == "run")


if __name__ == "__main__":
    main()
