"""Model benchmark on a MovieLens folder, standard split (default: popularity, EASE, SASRec).

    python benchmarks/baselines.py --path ../shared/data/ml-100k --name ml-100k
    python benchmarks/baselines.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz
    python benchmarks/baselines.py --path ../shared/data/ml-100k --name ml-100k --tag sequential \
        --models sasrec,bert4rec --models-config '{"sasrec": {"patience": 30}}'

The data read, checked and split (DESIGN.md's *standard* leave-one-out) by ``pipeline.steps``;
each model fitted there (early stopping on validation NDCG@10, checkpoints outside the checkout)
and its test cases ranked against the whole catalogue. Writes ``<tag>-<name>-<device>.json`` to
the results folder outside the checkout (``benchmarks.results_dir()``) and a Markdown table
(with time to the best validation epoch and peak memory) to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402
from models.device import pick_device  # noqa: E402

# Real sizes unless overridden; written out so the JSON says what ran. SASRec's batch size and
# dropout are the ones sweep.py chose on ml-100k *validation* NDCG@10 (benchmarks/README.md).
BENCHMARK_OVERRIDES = {
    "sasrec": {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 200, "dropout": 0.3, "batch_size": 32,
               "max_epochs": 200, "patience": 20},
}  # fmt: skip


def markdown(result: dict) -> str:
    hw = result["hardware"]
    lines = [f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, standard split, "
             f"{result['n_test_cases']} test cases, {hw['device']}" + (f" {hw['gpu']}" if hw["gpu"] else f", {hw['cpu_threads']} threads") + ")", ""]  # fmt: skip
    lines += bench.table(
        ["model", "HR@10", "NDCG@10", "MRR", "best valid NDCG@10", "epochs (best)", "s to best valid", "s/epoch", "train s", "peak MiB"],
        [[r["model"], f"{r['hr@10']:.4f}", f"{r['ndcg@10']:.4f}", f"{r['mrr']:.4f}", f"{(r['best_valid_ndcg@10'] or 0):.4f}",
          f"{r['epochs_run']} ({r['best_epoch']})", r["seconds_to_best_valid"], r["seconds_per_epoch"], r["train_seconds"],
          r["peak_memory_mib"]] for r in result["results"]])  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = bench.parser(__doc__)
    parser.add_argument("--models", default="popularity,ease,sasrec")
    parser.add_argument("--tag", default="baselines", help="results file prefix")
    parser.add_argument("--models-config", default="{}", help='JSON per-family overrides, e.g. \'{"sasrec": {"patience": 30}}\'')
    args = parser.parse_args()
    given, options = json.loads(args.models_config), bench.data_options(args, "standard")
    tables, split = bench.prepare(options, args.name)
    device = pick_device(args.device)
    key = {"dataset_sha256": tables.checksum, "data": asdict(options)}
    families = args.models.split(",")
    side_inputs = bench.side_inputs_for(families, split)
    rows = [bench.train_and_test(family, {**BENCHMARK_OVERRIDES.get(family, {}), **given.get(family, {})}, split,
                                 side_inputs, device, key, f"{args.name} {family}")[0] for family in families]  # fmt: skip
    result = {
        "dataset": args.name, "data": asdict(options), "dataset_sha256": tables.checksum,
        "split": {"mode": "standard", "seed": args.seed, **split.summary.to_dict()},
        "n_test_cases": len(split.test_cases), "hardware": bench.hardware(device), "results": rows,
        "command": bench.command_line("baselines.py"),
    }  # fmt: skip
    stem = f"{args.tag}-{args.name}-{device.type}"
    bench.write_report(args, stem, result, markdown(result) + bench.commands_note([result["command"]]))


if __name__ == "__main__":
    main()
