"""Families side by side on one dataset, per slice, with their ensemble: the whole pipeline run.

    python benchmarks/plugin_families.py --path ../shared/data/ml-100k --name ml-100k \
        --split-mode standard --models popularity,ease,lightgcn,content_knn --ensemble
    python benchmarks/plugin_families.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --item-text-path ../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz \
        --split-mode pipeline --models popularity,ease,lightgcn,content_knn --ensemble \
        --models-config '{"lightgcn": {"max_epochs": 60}}'

One ``pipeline.run.run``: the data read by path (never copied) and checked against the data
contracts, split (``--split-mode``, ``--seed``), the side inputs the families' specs name built
once (cached on disk under ``--text-cache-dir``), every family trained with early stopping on
validation and checkpointed outside the checkout, score-time settings (``--new-item-offsets``,
``--short-history-popularity``) and the champion chosen on validation with the held-out slices'
validation cases, the ensemble (``--ensemble``) fitted on validation cases only, and every model
scored on the test cases by full ranking, per slice. The report adds what no choice reads: each
score-time trial's test numbers, and paired bootstraps over the test cases (the ensemble against
the member best on validation; every family against ``--reference``, per slice).

Writes ``<tag>-<name>-<split>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``) and a Markdown table to ``benchmarks/results/``. Running the same
command again adds a row to the JSON file's ``runs`` (wall time, side-input cache hit or miss).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

bench.single_threaded()  # before torch loads

import os  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, fields, replace  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import torch  # noqa: E402

from models.data import SLICES  # noqa: E402
from models.device import pick_device  # noqa: E402
from models.interface import FitReport  # noqa: E402
from models.registry import FAMILIES  # noqa: E402
from models.split import MODES  # noqa: E402
from pipeline import steps  # noqa: E402
from pipeline.run import run  # noqa: E402

# Written out so the JSON says what ran. LightGCN: the paper's settings (dim 64, 3 layers, Adam
# lr 1e-3, batch 2048, L2 1e-4); content k-NN and EASE: their defaults (decay / λ on validation).
BENCHMARK_OVERRIDES = {
    "lightgcn": {"dim": 64, "n_layers": 3, "lr": 1e-3, "batch_size": 2048, "reg": 1e-4, "patience": 10, "max_epochs": 200},
}
# the score-time settings chosen on validation with the held-out slices, and their options
SCORE_TIME_OPTIONS = {"new_item_offset": "new_item_offsets", "short_history_popularity": "short_history_popularity"}


def model_config(families: list[str], given: dict, threads: int) -> dict[str, dict]:
    """Benchmark defaults <- --models-config, plus num_threads where the family has the field."""
    out = {}
    for family in families:
        out[family] = {**BENCHMARK_OVERRIDES.get(family, {}), **given.get(family, {})}
        if "num_threads" in {f.name for f in fields(FAMILIES[family].config)}:
            out[family].setdefault("num_threads", threads)
    return out


def chosen_settings(family: str, model) -> dict:
    """What the family chose on validation (beyond the epoch)."""
    if hasattr(model.config, "new_item_offset"):
        return {name: float(getattr(model.config, name)) for name in SCORE_TIME_OPTIONS if hasattr(model.config, name)}
    return {"ease": {"l2": float(getattr(model, "l2", 0))}, "content_knn": {
        "recency_decay": round(float(getattr(model, "recency_decay", 0)), 6)}}.get(family, {})


def test_of_each_trial(model, trials: list[dict], split, device) -> None:
    """Each score-time trial's test NDCG@10 per slice, for the report only (the choice is made)."""
    chosen, names = model.config, [n for n in SCORE_TIME_OPTIONS if n in trials[0]]
    for trial in trials:
        model.config = replace(chosen, **{n: trial[n] for n in names})
        metrics = steps.evaluate(model, split.test_cases, split.data.n_items, device=device).metrics
        trial["test_ndcg@10"] = {k: float(m["ndcg@10"]) for k, m in metrics.items() if k in ("all", *SLICES)}
    model.config = chosen


