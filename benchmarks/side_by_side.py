"""One table: our sequential models next to RecBole's, same data, same split, same evaluator.

    python benchmarks/side_by_side.py --name ml-100k \
        --ours sequential-ml-100k-cpu.json --recbole recbole-ml-100k.json

``--ours`` is a ``baselines.py`` (or ``sweep.py``: its chosen trial) result, repeatable,
``--recbole`` a ``peer_recbole.py`` result; all must have been measured on the same dataset file (same sha256).
Pairs are ours ``sasrec`` with RecBole ``SASRec``, ours ``bert4rec`` with RecBole ``BERT4Rec`` and
ours ``lightgcn`` with RecBole ``LightGCN``.

Besides each side's NDCG@10 / HR@10 / MRR, time to its best validation epoch, seconds per
epoch and peak memory, the table gives *our time to RecBole's best*: the wall time until our
validation NDCG@10 (our protocol) first reached the best validation NDCG@10 RecBole's model
reached (same protocol), read off our per-epoch validation curve. The issue's bars are checked
and written next to the numbers; when both results carry per-user test ranks, a paired bootstrap
over the test users gives a 95% interval for the NDCG@10 ratio and difference.

A result file not found as given is read from the results folder outside the checkout
(``benchmarks.results_dir()``, where the other benchmarks write their JSON). Writes
``side-by-side-<name>.json`` there, and ``.md`` and a ``.png`` of both validation curves against
wall time to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

PAIRS = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "lightgcn": "LightGCN"}

# Issue 3's bars: minimum test NDCG@10 for our SASRec, minimum ratio of ours to RecBole's,
# maximum ratio of our time to RecBole's best validation over RecBole's time to it.
BARS = {
    "ml-100k": {"sasrec": {"min_ndcg@10": 0.10, "min_ratio": 1.3, "max_time_ratio": 0.1}, "bert4rec": {"min_ratio": 1.0},
                "lightgcn": {"min_ratio": 1.0, "max_time_ratio": 0.5}},  # issue 12
    "ml-1m-u2999": {"sasrec": {"min_ndcg@10": 0.15, "min_ratio": 1.3}, "bert4rec": {"min_ratio": 1.0}},
}


def seconds_to_reach(curve: list, target: float) -> float | None:
    """First wall time in ``curve`` ([epoch, seconds, valid NDCG@10] rows) at which NDCG@10 >= target."""
    for _, seconds, ndcg in curve:
        if ndcg is not None and ndcg >= target:
            return float(seconds)
    return None


def ours_rows(ours: dict) -> dict[str, dict]:
    if "trials" in ours:  # a sweep: its trial chosen on validation
        return {ours["family"]: ours["trials"][ours["chosen"]]}
    return {r["model"]: r for r in ours["results"]}


def compare(ours: list[dict], recbole: dict, name: str) -> dict:
    """``ours``: one or more of our result files (later files win for a family in several)."""
    mine: dict[str, dict] = {}
    for result in ours:
        if result["dataset_sha256"] != recbole["dataset_sha256"]:
            raise SystemExit(
                f"the results were measured on different data: ours sha256 {result['dataset_sha256'][:16]}…, "
                f"RecBole's {recbole['dataset_sha256'][:16]}…"
            )
        mine.update(ours_rows(result))
    theirs = {r["model"]: r for r in recbole["results"]}
    pairs = []
    for family, peer in PAIRS.items():
        if family not in mine or peer not in theirs:
            continue
        a, b = mine[family], theirs[peer]
        reach = seconds_to_reach(a.get("valid_curve", []), b["best_valid_ndcg@10"])
        row = {
            "model": family,
            "ours": {k: a.get(k) for k in ("ndcg@10", "hr@10", "mrr", "best_valid_ndcg@10", "best_epoch", "epochs_run",
                                          "seconds_to_best_valid", "seconds_per_epoch", "peak_memory_mib")},
            "recbole": {k: b.get(k) for k in ("ndcg@10", "hr@10", "mrr", "best_valid_ndcg@10", "best_epoch", "epochs_run",
                                             "seconds_to_best_valid", "seconds_per_epoch")} | {"peak_memory_mib": b.get("peak_rss_mib")},
            "ndcg@10_ratio": a["ndcg@10"] / b["ndcg@10"] if b["ndcg@10"] else None,
            "ours_seconds_to_recbole_best_valid": reach,
            "time_ratio": reach / b["seconds_to_best_valid"] if reach is not None and b["seconds_to_best_valid"] else None,
        }
        if "test_ranks_by_user" in a and "test_ranks_by_user" in b:
            row["bootstrap"] = bench.paired_bootstrap(a["test_ranks_by_user"], b["test_ranks_by_user"])
        row["curves"] = {
            "ours": [[c[1], c[2]] for c in a.get("valid_curve", [])],
            "recbole": [[e["elapsed_seconds"], e["valid_ndcg@10"]] for e in b.get("epochs", [])],
        }
        row["bars"] = check_bars(row, BARS.get(name, {}).get(family, {}))
        pairs.append(row)
    return {
        "dataset": name,
        "dataset_sha256": recbole["dataset_sha256"],
        "ours_hardware": ours[-1].get("hardware"),
        "recbole_environment": next((r["environment"] for r in recbole["results"]), None),
        "recbole_selected_on": sorted({r.get("selected_on", "RecBole's metric") for r in recbole["results"]}),
        "pairs": pairs,
    }


def check_bars(row: dict, bars: dict) -> dict[str, bool | None]:
    checks: dict[str, bool | None] = {}
    if "min_ndcg@10" in bars:
        checks[f"test NDCG@10 >= {bars['min_ndcg@10']}"] = row["ours"]["ndcg@10"] >= bars["min_ndcg@10"]
    if "min_ratio" in bars:
        r = row["ndcg@10_ratio"]
        checks[f"NDCG@10 >= {bars['min_ratio']} x RecBole"] = None if r is None else r >= bars["min_ratio"]
    if "max_time_ratio" in bars:
        t = row["time_ratio"]
        checks[f"time to RecBole's best valid <= {bars['max_time_ratio']} x RecBole's"] = None if t is None else t <= bars["max_time_ratio"]
    return checks


def markdown(result: dict) -> str:
    hw, env, f4 = result.get("ours_hardware") or {}, result.get("recbole_environment") or {}, bench.f4
    lines = [
        f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, standard split, our evaluator for both; "
        f"ours: {hw.get('device', '?')}, {hw.get('cpu_threads', '?')} threads; RecBole {env.get('recbole', '?')}: "
        f"{env.get('device', '?')}, {env.get('torch_threads', '?')} threads; RecBole's best epoch chosen on "
        f"{' / '.join(result.get('recbole_selected_on') or ['?'])})", ""]
    lines += bench.table(["model", "library", "test NDCG@10", "HR@10", "MRR", "best valid NDCG@10", "epochs (best)", "s to best valid",
                          "s/epoch", "peak MiB"], [
        [p["model"], label, f4(s["ndcg@10"]), f4(s["hr@10"]), f4(s["mrr"]), f4(s["best_valid_ndcg@10"]), f"{s['epochs_run']} ({s['best_epoch']})",
         f4(s["seconds_to_best_valid"], 0), f4(s["seconds_per_epoch"], 1), f4(s["peak_memory_mib"], 0)]
        for p in result["pairs"] for side, label in (("ours", "CineSync"), ("recbole", "RecBole")) for s in [p[side]]])  # fmt: skip
    lines.append("")
    for p in result["pairs"]:
        reach = p["ours_seconds_to_recbole_best_valid"]
        lines.append(
            f"- {p['model']}: ours / RecBole test NDCG@10 = {f4(p['ndcg@10_ratio'], 2)}×; ours reached RecBole's best "
            f"validation NDCG@10 ({p['recbole']['best_valid_ndcg@10']:.4f}) after "
            + (f"{reach:.0f} s = {p['time_ratio']:.3f}× RecBole's {p['recbole']['seconds_to_best_valid']:.0f} s" if reach is not None else "– (never)")
        )
        if "bootstrap" in p:
            bs = p["bootstrap"]
            lo, hi = bs["ndcg@10_ratio_ci95"]
            dlo, dhi = bs["ndcg@10_diff_ci95"]
            lines.append(f"  - paired bootstrap over the {bs['n_cases']} test users ({bs['n_resamples']} resamples): "
                         f"ratio 95% interval [{lo:.2f}, {hi:.2f}], difference [{dlo:+.4f}, {dhi:+.4f}]")
        for bar, ok in p["bars"].items():
            lines.append(f"  - bar: {bar}: {'met' if ok else 'not met' if ok is False else 'not measurable'}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Validation NDCG@10 (our protocol) against wall time, both libraries, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = result["pairs"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4), squeeze=False)
    for ax, p in zip(axes[0], pairs):
        for side, label, style in (("ours", "CineSync", "o-"), ("recbole", "RecBole", "s-")):
            points = [(t, v) for t, v in p["curves"][side] if v is not None]
            if points:
                ax.plot(*zip(*points), style, markersize=3, label=label)
        ax.axhline(p["recbole"]["best_valid_ndcg@10"], color="grey", linestyle=":", label="RecBole's best")
        ax.set_xscale("log")
        ax.set_xlabel("wall seconds since training started (log)")
        ax.set_ylabel("validation NDCG@10 (our protocol)")
        ax.set_title(f"{p['model']} on {result['dataset']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = bench.parser(__doc__, data=False, device=None)
    parser.add_argument("--name", required=True, help="dataset name (as in both results)")
    parser.add_argument("--ours", required=True, action="append",
                        help="baselines.py or sweep.py result JSON, a path or a name in the results folder "
                             "(repeat to combine files)")
    parser.add_argument("--recbole", default=None,
                        help="peer_recbole.py result JSON (default recbole-<name>.json in the results folder)")
    args = parser.parse_args()
    recbole_path = bench.find_result(args.recbole or bench.output_dirs(args)[0] / f"recbole-{args.name}.json")
    ours = [json.loads(bench.find_result(p).read_text()) for p in args.ours]
    recbole = json.loads(recbole_path.read_text())
    result = compare(ours, recbole, args.name)
    if not result["pairs"]:
        raise SystemExit(f"no model measured on both sides: ours {sorted(k for o in ours for k in ours_rows(o))}, "
                         f"RecBole {[r['model'] for r in recbole['results']]}")
    stem = output_stem(recbole_path, args.name)
    result["command"] = bench.command_line("side_by_side.py")
    md_out = bench.write_report(args, stem, result, markdown(result) + bench.commands_note([result["command"]]))
    plot(result, md_out / f"{stem}.png")


def output_stem(recbole_path: Path, name: str) -> str:
    """``side-by-side-<name>`` plus whatever follows ``recbole-<name>`` in the peer file's name,
    so that comparisons against RecBole's two selections (``recbole-ml-100k.json`` and
    ``recbole-ml-100k-select-ours.json``) do not overwrite each other."""
    prefix = f"recbole-{name}"
    suffix = recbole_path.stem.removeprefix(prefix) if recbole_path.stem.startswith(prefix) else ""
    return f"side-by-side-{name}{suffix}"


if __name__ == "__main__":
    main()
