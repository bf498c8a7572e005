"""One slice's test NDCG@10 pooled over several draws of the same experiment (issue 12).

    python benchmarks/pooled_seeds.py --slice cold_user --reference lightgcn --name cold-users-synthetic \
        graph-targets20-cold30-synthetic-default-pipeline-cpu.json \
        graph-targets20-cold30-synthetic-default-seed1-pipeline-cpu.json ...

A slice of a few hundred users (the new users of one split) gives intervals as wide as the
differences asked about, and one draw can be lucky. The result files of
``benchmarks/plugin_families.py`` run with other ``--seed`` values (other synthetic data, other
held-out users and items) are independent draws: this script puts their test cases of one slice
together — each user of each draw one case, the models' chosen settings as each run chose them on
validation — and compares every model with ``--reference`` by the same paired bootstrap, per draw
and pooled (resampling the pooled cases). Only models present in every file are compared.

A file not found as given is read from the results folder (``benchmarks.results_dir()``, outside the
checkout, where ``plugin_families.py`` writes them). Writes ``pooled-<name>.json`` there and a
Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402
from models.metrics import ndcg_gains  # noqa: E402


def pooled(results: list[dict], slice_name: str, reference: str, n_resamples: int = 2000) -> dict:
    """Per draw and pooled: each model's NDCG@10 on the slice and its paired bootstrap against ``reference``."""
    # model -> {"<draw>:<user>": test rank} of the users of the slice, per result file
    draws = [{row["model"]: {f"{i}:{u}": rank for u, rank in bench.slice_ranks(row, slice_name).items()} for row in r["results"]}
             for i, r in enumerate(results)]  # fmt: skip
    models = [m for m in draws[0] if all(m in d for d in draws)]
    if reference not in models:
        raise SystemExit(f"--reference {reference!r} is not in every file (models in all: {models})")
    every = {m: {k: v for d in draws for k, v in d[m].items()} for m in models}

    def compared(ranks: dict[str, dict[str, int]]) -> dict:
        return {
            "n_cases": len(ranks[reference]),
            "ndcg@10": {m: float(ndcg_gains(list(ranks[m].values())).mean()) if ranks[m] else float("nan") for m in models},
            "versus_reference": {m: bench.paired_bootstrap(ranks[m], ranks[reference], n_resamples) for m in models if m != reference},
        }  # fmt: skip

    return {
        "models": models,
        "draws": [{"dataset": r["dataset"], "seed": r["split"].get("seed", 0), **compared(d)} for r, d in zip(results, draws)],
        "pooled": compared(every),
    }


def markdown(summary: dict) -> str:
    models, ref = summary["models"], summary["reference"]
    others = [m for m in models if m != ref]

    def cell(v: dict) -> str:  # bold where the interval excludes 0
        low, high = v["ndcg@10_diff_ci95"]
        text = f"{v['ndcg@10_diff']:+.4f} [{low:+.4f}, {high:+.4f}]"
        return f"**{text}**" if low > 0 or high < 0 else text

    lines = [f"Test NDCG@10 on the **{summary['slice']}** slice, per draw and pooled; minus {ref}'s with the 95% "
             "paired-bootstrap interval (2,000 resamples of the slice's cases); **bold** where the interval "
             "excludes 0.", ""]
    lines += bench.table(["draw", "n", *models, *(f"{m} − {ref}" for m in others)], [
        [f"{d['dataset']} (seed {d['seed']})", f"{d['n_cases']:,}", *(f"{d['ndcg@10'][m]:.4f}" for m in models),
         *(cell(d["versus_reference"][m]) for m in others)]
        for d in [*summary["draws"], {**summary["pooled"], "dataset": "**pooled**", "seed": "–"}]])  # fmt: skip
    lines += ["", f"- files: {', '.join(summary['files'])}", f"- command: `{summary['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = bench.parser(__doc__, data=False, device=None)
    parser.add_argument("files", nargs="+", help="result JSON files of benchmarks/plugin_families.py (a path, or a "
                                                 "name in the results folder)")
    parser.add_argument("--slice", default="cold_user", help="the test slice to pool (warm, cold_user, cold_item, all)")
    parser.add_argument("--reference", required=True, help="the model every other one is compared with")
    parser.add_argument("--name", required=True, help="results file name: pooled-<name>.json")
    args = parser.parse_args(argv)
    results = [json.loads(bench.find_result(f).read_text()) for f in args.files]
    summary = {"slice": args.slice, "reference": args.reference, "files": [Path(f).name for f in args.files],
               **pooled(results, args.slice, args.reference)}  # fmt: skip
    summary["command"] = bench.command_line("pooled_seeds.py", argv)
    bench.write_report(args, f"pooled-{args.name}", summary, markdown(summary))
    return summary


if __name__ == "__main__":
    main()
