"""A replay of the timeline: the retraining run once per cutoff, in order, as the schedule would
have run it, and every strategy measured on what came next (DESIGN.md, "Retraining and replay").

The protocol, exactly:

- interactions sorted by (timestamp, row order in the file); cutoffs ``T_k = start + k * step`` (UTC);
- the model of window k is the retrain at ``T_k`` (``pipeline.retrain.retrain``): trained on the
  interactions before ``T_k`` minus its validation targets (each user's last interaction in the
  ``validation_days`` before ``T_k``, which choose epochs and the champion);
- window k's cases (``models.temporal.window_cases``): the users with an interaction in
  ``[T_k, T_k + step)``, target that user's first interaction in the window, history all of the
  user's interactions before ``T_k``; slices ``cold_user`` (empty history) and ``cold_item`` (no
  interaction with the target item before ``T_k``);
- the catalogue is every item of the item table; full ranking, history excluded, ties counted
  against the target (``models.metrics``); NDCG@10 and HR@10.

Strategies, all scored on the same cases:

- ``frozen``: the champion of the first cutoff, never updated (histories are still fresh);
- ``scratch``: every family retrained from scratch at every cutoff, the window's champion on
  validation served, no gate;
- ``warm``: the scheduled pipeline: every family warm-started from the previous week's model of
  its family, then the gate (``pipeline.gate``) decides per family and for the champion whether
  the candidate or the previous model serves.

Every family's own model is scored on the window's cases too (``per_family``), so a benchmark can
compare a single family across strategies and check popularity against an independent
implementation of the protocol.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pipeline import steps
from pipeline.options import DataOptions
from pipeline.retrain import CHAMPION, RetrainOutput, Served, cutoffs, ndcg_per_case, retrain
from pipeline.window import cutoff_seconds

STRATEGIES = ("frozen", "scratch", "warm")


@dataclass
class WindowResult:
    """One window: its cases' counts and, per strategy and per (strategy, family), the metrics per
    slice and the NDCG@10 / HR@10 of every case (aligned with ``cases``)."""

    index: int
    cutoff: str
    end: str
    n_cases: dict[str, int]  # per slice, and "all"
    new_item_share: float  # of the window's events: items with no interaction before the cutoff
    metrics: dict[str, dict[str, dict[str, float]]]  # strategy -> slice -> metric
    per_case: dict[str, np.ndarray]  # strategy -> NDCG@10 per case
    hits: dict[str, np.ndarray]  # strategy -> HR@10 per case
    per_family: dict[str, dict[str, dict[str, dict[str, float]]]]  # strategy -> family -> slice -> metric
    per_family_case: dict[str, dict[str, np.ndarray]]  # strategy -> family -> NDCG@10 per case
    served: dict[str, str]  # strategy -> what served (label and family)
    retrain: dict[str, dict[str, Any]]  # strategy -> RetrainOutput.report() (none for frozen after window 0)


@dataclass
class ReplayResult:
    dataset: str
    models: list[str]
    start: str
    step_days: float
    windows: list[WindowResult]
    seconds: float

    def pooled(self, strategy: str, family: str | None = None) -> np.ndarray:
        """NDCG@10 of every case of every window, in order (the served model, or ``family``'s)."""
        if family is None:
            return np.concatenate([w.per_case[strategy] for w in self.windows])
        return np.concatenate([w.per_family_case[strategy][family] for w in self.windows])


def replay(
    data: DataOptions,
    models: list[str],
    *,
    start: datetime,
    step: timedelta,
    windows: int,
    model_config: str | dict = "",
    strategies: tuple[str, ...] = STRATEGIES,
    validation_days: float | None = None,
    margin: float = 0.0,
    device: str = "auto",
    tables=None,
    on_window=None,
    progress: bool = False,
) -> ReplayResult:
    """Run the replay (module docstring). ``validation_days``: None = the step. ``tables``: the
    source already read (``steps.read_tables(data)``), else it is read here. ``on_window(result)``
    sees each window as it finishes."""
    from models.device import pick_device
    from models.metrics import evaluate
    from models.temporal import window_cases

    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    started = time.perf_counter()
    data.check()
    torch_device = pick_device(device)
    tables = tables if tables is not None else steps.read_tables(data, progress=progress)
    days = step / timedelta(days=1) if validation_days is None else validation_days
    times = cutoffs(start, step, windows)
    last: dict[str, RetrainOutput | None] = {"scratch": None, "warm": None}
    frozen: dict[str, Served] = {}
    results: list[WindowResult] = []
    interactions = tables.interactions
    for k, cutoff in enumerate(times):
        end = cutoff + step
        runs: dict[str, RetrainOutput] = {}
        common = dict(model_config=model_config, validation_days=days, margin=margin, device=device, progress=progress)
        if "warm" in strategies or k == 0:
            previous = None if last["warm"] is None else last["warm"].as_previous()
            runs["warm"] = retrain(tables, data, cutoff, models, previous=previous, warm_start=True, **common)
        if "scratch" in strategies:
            runs["scratch"] = runs["warm"] if k == 0 else retrain(tables, data, cutoff, models, previous=None, warm_start=False, **common)
        if k == 0:
            frozen = dict(runs["warm"].served)
        index = runs["warm"].split if "warm" in runs else runs["scratch"].split
        cases = window_cases(interactions, index, start=cutoff_seconds(cutoff), end=cutoff_seconds(end))
        if not len(cases):
            raise ValueError(f"window {k} [{cutoff.isoformat()}, {end.isoformat()}) has no interaction: shorten the replay")
        serving: dict[str, dict[str, Served]] = {}
        for strategy in strategies:
            serving[strategy] = frozen if strategy == "frozen" else runs[strategy].served
        metrics, per_case, hits, per_family, per_family_case, served = {}, {}, {}, {}, {}, {}
        for strategy, models_served in serving.items():
            per_family[strategy], per_family_case[strategy] = {}, {}
            for name, model in models_served.items():
                result = evaluate(model.in_space_of(index).score, cases, index.n_items, device=torch_device,
                                  max_len=model.model.history_length)  # fmt: skip
                gains = ndcg_per_case(result.per_case)
                if name == CHAMPION:
                    metrics[strategy] = {s: {m: float(v) for m, v in vals.items()} for s, vals in result.metrics.items()}
                    per_case[strategy] = gains
                    hits[strategy] = (result.per_case["rank"].to_numpy() <= 10).astype(np.float64)
                    served[strategy] = f"{model.label} ({model.family})"
                else:
                    per_family[strategy][name] = {s: {m: float(v) for m, v in vals.items()} for s, vals in result.metrics.items()}
                    per_family_case[strategy][name] = gains
        before = interactions["timestamp"].to_numpy(np.int64) < cutoff_seconds(cutoff)
        in_window = ~before & (interactions["timestamp"].to_numpy(np.int64) < cutoff_seconds(end))
        seen = np.isin(interactions["item_id"].to_numpy(np.int64)[in_window], interactions["item_id"].to_numpy(np.int64)[before])
        counts = cases["slice"].value_counts()
        window = WindowResult(
            index=k, cutoff=cutoff.isoformat(), end=end.isoformat(),
            n_cases={"all": len(cases), **{s: int(n) for s, n in counts.items()}},
            new_item_share=float(1 - seen.mean()) if len(seen) else 0.0,
            metrics=metrics, per_case=per_case, hits=hits, per_family=per_family, per_family_case=per_family_case,
            served=served, retrain={s: r.report() for s, r in runs.items() if s in strategies},
        )  # fmt: skip
        results.append(window)
        last = {"scratch": runs.get("scratch"), "warm": runs.get("warm")}
        line = ", ".join(f"{s} {window.metrics[s]['all']['ndcg@10']:.4f}" for s in strategies)
        print(f"window {k} {cutoff.date()}: {len(cases)} cases; NDCG@10 {line}", flush=True)
        if on_window is not None:
            on_window(window)
    return ReplayResult(tables.name, list(models), times[0].isoformat(), step / timedelta(days=1), results,
                        time.perf_counter() - started)  # fmt: skip


def window_table(result: ReplayResult) -> pd.DataFrame:
    """One row per window and strategy: cases, NDCG@10 and HR@10 overall and per slice, what served."""
    rows = []
    for w in result.windows:
        for strategy, metrics in w.metrics.items():
            row = {"window": w.index, "cutoff": w.cutoff[:10], "strategy": strategy, "cases": w.n_cases["all"],
                   "served": w.served[strategy]}  # fmt: skip
            for name in ("all", "warm", "cold_user", "cold_item"):
                if name in metrics:
                    row[f"{name} ndcg@10"] = metrics[name]["ndcg@10"]
                    row[f"{name} hr@10"] = metrics[name]["hr@10"]
            rows.append(row)
    return pd.DataFrame(rows)


def comparisons(result: ReplayResult, pairs=(("warm", "scratch"), ("warm", "frozen"), ("scratch", "frozen")),
                family: str | None = None) -> dict[str, dict]:  # fmt: skip
    """Pooled over every window's cases: the mean NDCG@10 difference of each pair of strategies
    with its paired bootstrap interval (``pipeline.gate.paired_interval``); of the served
    champions, or of ``family``'s own models."""
    from pipeline.gate import paired_interval

    first = result.windows[0].per_case if family is None else result.windows[0].per_family_case
    out = {}
    for a, b in pairs:
        if a in first and b in first:
            x, y = result.pooled(a, family), result.pooled(b, family)
            delta, low, high = paired_interval(x, y)
            out[f"{a} - {b}"] = {"delta": delta, "low": low, "high": high, "n_cases": int(len(x)),
                                 "means": [float(x.mean()), float(y.mean())]}  # fmt: skip
    return out


def plot(result: ReplayResult, path) -> None:
    """NDCG@10 of the served champion per window, one line per strategy, as a PNG at ``path``."""
    plot_windows([{"cutoff": w.cutoff, "metrics": w.metrics} for w in result.windows], result.dataset, path)


def plot_windows(windows: list[dict], dataset: str, path) -> None:
    """``plot`` from plain dicts (``{"cutoff", "metrics": strategy -> slice -> metric}``), as a
    results file keeps them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for strategy, marker in (("frozen", "s"), ("scratch", "o"), ("warm", "^")):
        ys = [w["metrics"][strategy]["all"]["ndcg@10"] for w in windows if strategy in w["metrics"]]
        if ys:
            ax.plot(range(len(ys)), ys, marker=marker, label=strategy)
    ax.set_xticks(range(len(windows)), [w["cutoff"][:10] for w in windows], rotation=30, fontsize=7)
    ax.set_ylabel("NDCG@10 (window cases)")
    ax.set_title(f"Replay of {dataset}: the served champion per strategy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
