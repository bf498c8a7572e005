"""The product documents' claims about the sequential family, measured (issue 11).

    python benchmarks/sequential_claims.py --claim bert4rec-user-embedding
    python benchmarks/sequential_claims.py --claim tat-seasonal
    python benchmarks/sequential_claims.py --claim bert4rec-user-embedding \
        --path ../shared/data/ml-100k --name ml-100k

Claims (each one a set of variants of one family, trained alike and scored per slice):

- ``bert4rec-user-embedding``: "BERT4Rec's user embedding gives 25% better cold-user
  performance". BERT4Rec with and without ``use_user_embedding``, compared on the cold-user
  slice (users held out of training, who reach the model as the unknown user 0).
- ``tat-seasonal``: "TAT-TV's calendar encodings capture seasonal viewing". TAT-TV with every
  temporal part, without the seasonal encoding, without the seasonal decomposition (activity
  profile), without both, and with none (time intervals off too, which leaves SASRec's
  architecture). Meaningful on data whose timestamps are *viewing* times: the synthetic default,
  generated with weekly and yearly seasonality (on MovieLens, rating times, they did not help).

Data: the synthetic default (``generate_synthetic()``, what ``pyflyte run workflows/full.py
full_pipeline`` uses) unless ``--path`` names a MovieLens folder; always the *pipeline* split
(seed 0), which holds out cold users and cold items. Every variant trains with early stopping on
validation NDCG@10 and checkpoints every epoch outside the checkout (``CINESYNC_HOME``), so a
stopped run resumes. A paired bootstrap over the cases of the claim's slice compares each variant
with the claim's reference variant (the first).

Writes ``claims-<claim>-<name>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``; a re-run of some variants keeps the others, read back from it) and a
Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from benchmarks import add_output_arguments, command_line, commands_note, output_dirs, with_commands  # noqa: E402
from benchmarks.baselines import checkpoint_folder, hardware  # noqa: E402
from benchmarks.side_by_side import paired_bootstrap  # noqa: E402
from data_contracts.sources.movielens import read_movielens  # noqa: E402
from data_contracts.sources.synthetic import generate_synthetic  # noqa: E402
from data_contracts.suites import ContractConfig  # noqa: E402
from data_contracts.validate import validate_tables  # noqa: E402
from models.device import pick_device, seed_everything  # noqa: E402
from models.interface import training_config  # noqa: E402
from models.metrics import evaluate  # noqa: E402
from models.registry import build_model  # noqa: E402
from models.split import leave_one_out_split  # noqa: E402

SLICES = ("all", "warm", "cold_user", "cold_item")
# The sizes the default run trains at (workflows/configs/laptop.yaml has none for these: their
# defaults), with patience long enough for the curve to peak.
COMMON = {"max_epochs": 200, "patience": 20, "num_threads": 1}
CLAIMS = {
    "bert4rec-user-embedding": {
        "family": "bert4rec",
        "slice": "cold_user",
        "claim": "user embedding: +25% NDCG@10 on cold users",
        "variants": {
            "without user embedding": {},
            "with user embedding": {"use_user_embedding": True},
        },
    },
    "tat-seasonal": {
        "family": "temporal_attention",
        "slice": "all",
        "claim": "calendar (seasonal) encodings help on viewing-time data",
        "variants": {
            "every temporal part": {"seasonal_encoding": True},
            "no seasonal encoding": {"seasonal_encoding": False},
            "no seasonal decomposition": {"seasonal_encoding": True, "seasonal_decomposition": False},
            "no seasonal parts (intervals only)": {"seasonal_encoding": False, "seasonal_decomposition": False},
            "no temporal parts (SASRec-like)": {
                "seasonal_encoding": False, "seasonal_decomposition": False, "time_intervals": False,
            },
        },
    },
}  # fmt: skip


def load(path: str | None, name: str, ratings_path: str | None):
    """(tables, SplitData, split summary): the data validated and split the pipeline's way."""
    tables = generate_synthetic() if path is None else read_movielens(path, ratings_path=ratings_path, name=name)
    validate_tables(tables.interactions, tables.items, tables.users, ContractConfig(), dataset=name)
    data, summary = leave_one_out_split(tables.interactions, tables.items, tables.users, mode="pipeline", seed=0)
    return tables, data, summary


def train_variant(family: str, overrides: dict, data, checksum: str, device: torch.device, label: str) -> dict:
    seed_everything(0)
    model = build_model(family, data.n_items, overrides, n_users=data.n_users).to(device)
    folder = checkpoint_folder(family, checksum, {**training_config(model.config), "device": device.type, "split": "pipeline"})
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{label}: checkpoints in {folder}", flush=True)
    started = time.perf_counter()
    report = model.fit(data.training_data(), device, progress=True, checkpoint_dir=folder)
    trained = sum(e.seconds for e in report.epochs)
    result = evaluate(model.score, data.stage("test"), data.n_items, device=device, max_len=model.history_length)
    per_case = result.per_case.reset_index(drop=True)
    metrics = {s: {k: float(v) for k, v in result.metrics[s].items()} for s in SLICES if s in result.metrics}
    print(f"{label}: " + ", ".join(f"{s} {m['ndcg@10']:.4f}" for s, m in metrics.items())
          + f" (best epoch {report.best_epoch}, {trained:.0f}s)", flush=True)  # fmt: skip
    return {
        "overrides": overrides,
        "metrics": metrics,
        "n_cases": {s: int((per_case["slice"] == s).sum()) if s != "all" else len(per_case) for s in metrics},
        "best_valid_ndcg@10": report.best_valid.get("ndcg@10"),
        "best_epoch": report.best_epoch,
        "epochs_run": len(report.epochs),
        "train_seconds": round(max(trained, time.perf_counter() - started), 1),
        # rank of each test case by its position in the test table, with its slice: pairs variants
        "ranks": per_case["rank"].astype(int).tolist(),
        "slices": per_case["slice"].astype(str).tolist(),
        "config": asdict(model.config),
    }