def report(args, out, device, options) -> dict:
    """The JSON of one run: a row per family, the ensemble, the comparisons."""
    split, families = out.split, [f for f in out.fitted if f != "ensemble"]
    rows = []
    for family in families:
        fitted = out.fitted[family]
        if family in out.score_time_trials:
            test_of_each_trial(fitted.model, out.score_time_trials[family], split, device)
        row = bench.result_row(family, fitted, out.test[family], split)
        rows.append({**row, "side_inputs": list(FAMILIES[family].side_inputs), "selection_valid": out.validation[family],
                     "score_time_trials": out.score_time_trials.get(family), "chosen": chosen_settings(family, fitted.model),
                     "epochs_after_best": row["epochs_run"] - 1 - row["best_epoch"]})  # fmt: skip
    by_model = {r["model"]: r for r in rows}
    ensemble = None
    if "ensemble" in out.fitted:
        best = max(families, key=lambda f: out.validation[f]["all"]["ndcg@10"])
        row = bench.result_row("ensemble", replace(out.fitted["ensemble"], report=FitReport()), out.test["ensemble"], split)
        ensemble = {**{k: row[k] for k in ("model", "test", "test_ranks_by_user", "test_slices_by_user")},
                    "weights": out.blend.weights, "top_k": args.ensemble_top_k, "fit_cases": out.blend.n_cases,
                    "blend_valid_ndcg@10_on_candidates": out.blend.blend,
                    "member_alone_valid_ndcg@10_on_candidates": out.blend.member_alone,
                    "valid_ndcg@10": out.validation["ensemble"]["all"]["ndcg@10"], "selection_valid": out.validation["ensemble"],
                    "fit_seconds": round(out.fitted["ensemble"].seconds, 1), "best_member_by_valid": best,
                    "bootstrap_vs_best_member": bench.paired_bootstrap(row["test_ranks_by_user"], by_model[best]["test_ranks_by_user"]),
                    "bootstrap_diff_ci95_vs_each_member": {r["model"]: bench.paired_bootstrap(
                        row["test_ranks_by_user"], r["test_ranks_by_user"])["ndcg@10_diff_ci95"] for r in rows}}  # fmt: skip
    versus = None
    if args.reference:
        if args.reference not in by_model:
            raise SystemExit(f"--reference {args.reference!r} is not among --models")
        ref = by_model[args.reference]
        names = ["all", *sorted(set(ref["test_slices_by_user"].values()))]
        versus = {r["model"]: {s: bench.paired_bootstrap(bench.slice_ranks(r, s), bench.slice_ranks(ref, s)) for s in names}
                  for r in rows if r is not ref}  # fmt: skip
    test_cases, summary = split.test_cases, split.summary
    return {
        "dataset": args.name, "data": asdict(options), "dataset_sha256": out.tables.checksum,
        "split": {**{k: v for k, v in summary.to_dict().items() if k not in ("cold_user_ids", "cold_item_ids")},
                  "mode": args.split_mode, "seed": args.seed} | ({} if args.cold_user_fraction is None else {
                  "cold_user_fraction": args.cold_user_fraction}),
        "n_test_cases": len(test_cases),
        "test_cases_per_slice": {str(k): int(v) for k, v in test_cases["slice"].value_counts().items()},
        "n_valid_cases": len(split.data.stage("valid")),
        "cold_user_validation_targets": args.cold_user_validation_targets,
        "selection_cases_per_slice": {str(k): int(v) for k, v in split.selection_cases["slice"].value_counts().items()},
        "hardware": bench.hardware(device), "side_inputs": out.side_input_log, "results": rows, "ensemble": ensemble,
        "champion": out.champion, "reference": args.reference, "versus_reference": versus,
    }  # fmt: skip


