"""Replay the timeline of a dataset through the scheduled retraining (``pipeline.replay``) and
compare the strategies: frozen at the first cutoff, retrained from scratch, warm-started and gated.

```bash
python benchmarks/replay.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
    --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
    --start 2000-11-06 --step-days 7 --windows 9
python benchmarks/replay.py --path ../shared/data/ml-latest-small --name ml-latest-small \
    --start 2014-01-01 --step-days 365 --windows 5
python benchmarks/replay.py --name synthetic-default --start 2023-01-02 --step-days 28 --windows 4
```

Writes ``replay-<name>.json`` (every window, strategy and family; per-case NDCG@10) to the results
folder and ``replay-<name>.md`` with ``replay-<name>.png`` (NDCG@10 per window per strategy) to
``benchmarks/results/``. Popularity's numbers are checked against an independent implementation
of the protocol (``replay_reference.py``) where the source is a MovieLens folder.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks as bench  # noqa: E402

bench.single_threaded()


def main(argv: list[str] | None = None) -> None:
    p = bench.parser(__doc__, name=None)
    p.add_argument("--start", required=True, help="first cutoff, ISO date (UTC)")
    p.add_argument("--step-days", type=float, default=7.0)
    p.add_argument("--windows", type=int, default=9)
    p.add_argument("--validation-days", type=float, default=None, help="the retrain's validation window (default: the step)")
    p.add_argument("--models", default="popularity,ease,sasrec")
    p.add_argument("--model-config", default="laptop", help="a config name or path (workflows/configs), or '' for the code defaults")
    p.add_argument("--config-json", default="", help="JSON overrides on top of --model-config, per family")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--report-only", action="store_true", help="rewrite the Markdown and the plot from the results file, run nothing")
    args = p.parse_args(argv)
    stem = f"replay-{args.name}"
    if args.report_only:
        out = bench.previous_result(args, stem)
        if not out:
            raise SystemExit(f"no results file {stem}.json in {bench.output_dirs(args)[0]}: run the replay first")
        return report(args, out, stem)

    from dataclasses import asdict

    from models.device import pick_device
    from pipeline.config import load_model_config
    from pipeline.replay import comparisons, replay

    options = bench.data_options(args, "standard")
    config = load_model_config(args.model_config)
    for family, overrides in json.loads(args.config_json or "{}").items():
        config[family] = {**config.get(family, {}), **overrides}
    models = args.models.split(",")
    start, step = datetime.fromisoformat(args.start), timedelta(days=args.step_days)
    started = time.perf_counter()
    result = replay(options, models, start=start, step=step, windows=args.windows, model_config=config,
                    validation_days=args.validation_days, margin=args.margin, device=args.device)  # fmt: skip
    wall = time.perf_counter() - started

    reference = None
    if options.source == "movielens" and "popularity" in models:
        from benchmarks.replay_reference import read_movielens, reference_popularity

        events, items = read_movielens(options.path, options.ratings_path)
        reference = reference_popularity(events, items, start=start, step=step, windows=args.windows,
                                         validation=timedelta(days=args.validation_days or args.step_days))  # fmt: skip

    pooled = comparisons(result)
    per_family = {family: comparisons(result, family=family) for family in models}
    fit = {s: [sum(w.retrain[s]["fit_seconds"].values()) for w in result.windows[1:] if s in w.retrain] for s in ("warm", "scratch")}
    neural = [m for m in models if m not in ("popularity", "ease")]
    fit_neural = {s: [sum(w.retrain[s]["fit_seconds"][m] for m in neural) for w in result.windows[1:] if s in w.retrain]
                  for s in ("warm", "scratch")}  # fmt: skip
    popularity_check = None
    if reference is not None:
        diffs = []
        for w, ref in zip(result.windows, reference):
            ours = w.per_family["scratch"]["popularity"]
            for name, value in ref["ndcg@10"].items():
                diffs.append(abs(ours[name]["ndcg@10"] - value))
                diffs.append(abs(ours[name]["hr@10"] - ref["hr@10"][name]))
            if ref["n_cases"]["all"] != w.n_cases["all"]:
                diffs.append(float("inf"))
        popularity_check = {"max_abs_difference": max(diffs), "values_compared": len(diffs)}

    out = {
        "dataset": args.name, "data": asdict(options),
        "models": models, "model_config": config, "start": result.start, "step_days": result.step_days,
        "windows": [
            {"index": w.index, "cutoff": w.cutoff, "end": w.end, "n_cases": w.n_cases, "new_item_share": w.new_item_share,
             "metrics": w.metrics, "per_family": w.per_family, "served": w.served, "retrain": w.retrain,
             "per_case": {s: v.tolist() for s, v in w.per_case.items()},
             "per_family_case": {s: {f: v.tolist() for f, v in fam.items()} for s, fam in w.per_family_case.items()}}
            for w in result.windows
        ],
        "comparisons": pooled, "family_comparisons": per_family, "fit_seconds": fit, "fit_seconds_neural": fit_neural,
        "reference_popularity": reference, "popularity_check": popularity_check,
        "wall_seconds": wall, "hardware": bench.hardware(pick_device(args.device)),
    }  # fmt: skip
    bench.with_commands(out, bench.command_line("replay.py", argv))
    report(args, out, stem)


def report(args, out: dict, stem: str) -> None:
    """The Markdown summary and the plot, from the results (``out``), written beside the JSON."""
    from pipeline.replay import plot_windows

    plot_windows(out["windows"], out["dataset"], bench.output_dirs(args)[1] / f"{stem}.png")
    bench.write_report(args, stem, out, markdown(out, stem) + bench.commands_note(out["commands"]))


def markdown(out: dict, stem: str) -> str:
    lines = [f"# Replay of {out['dataset']}: {len(out['windows'])} windows of {out['step_days']:g} days from {out['start'][:10]}", ""]
    lines += [f"Models {', '.join(out['models'])}; the champion of each retrain chosen on its fresh validation cases; "
              f"wall time {out['wall_seconds'] / 60:.1f} min. Protocol: `pipeline/replay.py`.", ""]  # fmt: skip
    header = ["window", "cutoff", "cases (cold user / cold item)", "new-item share of events", "frozen", "scratch", "warm (gated)",
              "warm serves", "warm gate (champion)", "retrain s warm / scratch"]
    rows = []
    for w in out["windows"]:
        gate = (w["retrain"].get("warm", {}).get("gates") or {}).get("champion")
        verdict = "–" if gate is None else f"{'promoted' if gate['promote'] else 'kept'} ({gate['delta']:+.4f} [{gate['low']:+.4f}, {gate['high']:+.4f}])"
        n = w["n_cases"]
        rows.append([w["index"], w["cutoff"][:10], f"{n['all']} ({n.get('cold_user', 0)} / {n.get('cold_item', 0)})",
                     f"{w['new_item_share']:.1%}", *(bench.f4(w["metrics"].get(s, {}).get("all", {}).get("ndcg@10"))
                     for s in ("frozen", "scratch", "warm")), w["served"].get("warm", "–"), verdict,
                     " / ".join(f"{w['retrain'][s]['seconds']:.0f}" if s in w["retrain"] else "–" for s in ("warm", "scratch"))])  # fmt: skip
    lines += bench.table(header, rows) + [""]
    lines += ["Pooled over every window's cases (NDCG@10, paired bootstrap, 2,000 resamples):", ""]
    lines += bench.table(["comparison", "means", "delta", "95% interval", "cases"],
                         [[k, f"{v['means'][0]:.4f} vs {v['means'][1]:.4f}", f"{v['delta']:+.4f}", f"[{v['low']:+.4f}, {v['high']:+.4f}]", v["n_cases"]] for k, v in out["comparisons"].items()])  # fmt: skip
    lines += ["", "Drift of each window's new events against the data the serving champion was trained on (`pipeline.drift`, 200 re-splits):", ""]
    drift_rows = []
    for w in out["windows"]:
        d = w["retrain"].get("warm", {}).get("drift")
        if d is None:
            continue
        stats = {x["name"]: x for x in d["statistics"]}
        pop, rating = stats.get("item popularity"), stats.get("rating distribution")
        drift_rows.append([w["index"], w["cutoff"][:10], f"{d['new_item_share']:.1%}", f"{d['new_user_share']:.1%}",
                           f"{pop['value']:.3f} (p {pop['p_value']:.3f})" if pop else "–",
                           f"{rating['value']:.3f} (p {rating['p_value']:.3f})" if rating else "–",
                           "; ".join(d["reasons"]) or "no"])  # fmt: skip
    lines += bench.table(["window", "cutoff", "new-item share", "new-user share", "popularity JS distance", "rating JS distance",
                          "forces a retrain"], drift_rows)  # fmt: skip
    lines += ["", "Each family's own model (served or not), pooled the same way:", ""]
    lines += bench.table(["family", *out["comparisons"]], [[family, *(f"{v['delta']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]" for v in c.values())]
                                                            for family, c in out["family_comparisons"].items()])  # fmt: skip
    lines += ["", "Per slice, pooled over the windows (NDCG@10; cases in brackets), each family's own model and the served champion:", ""]
    slices = ("all", "warm", "cold_user", "cold_item")
    counts = {s: sum(w["n_cases"].get(s, 0) for w in out["windows"]) for s in slices}
    rows = []
    for family in [*out["models"], None]:
        for strategy in ("frozen", "scratch", "warm"):
            cells = []
            for name in slices:
                total = sum((w["per_family"][strategy][family] if family else w["metrics"][strategy]).get(name, {}).get("ndcg@10", 0.0)
                            * w["n_cases"].get(name, 0) for w in out["windows"])  # fmt: skip
                cells.append(bench.f4(total / counts[name]) if counts[name] else "–")
            rows.append([family or "**served champion**", strategy, *cells])
    lines += bench.table(["model", "strategy", *(f"{s} ({counts[s]})" for s in slices)], rows)
    warm, scratch = sum(out["fit_seconds_neural"]["warm"]), sum(out["fit_seconds_neural"]["scratch"])
    if scratch:
        lines += ["", f"Training wall time of the neural families over windows 1–{len(out['windows']) - 1}: warm {warm:.0f} s, "
                      f"scratch {scratch:.0f} s (ratio {warm / scratch:.2f}); every family: warm {sum(out['fit_seconds']['warm']):.0f} s, "
                      f"scratch {sum(out['fit_seconds']['scratch']):.0f} s."]  # fmt: skip
    epochs = [(w["index"], w["retrain"]["warm"]["epochs"], w["retrain"].get("scratch", {}).get("epochs")) for w in out["windows"][1:] if "warm" in w["retrain"]]
    if epochs:
        lines += ["", "Epochs trained per retrain (warm / scratch): " + "; ".join(
            f"w{i}: " + ", ".join(f"{f} {e[f]}/{(s or {}).get(f, '–')}" for f in e if f not in ("popularity",)) for i, e, s in epochs)]
    if out["popularity_check"] is not None:
        c = out["popularity_check"]
        lines += ["", f"Popularity against the independent implementation of the protocol (`benchmarks/replay_reference.py`): "
                      f"largest difference {c['max_abs_difference']:.2e} over {c['values_compared']} numbers (NDCG@10 and HR@10 per window and slice)."]  # fmt: skip
    lines += ["", f"![NDCG@10 per window]({stem}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
