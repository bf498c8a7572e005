"""The retrain's drift check (``pipeline.retrain.window_drift``) on consecutive windows of a dataset:
what it reports, what forces a retrain, and which windows it stops (a rating value the data the
champion trained on never had). No training.

```bash
python benchmarks/drift_windows.py --path ../shared/data/ml-latest-small --name ml-latest-small \
    --cutoffs 2001-01-01,2002-01-01,2003-01-01,2004-01-01,2014-01-01,2015-01-01,2016-01-01
```

Each pair of consecutive cutoffs (T_prev, T) compares the events in [T_prev, T) with those before
T_prev, as the retrain at T does. Writes ``drift-<name>.json`` to the results folder and
``drift-<name>.md`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks as bench  # noqa: E402

bench.single_threaded()


def main(argv: list[str] | None = None) -> None:
    p = bench.parser(__doc__, name=None, device=None)
    p.add_argument("--cutoffs", required=True, help="comma-separated ISO dates (UTC), in order")
    args = p.parse_args(argv)

    from pipeline import steps
    from pipeline.drift import UnseenValuesError
    from pipeline.retrain import window_drift
    from pipeline.window import before_cutoff, cutoff_seconds

    options = bench.data_options(args, "standard")
    tables = steps.read_tables(options, name=args.name, progress=False)
    cutoffs = [datetime.fromisoformat(c) for c in args.cutoffs.split(",")]
    rows = []
    for previous, cutoff in zip(cutoffs, cutoffs[1:]):
        started = time.perf_counter()
        window = before_cutoff(tables, cutoff).interactions
        try:
            report = window_drift(window, cutoff_seconds(previous))
            row = {"previous": previous.date().isoformat(), "cutoff": cutoff.date().isoformat(), "verdict": "checked",
                   "summary": None if report is None else report.summary(), "drift": None if report is None else report.to_dict()}  # fmt: skip
        except UnseenValuesError as error:
            row = {"previous": previous.date().isoformat(), "cutoff": cutoff.date().isoformat(), "verdict": "stopped",
                   "summary": str(error), "drift": None}  # fmt: skip
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        print(f"{row['previous']} -> {row['cutoff']}: {row['verdict']}: {row['summary']}", flush=True)
    out = {"dataset": args.name, "cutoffs": args.cutoffs, "windows": rows}
    commands = bench.with_commands(out, bench.command_line("drift_windows.py", argv))
    lines = [f"# Drift between windows of {args.name} (`pipeline.retrain.window_drift`)", ""]
    lines += bench.table(
        ["reference: before", "new events: up to", "verdict", "new-item share", "new-user share", "popularity JS (p)", "rating JS (p)",
         "activity ratio (p)", "forces a retrain", "s"],
        [[r["previous"], r["cutoff"], r["verdict"], *_cells(r)] for r in rows],
    )  # fmt: skip
    stopped = [r for r in rows if r["verdict"] == "stopped"]
    for r in stopped:
        lines += ["", f"Stopped at {r['cutoff']}: {r['summary'][:900]}"]
    bench.write_report(args, f"drift-{args.name}", out, "\n".join(lines) + "\n" + bench.commands_note(commands))


def _cells(row: dict) -> list[str]:
    d = row["drift"]
    if d is None:
        return ["–"] * 6 + [f"{row['seconds']:.1f}"]
    stats = {s["name"]: s for s in d["statistics"]}

    def stat(name: str) -> str:
        s = stats.get(name)
        return "–" if s is None else f"{s['value']:.3f} ({s['p_value']:.3f})"

    return [f"{d['new_item_share']:.1%}", f"{d['new_user_share']:.1%}", stat("item popularity"), stat("rating distribution"),
            stat("activity per user"), "; ".join(d["reasons"]) or "no", f"{row['seconds']:.1f}"]  # fmt: skip


if __name__ == "__main__":
    main()