def with_history(result: dict, previous: dict, wall_seconds: float) -> dict:
    """``result`` plus ``runs``: earlier runs of the same command on the same data, and this one."""
    same = previous.get("dataset_sha256") == result["dataset_sha256"] and previous.get("split", {}).get("mode") == result["split"]["mode"]
    every = result["results"] + ([result["ensemble"]] if result["ensemble"] else [])
    result["wall_seconds"] = round(wall_seconds, 1)
    result["runs"] = (previous.get("runs", []) if same else []) + [{
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_seconds": result["wall_seconds"],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "side_inputs": result["side_inputs"],
        "test_ndcg@10": {r["model"]: r["test"]["all"]["ndcg@10"] for r in every},
    }]  # fmt: skip
    return result


# ----- Markdown -------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    hw, rows, ens, split = result["hardware"], result["results"], result["ensemble"], result["split"]
    f4 = bench.f4
    slices = ", ".join(f"{v:,} {k}" for k, v in result["test_cases_per_slice"].items())
    where = f" {hw['gpu']}" if hw["gpu"] else f", {hw['cpu_threads']} thread(s) on {hw['cpus']} cores"
    lines = [f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, {split['mode']} split, seed {split['seed']}; "
             f"{split['n_users']:,} users, {split['n_items']:,} items, {split['train_rows']:,} training rows; "
             f"{result['n_test_cases']:,} test cases: {slices}; {hw['device']}{where}; wall {result['wall_seconds']:,.0f} s; "
             f"champion on validation NDCG@10: **{result['champion']}**)", ""]  # fmt: skip
    main = [[r["model"], f4(r["test"]["all"]["hr@10"]), f4(r["test"]["all"]["ndcg@10"]), f4(r["test"]["all"]["mrr"]),
             f4(r["test"]["all"]["coverage@10"], 3), f4(r["best_valid_ndcg@10"]), f4(r["selection_valid"]["all"]["ndcg@10"]),
             f"{r['epochs_run']} ({r['best_epoch']})" + (" capped" if r["capped_at_max_epochs"] else ""),
             ", ".join(f"{k} {v:g}" for k, v in r["chosen"].items()), f"{r['train_seconds']:,}", r["seconds_per_epoch"]]
            for r in rows]  # fmt: skip
    if ens:
        t = ens["test"]["all"]
        main.append(["ensemble", f4(t["hr@10"]), f4(t["ndcg@10"]), f4(t["mrr"]), f4(t["coverage@10"], 3), "",
                     f4(ens["valid_ndcg@10"]), "", "weights fitted on validation", ens["fit_seconds"], ""])  # fmt: skip
    lines += bench.table(["model", "HR@10", "NDCG@10", "MRR", "coverage@10", "best valid NDCG@10 (early stopping)",
                          "valid NDCG@10, every slice (choices)", "epochs (best)", "chosen", "train s", "s/epoch"], main)
    every = rows + ([ens] if ens else [])
    names = [s for s in rows[0]["test"] if s != "all"]
    lines += ["", "Per slice (test; HR@10 / NDCG@10 / MRR / coverage@10, n cases):", ""]
    lines += bench.table(["slice", "n", *(r["model"] for r in every)], [
        [name, f"{int(rows[0]['test'][name]['n_cases']):,}", *(
            "" if (m := r["test"].get(name)) is None else f"{m['hr@10']:.4f} / **{m['ndcg@10']:.4f}** / {m['mrr']:.4f} / {m['coverage@10']:.3f}"
            for r in every)] for name in ["all", *names]])  # fmt: skip
    first, targets = rows[0]["selection_valid"], result.get("cold_user_validation_targets", 1)
    names = [s for s in SLICES if s in first]
    cold_user_targets = {1: "each cold user's second-to-last interaction",
                         None: "every interaction of each cold user after the shown ones but the last"}.get(
        targets, f"each cold user's {targets} latest interactions before the last")  # fmt: skip

    def header(n: str) -> str:
        users, cases = first[n].get("n_users", first[n]["n_cases"]), first[n]["n_cases"]
        return f"{n} ({cases:,.0f})" if users == cases else f"{n} ({users:,.0f} users, {cases:,.0f} cases)"

    lines += ["", "Validation NDCG@10 per slice, the held-out slices included (`models.split.cold_selection_cases`: "
              f"{cold_user_targets} from the same first interactions, and the validation targets the cold-item holdout "
              "removed; each user counted once, a user's several targets averaged), every item ranked as in test — "
              "what the score-time settings, the ensemble's weights and the champion are chosen by:", ""]  # fmt: skip
    lines += bench.table(["model", "all", *map(header, names)], [
        [r["model"], f4(r["selection_valid"]["all"]["ndcg@10"]), *(f4(r["selection_valid"].get(n, {}).get("ndcg@10")) for n in names)]
        for r in every])  # fmt: skip
    for r in rows:
        if trials := r.get("score_time_trials"):
            settings = [n for n in SCORE_TIME_OPTIONS if n in trials[0]]
            lines += ["", f"{r['model']}: score-time settings chosen on validation NDCG@10 over all the validation cases above "
                      "(`new_item_offset`: added to the score of every item without training edges; `short_history_popularity`: "
                      "weight of log(1 + training users) added for histories of at most `short_history_items` items); the "
                      "test numbers of every trial are recorded after the choice, for the report:", ""]  # fmt: skip
            lines += bench.table([*settings, *(f"valid {s}" for s in ("all", *SLICES)), *(f"test {s}" for s in ("all", *SLICES))], [
                [*(f"{t[n]:g}" + (" **(chosen)**" if t.get("chosen") and n == settings[-1] else "") for n in settings),
                 *(f4(d.get(k)) for d in (t["valid_ndcg@10"], t["test_ndcg@10"]) for k in ("all", *SLICES))] for t in trials])  # fmt: skip
    if ens:
        b, best = ens["bootstrap_vs_best_member"], ens["best_member_by_valid"]
        weights = ", ".join(f"{m} {w:.2f}" for m, w in ens["weights"].items())
        lines += ["", f"- ensemble weights (fit_blend on {ens['fit_cases']:,} validation cases, top-{ens['top_k']} candidates "
                  f"per member): {weights}; on the candidates: blend {ens['blend_valid_ndcg@10_on_candidates']:.4f} vs best "
                  f"member alone {max(ens['member_alone_valid_ndcg@10_on_candidates'].values()):.4f}",
                  f"- ensemble − {best} (the best member by validation NDCG@10) on test NDCG@10: {b['ndcg@10_diff']:+.4f}, "
                  f"paired bootstrap over the {b['n_cases']:,} test cases ({b['n_resamples']} resamples): 95% interval "
                  f"[{b['ndcg@10_diff_ci95'][0]:+.4f}, {b['ndcg@10_diff_ci95'][1]:+.4f}], ratio "
                  f"[{b['ndcg@10_ratio_ci95'][0]:.2f}, {b['ndcg@10_ratio_ci95'][1]:.2f}]"]  # fmt: skip
    if versus := result.get("versus_reference"):
        compared = list(next(iter(versus.values())))
        lines += ["", f"Test NDCG@10 minus {result['reference']}'s, per slice: difference [95% paired-bootstrap interval over "
                  "the slice's test cases, 2000 resamples]; **bold** where the interval is above 0:", ""]
        cell = lambda b: ("**{}**" if b["ndcg@10_diff_ci95"][0] > 0 else "{}").format(  # noqa: E731
            f"{b['ndcg@10_diff']:+.4f} [{b['ndcg@10_diff_ci95'][0]:+.4f}, {b['ndcg@10_diff_ci95'][1]:+.4f}]")
        lines += bench.table(["model", *compared], [[m, *(cell(s[n]) if n in s else "" for n in compared)] for m, s in versus.items()])
    lines.append("")
    for r in rows:
        cfg = r["config"]
        if "max_epochs" in cfg and "patience" in cfg:
            how = (f"stopped by patience {cfg['patience']} after epoch {r['epochs_run'] - 1}" if r["stopped_early"]
                   else f"stopped at the max_epochs cap {cfg['max_epochs']} ({r['epochs_after_best']} epochs after its best: "
                   + ("still improving" if r["epochs_after_best"] == 0 else "plateaued or past its peak") + ")")
            lines.append(f"- {r['model']}: max_epochs {cfg['max_epochs']}, {how}; best validation NDCG@10 "
                         f"{f4(r['best_valid_ndcg@10'])} at epoch {r['best_epoch']}")  # fmt: skip
    for name, s in result["side_inputs"].items():
        lines.append(f"- {name}: {s['seconds']:.2f} s" + (f" (disk cache {s['cache']})" if s["cache"] else ""))
    lines.append(f"- command: `{result['command']}`")
    for r in result["runs"]:
        cache = ", ".join(f"{n} {s['cache'] or 'built'} {s['seconds']:.1f} s" for n, s in r["side_inputs"].items())
        lines.append(f"- run finished {r['finished_utc']}: wall {r['wall_seconds']:,} s" + (f", {cache}" if cache else "")
                     + f", load average at end {r['load_average_at_end']}")  # fmt: skip
    return "\n".join(lines) + "\n"


