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

Data: the synthetic default (what ``pyflyte run workflows/full.py full_pipeline`` uses) unless
``--path`` names a MovieLens folder; always the *pipeline* split, which holds out cold users and
cold items. Every variant is fitted and scored through ``pipeline.steps`` (early stopping on
validation NDCG@10, checkpoints outside the checkout, so a stopped run resumes). A paired
bootstrap over the test cases of the claim's slice compares each variant with the claim's
reference variant (the first).

Writes ``claims-<claim>-<name>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``; a re-run of some variants keeps the others, read back from it) and a
Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

bench.single_threaded()  # before torch loads

import json  # noqa: E402
from dataclasses import asdict  # noqa: E402

from models.device import pick_device  # noqa: E402

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


def markdown(result: dict) -> str:
    claim = CLAIMS[result["claim"]]
    ref = next(iter(result["variants"]))
    lines, rows = [
        f"**{result['claim']}** on {result['dataset']} (pipeline split, seed {result['split'].get('seed', 0)}, sha256 `{result['dataset_sha256'][:16]}…`; "
        f"{result['hardware']['device']}, {result['hardware']['cpu_threads']} thread(s)). Claim: {claim['claim']}; "
        f"compared on the **{claim['slice']}** slice against \"{ref}\".", ""], []
    for name, v in result["variants"].items():
        cells = [f"{v['test'][s]['ndcg@10']:.4f} ({v['test'][s]['n_cases']:.0f})" if s in v["test"] else "–" for s in SLICES]
        if name == ref:
            versus = ["–", "–"]
        else:
            c = v["versus_reference"]
            diff = c["ndcg@10_diff"]
            low, high = c["ndcg@10_ratio_ci95"]
            # some resamples of a near-zero reference score 0: the ratio is unbounded there
            ratio = f"[{low:.2f}, {high:.2f}]" if high < 1000 else f"[{low:.2f}, unbounded]"
            versus = [f"{diff:+.4f} [{c['ndcg@10_diff_ci95'][0]:+.4f}, {c['ndcg@10_diff_ci95'][1]:+.4f}]", ratio]
        rows.append([name, *cells, f"{v['best_valid_ndcg@10']:.4f}", f"{v['epochs_run']} ({v['best_epoch']})", v["train_seconds"], *versus])
    lines += bench.table(["variant", *(f"NDCG@10 {s}" for s in SLICES), "best valid NDCG@10", "epochs (best)", "train s",
                          f"{claim['slice']}: NDCG@10 − reference [95%]", "ratio [95%]"], rows)
    lines += ["", "(n) = test cases in the slice. Paired bootstrap: 2,000 resamples of the slice's test cases; "
              "an interval holding 0 is a difference this test set cannot tell from noise."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = bench.parser(__doc__, name="synthetic-default")
    parser.add_argument("--claim", required=True, choices=sorted(CLAIMS))
    parser.add_argument("--variants", default=None, help="comma-separated subset of the claim's variants")
    parser.add_argument("--models-config", default="{}", help="JSON overrides for every variant")
    args = parser.parse_args()

    claim = CLAIMS[args.claim]
    names = list(claim["variants"]) if not args.variants else [v.strip() for v in args.variants.split(",")]
    unknown = [n for n in names if n not in claim["variants"]]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; {args.claim} has: {list(claim['variants'])}")
    options = bench.data_options(args, "pipeline")
    tables, split = bench.prepare(options, args.name)
    device = pick_device(args.device)
    shared = {**COMMON, **json.loads(args.models_config)}
    stem = f"claims-{args.claim}-{args.name}-{device.type}"
    result = bench.previous_result(args, stem)
    if result.get("dataset_sha256") != tables.checksum or any("test" not in v for v in result["variants"].values()):
        result = {"variants": {}}  # other data, or rows of the format before the pipeline's
    commands = bench.with_commands(result, bench.command_line("sequential_claims.py"))
    result.update(claim=args.claim, dataset=args.name, data=asdict(options), dataset_sha256=tables.checksum,
                  split={k: v for k, v in split.summary.to_dict().items() if k not in ("cold_user_ids", "cold_item_ids")},
                  hardware=bench.hardware(device))  # fmt: skip
    key = {"dataset_sha256": tables.checksum, "data": asdict(options)}
    for name in [n for n in claim["variants"] if n in names]:  # the reference first, to compare the others with
        row, _ = bench.train_and_test(claim["family"], {**shared, **claim["variants"][name]}, split, {}, device, key, f"{args.name} {name}")
        result["variants"][name] = {**row, "overrides": {**shared, **claim["variants"][name]}}
        result["variants"] = {n: result["variants"][n] for n in claim["variants"] if n in result["variants"]}
        ref = next(iter(result["variants"].values()))
        for other in result["variants"].values():
            if other is not ref:
                other["versus_reference"] = bench.paired_bootstrap(bench.slice_ranks(other, claim["slice"]),
                                                                   bench.slice_ranks(ref, claim["slice"]))  # fmt: skip
        bench.write_report(args, stem, result, markdown(result) + bench.commands_note(commands))


if __name__ == "__main__":
    main()
