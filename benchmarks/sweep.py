"""Try several configurations of one model family and choose by validation, never by test.

    python benchmarks/sweep.py --path ../shared/data/ml-100k --name ml-100k --family sasrec \
        --grid '[{"dropout": 0.5}, {"batch_size": 32}, {"weight_decay": 0.1}]'

Every configuration is ``BENCHMARK_OVERRIDES[family]`` (from ``baselines.py``) updated by
``--base`` and then by one grid entry. Each is trained and scored exactly as ``baselines.py``
does (``pipeline.steps``: standard split, early stopping on validation NDCG@10). The test numbers
are recorded for every trial but the *chosen* trial is the one with the best validation NDCG@10.

Results accumulate in ``sweep-<family>-<name>-<device>.json`` in the results folder outside the
checkout (``benchmarks.results_dir()``; ``.md`` in ``benchmarks/results/``): a trial whose full
configuration was already measured on the same data (read back from that JSON) is not run again.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402
from benchmarks.baselines import BENCHMARK_OVERRIDES  # noqa: E402
from models.device import pick_device  # noqa: E402
from models.registry import config_from_dict  # noqa: E402


def regenerating_command(result: dict) -> str:
    """One command that measures every trial of ``result`` again into an empty results folder: each
    trial's whole recorded config, written as what it changes from today's benchmark config
    (``BENCHMARK_OVERRIDES`` and the family's defaults; those moved since some trials ran)."""
    family, trials = result["family"], result["trials"]
    reference = json.loads(json.dumps(asdict(config_from_dict(
        family, {"n_items": trials[0]["config"]["n_items"], **BENCHMARK_OVERRIDES.get(family, {})}))))
    grid = [{k: v for k, v in t["config"].items() if k not in ("n_items", "n_users") and reference.get(k) != v}
            for t in trials]  # fmt: skip
    argv = ["python", "benchmarks/sweep.py", "--path", result["path"]]
    argv += ["--ratings-path", result["ratings_path"]] if result.get("ratings_path") else []
    argv += ["--name", result["dataset"], "--family", family, "--device", result["hardware"]["device"].split(":")[0],
             "--grid", json.dumps(grid)]  # fmt: skip
    return shlex.join(argv)


def markdown(result: dict) -> str:
    chosen = result.get("chosen")
    best = result["trials"][chosen]

    def versus(trial: dict) -> str:  # test NDCG@10 minus the chosen trial's, with its paired-bootstrap 95% interval
        if trial is best or "test_ranks_by_user" not in trial or "test_ranks_by_user" not in best:
            return "–"
        lo, hi = bench.paired_bootstrap(trial["test_ranks_by_user"], best["test_ranks_by_user"])["ndcg@10_diff_ci95"]
        return f"{trial['ndcg@10'] - best['ndcg@10']:+.4f} [{lo:+.4f}, {hi:+.4f}]"

    lines = [f"**{result['family']} on {result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, standard split, "
             f"{result['hardware']['device']}, {result['hardware']['cpu_threads']} threads); chosen by validation: trial {chosen}", ""]
    lines += bench.table(["trial", "changed from the benchmark config", "best valid NDCG@10", "test NDCG@10", "HR@10", "MRR",
                          "epochs (best)", "s to best valid", "s/epoch", "test NDCG@10 − chosen's [95% interval]"], [
        [f"{i}" + (" **(chosen)**" if i == chosen else ""), f"`{json.dumps(t['changed'])}`", f"{t['best_valid_ndcg@10']:.4f}",
         f"{t['ndcg@10']:.4f}", f"{t['hr@10']:.4f}", f"{t['mrr']:.4f}", f"{t['epochs_run']} ({t['best_epoch']})",
         t["seconds_to_best_valid"], t["seconds_per_epoch"], versus(t)] for i, t in enumerate(result["trials"])])  # fmt: skip
    lines += ["", "The last column pairs each trial's test users with the chosen trial's (bootstrap over users, "
              "2,000 resamples): an interval that holds 0 is a difference the test set cannot tell from noise."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = bench.parser(__doc__)
    parser.add_argument("--family", required=True)
    parser.add_argument("--base", default="{}", help="JSON overrides applied to every trial")
    parser.add_argument("--grid", required=True, help="JSON list of per-trial overrides")
    args = parser.parse_args()

    grid = json.loads(args.grid)
    if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
        raise SystemExit(f"--grid must be a JSON list of objects, got {args.grid!r}")
    base = {**BENCHMARK_OVERRIDES.get(args.family, {}), **json.loads(args.base)}
    options = bench.data_options(args, "standard")
    tables, split = bench.prepare(options, args.name)
    data, side_inputs, device = split.data, bench.side_inputs_for([args.family], split), pick_device(args.device)
    stem = f"sweep-{args.family}-{args.name}-{device.type}"
    result = bench.previous_result(args, stem)
    if result.get("dataset_sha256") != tables.checksum:
        result = {"trials": []}
    reference = BENCHMARK_OVERRIDES.get(args.family, {})
    for entry in grid:
        overrides = {**base, **entry}
        # Compare whole configs (defaults filled in), not just the keys this trial names.
        want = json.loads(json.dumps(asdict(config_from_dict(args.family, {"n_items": data.n_items, **overrides}))))
        done = [t for t in result["trials"] if all(t["config"].get(k) == v for k, v in want.items() if k != "n_users")]
        if done:
            print(f"already measured: {json.dumps(overrides)} -> valid {done[0]['best_valid_ndcg@10']:.4f}")
            continue
        row, _ = bench.train_and_test(args.family, overrides, split, side_inputs, device, {"dataset_sha256": tables.checksum,
                                      "data": asdict(options)}, f"{args.name} {args.family} {json.dumps(entry)}")  # fmt: skip
        row["changed"] = {k: v for k, v in overrides.items() if reference.get(k) != v}
        result["trials"].append(row)
        result.update(family=args.family, dataset=args.name, path=str(args.path), ratings_path=args.ratings_path,
                      dataset_sha256=tables.checksum, split={"mode": "standard", "seed": args.seed, **split.summary.to_dict()},
                      hardware=bench.hardware(device),
                      chosen=max(range(len(result["trials"])), key=lambda i: result["trials"][i]["best_valid_ndcg@10"] or 0))
        bench.write_report(args, stem, result, markdown(result) + bench.commands_note([regenerating_command(result)]))
    if result["trials"]:  # also refreshes the table of a finished sweep (an empty --grid '[]')
        bench.write_report(args, stem, result, markdown(result) + bench.commands_note([regenerating_command(result)]))


if __name__ == "__main__":
    main()