# ----- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None):
    parser = bench.parser(__doc__, text=True)
    add = parser.add_argument
    add("--split-mode", choices=MODES, default="standard")
    add("--cold-user-fraction", type=float, default=None,
        help="pipeline split: share of users held out as new users (default the split's 0.10)")
    add("--cold-user-validation-targets", type=lambda t: None if t == "all" else int(t), default=1,
        help="validation targets per new user (pipeline split): 1, their second-to-last interaction; n, up to the n "
             "latest before the test target; 'all', every one after the shown; averaged per user")
    add("--models", default="popularity,ease,lightgcn,content_knn")
    add("--models-config", default="{}", help='JSON per-family overrides, e.g. \'{"lightgcn": {"max_epochs": 60}}\'')
    add("--ensemble", action="store_true", help="blend the trained families (weights on validation)")
    add("--ensemble-top-k", type=int, default=100, help="candidates per member the blend is fitted on")
    add("--new-item-offsets", default=None, help="JSON list of new_item_offset values to choose from on validation "
        "with the held-out slices (GraphSAGE, GNN-TV; --split-mode pipeline), e.g. '[0, -1, -2, -4, -1000]'")
    add("--short-history-popularity", default=None, help="JSON list of short_history_popularity weights, every "
        "combination with --new-item-offsets, e.g. '[0, 0.5, 1, 2]'")
    add("--threads", type=int, default=1, help="torch threads (and num_threads of the families that have it)")
    add("--reference", default=None, help="a family of --models to compare every other with, per slice (paired bootstrap)")
    add("--tag", default="plugin", help="results file prefix: <tag>-<name>-<split>-<device>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    options = bench.data_options(args, args.split_mode)
    families = [f.strip() for f in args.models.split(",") if f.strip()]
    split_options = {"cold_user_targets": args.cold_user_validation_targets} | (
        {} if args.cold_user_fraction is None else {"cold_user_fraction": args.cold_user_fraction})
    grid = {name: json.loads(getattr(args, option) or "[]") for name, option in SCORE_TIME_OPTIONS.items()}
    out = run(options, families, model_config=model_config(families, json.loads(args.models_config), args.threads),
              text_encoder=args.encoder, ensemble=args.ensemble, ensemble_top_k=args.ensemble_top_k, score_time_grid=grid,
              device=args.device, side_input_cache=Path(args.text_cache_dir), checkpoints=bench.checkpoint_folder,
              on_epoch=bench.print_epoch, dataset_name=args.name, split_options=split_options)  # fmt: skip
    device = pick_device(args.device)
    result = report(args, out, device, options)
    result["command"] = bench.command_line("plugin_families.py", argv)
    stem = f"{args.tag}-{args.name}-{args.split_mode}-{device.type}"
    result = with_history(result, bench.previous_result(args, stem), time.perf_counter() - started)
    bench.write_report(args, stem, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