def compare(variant: dict, reference: dict, slice_name: str) -> dict:
    """Paired bootstrap of NDCG@10 (variant - reference) over the cases of ``slice_name``."""
    keep = [i for i, s in enumerate(reference["slices"]) if slice_name == "all" or s == slice_name]
    ranks = lambda v: {str(i): v["ranks"][i] for i in keep}  # noqa: E731
    return paired_bootstrap(ranks(variant), ranks(reference))


def markdown(result: dict) -> str:
    claim = CLAIMS[result["claim"]]
    ref = next(iter(result["variants"]))
    lines = [
        f"**{result['claim']}** on {result['dataset']} (pipeline split, seed 0, sha256 `{result['dataset_sha256'][:16]}…`; "
        f"{result['hardware']['device']}, {result['hardware']['cpu_threads']} thread(s)). Claim: {claim['claim']}; "
        f"compared on the **{claim['slice']}** slice against \"{ref}\".",
        "",
        "| variant | " + " | ".join(f"NDCG@10 {s}" for s in SLICES) + " | best valid NDCG@10 | epochs (best) | train s | "
        f"{claim['slice']}: NDCG@10 − reference [95%] | ratio [95%] |",
        "|---|" + "---|" * (len(SLICES) + 5),
    ]
    for name, v in result["variants"].items():
        cells = [f"{v['metrics'][s]['ndcg@10']:.4f} ({v['n_cases'][s]})" if s in v["metrics"] else "–" for s in SLICES]
        if name == ref:
            versus = ["–", "–"]
        else:
            c = v["versus_reference"]
            diff = v["metrics"][claim["slice"]]["ndcg@10"] - result["variants"][ref]["metrics"][claim["slice"]]["ndcg@10"]
            low, high = c["ndcg@10_ratio_ci95"]
            # some resamples of a near-zero reference score 0: the ratio is unbounded there
            ratio = f"[{low:.2f}, {high:.2f}]" if high < 1000 else f"[{low:.2f}, unbounded]"
            versus = [f"{diff:+.4f} [{c['ndcg@10_diff_ci95'][0]:+.4f}, {c['ndcg@10_diff_ci95'][1]:+.4f}]", ratio]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {v['best_valid_ndcg@10']:.4f} | "
                     f"{v['epochs_run']} ({v['best_epoch']}) | {v['train_seconds']} | " + " | ".join(versus) + " |")  # fmt: skip
    lines += ["", "(n) = test cases in the slice. Paired bootstrap: 2,000 resamples of the slice's test cases; "
              "an interval holding 0 is a difference this test set cannot tell from noise."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claim", required=True, choices=sorted(CLAIMS))
    parser.add_argument("--path", default=None, help="MovieLens folder (default: the synthetic default data)")
    parser.add_argument("--name", default="synthetic-default")
    parser.add_argument("--ratings-path", default=None)
    parser.add_argument("--variants", default=None, help="comma-separated subset of the claim's variants")
    parser.add_argument("--models-config", default="{}", help="JSON overrides for every variant")
    parser.add_argument("--device", default="auto")
    add_output_arguments(parser)
    args = parser.parse_args()

    claim = CLAIMS[args.claim]
    names = list(claim["variants"]) if not args.variants else [v.strip() for v in args.variants.split(",")]
    unknown = [n for n in names if n not in claim["variants"]]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; {args.claim} has: {list(claim['variants'])}")
    tables, data, summary = load(args.path, args.name, args.ratings_path)
    device = pick_device(args.device)
    shared = {**COMMON, **json.loads(args.models_config)}
    out, md_out = output_dirs(args)
    stem = f"claims-{args.claim}-{args.name}-{device.type}"
    result = json.loads((out / f"{stem}.json").read_text()) if (out / f"{stem}.json").is_file() else {}
    if result.get("dataset_sha256") != tables.checksum:
        result = {"variants": {}}
    commands = with_commands(result, command_line("sequential_claims.py"))
    result.update(
        claim=args.claim, dataset=args.name, path=args.path, dataset_sha256=tables.checksum,
        split={k: v for k, v in asdict(summary).items() if k not in ("cold_user_ids", "cold_item_ids")},
        hardware=hardware(device),
    )  # fmt: skip
    # the reference first, so every other variant can be compared with it
    ordered = {n: claim["variants"][n] for n in claim["variants"] if n in names}
    for name, overrides in ordered.items():
        row = train_variant(claim["family"], {**shared, **overrides}, data, tables.checksum, device, f"{args.name} {name}")
        result["variants"][name] = row
        result["variants"] = {n: result["variants"][n] for n in claim["variants"] if n in result["variants"]}
        ref = next(iter(result["variants"].values()))
        for other in result["variants"].values():
            if other is not ref:
                other["versus_reference"] = compare(other, ref, claim["slice"])
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
        (md_out / f"{stem}.md").write_text(markdown(result) + commands_note(commands))
    print(markdown(result) + commands_note(commands))


if __name__ == "__main__":
    main()
