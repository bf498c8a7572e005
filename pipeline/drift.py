"""Drift between windows: how the new window's events differ from what the champion trained on.

A scheduled retrain (issue 26) compares ``current`` (the new window's interactions) with
``reference`` (the interactions the current champion was trained on), both canonical interaction
frames (``user_id``, ``item_id``, ``timestamp`` in unix seconds, and ``rating`` when the source has
one). ``measure_drift`` returns a ``DriftReport``: the two windows' sizes and spans, the share of
the new window's events on items and by users the reference never saw, the rating values, and
three statistics, each with a permutation p-value:

- **item popularity**: the Jensen–Shannon *distance* between the two item-frequency
  distributions, base 2: the square root of the JS divergence, in [0, 1]. This is the convention
  of ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` and of Evidently's ``jensenshannon``
  stattest (which calls scipy). TFDV's ``jensen_shannon_divergence`` threshold is on the
  divergence, the square of this distance, and only for numeric histograms; for categorical
  features TFDV uses the L-infinity distance instead. A threshold carried over from TFDV must be
  square-rooted before it means the same thing here.
- **rating distribution**: the JS distance (same convention) between the rating-value histograms,
  over the union of the values; absent when either frame has no ``rating`` column.
- **activity per user**: mean events per active user in the new window divided by the same mean
  in the reference (a ratio, so the value reads the same whatever the windows' sizes).

Why a p-value and not a threshold: raw PSI or JS on item ids is large on every window of
MovieLens (month-to-month item PSI is 0.4-4.4, as large as a random re-split of the same events),
so a fixed threshold fires every time. Each statistic is therefore compared with its value on
re-splits of the same events: the reference and current events are pooled, ``permutations``
random re-splits into two groups of the original sizes are drawn (one ``numpy`` Generator seeded
by ``seed``; every statistic sees the same re-splits), and
``p = (1 + #{re-split statistic >= observed}) / (1 + permutations)``. The JS distances are
one-sided (larger is more different). The activity ratio is two-sided: under re-splits of
unequal sizes its centre is not 1 (a week's users have fewer events each than three years'
users), so its p-value counts re-splits whose ``|log ratio - centre|`` is at least the observed
one, ``centre`` being the mean log ratio over the re-splits. Re-splits exchange single events:
they do not keep a user's session together, so on real logs (where users rate in bursts) the
activity statistic is expected to be significant almost always; it is reported, never blocking.

Only two things force a retrain: ``new_item_share > new_item_threshold``, or the popularity
p-value below ``alpha``. The new-item and new-user shares and the rating value sets use the whole
reference; ``max_reference_events`` only bounds the statistics' cost by comparing with the most
recent that many reference events (their detail lines say so). A rating value in ``current``
that the reference never had (half stars appearing in a whole-star log) is a contract event, not
drift: ``check_value_set`` raises ``UnseenValuesError`` for it.

Plain numpy and pandas; no Flyte, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")

# The re-splits are drawn and counted in blocks of about this many cells (splits x the larger of
# the current window's events and a column's categories), so memory stays bounded.
_BLOCK_CELLS = 4_000_000

# Float noise must not decide "re-split statistic >= observed" (a re-split equal to the observed
# split can round differently).
_TIE_TOLERANCE = 1e-12


@dataclass
class Statistic:
    """One drift statistic: its value, its permutation p-value (``None`` when not computed), and
    one readable line saying what was compared."""

    name: str
    value: float
    p_value: float | None
    detail: str


@dataclass
class DriftReport:
    """What ``measure_drift`` found; ``forces_retrain`` with its ``reasons`` is the decision."""

    reference: dict
    current: dict
    new_item_share: float
    new_user_share: float
    new_items: int
    new_users: int
    rating_values: list[float]
    unseen_rating_values: list[float]
    statistics: list[Statistic]
    forces_retrain: bool
    reasons: list[str] = field(default_factory=list)

    def statistic(self, name: str) -> Statistic:
        """The statistic called ``name``; KeyError naming the ones there are otherwise."""
        for stat in self.statistics:
            if stat.name == name:
                return stat
        raise KeyError(f"no statistic {name!r}; the report has {[s.name for s in self.statistics]}")

    def to_dict(self) -> dict:
        """The report as plain JSON-able values."""
        return asdict(self)

    def summary(self) -> str:
        """One short line (under 250 characters) for a registry tag."""
        head = "retrain" if self.forces_retrain else "no retrain"
        parts = [f"drift: {head}", f"new items {self.new_item_share:.1%}", f"new users {self.new_user_share:.1%}"]
        for stat in self.statistics:
            p = "" if stat.p_value is None else f" p={stat.p_value:.3g}"
            parts.append(f"{_SHORT.get(stat.name, stat.name)} {stat.value:.3g}{p}")
        if self.unseen_rating_values:
            parts.append(f"unseen ratings {_values(self.unseen_rating_values, 4)}")
        parts.append(f"{self.current['n_events']} vs {self.reference['n_events']} events")
        line = "; ".join(parts)
        return line if len(line) < 250 else line[:246] + "..."

    def markdown(self) -> str:
        """A small Markdown report: the windows, the new items and users, the statistics, the
        decision."""
        ref, cur = self.reference, self.current
        lines = [
            "| window | events | users | items | first | last |",
            "|---|---:|---:|---:|---|---|",
            f"| reference | {ref['n_events']} | {ref['n_users']} | {ref['n_items']} | {ref['first']} | {ref['last']} |",
            f"| current | {cur['n_events']} | {cur['n_users']} | {cur['n_items']} | {cur['first']} | {cur['last']} |",
            "",
            f"New items: {self.new_items} ({self.new_item_share:.2%} of current events); "
            f"new users: {self.new_users} ({self.new_user_share:.2%} of current events).",
            "",
            "| statistic | value | p-value | detail |",
            "|---|---:|---:|---|",
        ]
        for stat in self.statistics:
            p = "" if stat.p_value is None else f"{stat.p_value:.4g}"
            lines.append(f"| {stat.name} | {stat.value:.4g} | {p} | {stat.detail.replace('|', '/')} |")
        lines.append("")
        if self.unseen_rating_values:
            lines.append(f"Rating values the reference never had: {_values(self.unseen_rating_values, 10)}.")
        if self.forces_retrain:
            lines.append("**Forces a retrain:** " + "; ".join(self.reasons) + ".")
        else:
            lines.append("Does not force a retrain.")
        return "\n".join(lines) + "\n"


_SHORT = {"item popularity": "pop JS", "rating distribution": "rating JS", "activity per user": "activity x"}


class UnseenValuesError(ValueError):
    """``current`` has values in ``column`` that the reference never had; ``rows`` holds the
    first few offending rows as (row position in ``current``, timestamp)."""

    def __init__(self, column: str, values: list, rows: list[tuple[int, int]], n_rows: int):
        self.column, self.values, self.rows, self.n_rows = column, list(values), list(rows), n_rows
        shown = ", ".join(f"row {pos} (timestamp {ts}, {_iso(ts)})" for pos, ts in rows)
        more = f" and {n_rows - len(rows)} more" if n_rows > len(rows) else ""
        super().__init__(
            f"column {column!r} has values the reference never had: {_values(values, 10)}, in {n_rows} "
            f"row(s) of the current window: {shown}{more}"
        )


def js_distance(p, q) -> float:
    """Jensen–Shannon distance, base 2, between two non-negative weight vectors (normalised
    here): the square root of the JS divergence, in [0, 1]; ``0 * log 0`` is 0. Equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"js_distance needs two vectors of one length, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_distance needs non-negative weights with a positive sum")
    return float(_js_rows(p[None, :], q[None, :])[0])


def _js_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """JS distance (base 2) between matching rows of two weight matrices, each row normalised."""
    p = a / a.sum(axis=1, keepdims=True)
    q = b / b.sum(axis=1, keepdims=True)
    m = (p + q) / 2
    divergence = _entropy_rows(m) - (_entropy_rows(p) + _entropy_rows(q)) / 2
    return np.sqrt(np.clip(divergence, 0.0, 1.0))


def _entropy_rows(x: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row, with ``0 * log 0 = 0``."""
    logs = np.zeros_like(x)
    np.log2(x, out=logs, where=x > 0)
    return -(x * logs).sum(axis=1)


def _iso(seconds) -> str:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _values(values, limit: int) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _check_frame(frame, label: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{label} must be a pandas DataFrame of interactions, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{label} lacks the column(s) {missing}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"{label} has no events; drift needs events on both sides")


def _window(frame: pd.DataFrame) -> dict:
    stamps = frame["timestamp"].to_numpy()
    return {
        "n_events": int(len(frame)),
        "n_users": int(frame["user_id"].nunique()),
        "n_items": int(frame["item_id"].nunique()),
        "first": _iso(stamps.min()),
        "last": _iso(stamps.max()),
    }


def _numbers(column: pd.Series, dtype) -> np.ndarray:
    return column.to_numpy() if dtype is None else column.to_numpy(dtype=dtype, na_value=np.nan)


def _rating_values(frame: pd.DataFrame) -> np.ndarray:
    ratings = frame["rating"].to_numpy(dtype=float, na_value=np.nan)
    return np.unique(ratings[~np.isnan(ratings)])


def _resplit_values(n_reference: int, n_current: int, permutations: int, seed: int, measures) -> list[np.ndarray]:
    """Each measure's per-split values: index 0 the observed split, 1.. the re-splits.

    The pool is the (compared) reference events followed by the current events; the observed
    current group is the last ``n_current`` of them. A re-split's current group is ``n_current``
    pool indices drawn without replacement (``Generator.choice(..., replace=False)``: the first
    ``n_current`` of a random permutation, without shuffling the whole pool); the rest is its
    reference group. ``measures`` are ``(codes, n_codes, reduce)``: ``codes`` one category code per
    pooled event, and ``reduce(current_counts, pooled_counts)`` maps a block of per-split category
    counts in the current group (splits x ``n_codes``) to one value per split. The splits are drawn
    in blocks, one generator in one order, so the values do not depend on the block size and
    memory stays bounded; every measure sees the same splits."""
    n_pool = n_reference + n_current
    rng = np.random.default_rng(seed)
    totals = [np.bincount(codes, minlength=n_codes) for codes, n_codes, _ in measures]
    widest = max([n_current] + [n_codes for _, n_codes, _ in measures])
    block = max(1, _BLOCK_CELLS // widest)
    values: list[list[np.ndarray]] = [[] for _ in measures]
    done = 0
    while done < 1 + permutations:
        rows = min(block, 1 + permutations - done)
        groups = [rng.choice(n_pool, size=n_current, replace=False) for _ in range(rows - (done == 0))]
        if done == 0:
            groups.insert(0, np.arange(n_reference, n_pool))
        groups = np.vstack(groups)
        offsets = np.arange(rows)[:, None]
        for (codes, n_codes, reduce), total, out in zip(measures, totals, values):
            counts = np.bincount((codes[groups] + offsets * n_codes).ravel(), minlength=rows * n_codes)
            out.append(reduce(counts.reshape(rows, n_codes), total))
        done += rows
    return [np.concatenate(out) for out in values]


def _js_reduce(current_counts: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    return _js_rows(current_counts.astype(float), (pooled[None, :] - current_counts).astype(float))


def _active_reduce(current_counts: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Active users per split: current group in column 0, reference group in column 1."""
    return np.stack(
        [np.count_nonzero(current_counts, axis=1), np.count_nonzero(pooled[None, :] - current_counts, axis=1)],
        axis=1,
    )


def _p_value(observed: float, resplit: np.ndarray) -> float:
    exceed = int(np.count_nonzero(resplit >= observed - _TIE_TOLERANCE * max(1.0, abs(observed))))
    return (1 + exceed) / (1 + len(resplit))


def _js_statistic(name: str, what: str, distances: np.ndarray, note: str) -> Statistic:
    observed, resplit = float(distances[0]), distances[1:]
    detail = (
        f"JS distance (base 2) between the {what} of current and reference: {observed:.4f}; "
        f"re-splits of the same events: median {np.median(resplit):.4f}, max {resplit.max():.4f} "
        f"({len(resplit)} re-splits){note}"
    )
    return Statistic(name=name, value=observed, p_value=_p_value(observed, resplit), detail=detail)


def _activity_statistic(active: np.ndarray, n_reference: int, n_current: int, note: str) -> Statistic:
    mean_cur = n_current / active[:, 0]
    mean_ref = n_reference / active[:, 1]
    logs = np.log(mean_cur / mean_ref)
    centre = float(logs[1:].mean())
    deviation = np.abs(logs - centre)
    ratio = float(mean_cur[0] / mean_ref[0])
    detail = (
        f"mean events per active user: current {mean_cur[0]:.2f}, reference {mean_ref[0]:.2f} "
        f"(ratio {ratio:.3f}; re-splits centre on ratio {math.exp(centre):.3f}, two-sided){note}"
    )
    return Statistic(
        name="activity per user", value=ratio, p_value=_p_value(float(deviation[0]), deviation[1:]), detail=detail
    )


def measure_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    permutations: int = 200,
    seed: int = 0,
    new_item_threshold: float = 0.05,
    alpha: float = 0.01,
    max_reference_events: int | None = None,
) -> DriftReport:
    """How ``current`` (the new window) drifted from ``reference`` (the champion's training
    events); see the module docstring for the statistics and the decision."""
    _check_frame(reference, "reference")
    _check_frame(current, "current")
    permutations = int(permutations) if isinstance(permutations, np.integer) else permutations
    if not isinstance(permutations, (int, np.integer)) or permutations < 1:
        raise ValueError(f"permutations must be a positive integer, got {permutations!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if 1 / (1 + permutations) >= alpha:
        raise ValueError(
            f"permutations={permutations} cannot reach alpha={alpha}: the smallest p-value is "
            f"1/{1 + permutations}; use at least {math.ceil(1 / alpha)} permutations"
        )
    if not 0 <= new_item_threshold <= 1:
        raise ValueError(f"new_item_threshold is a share in [0, 1], got {new_item_threshold!r}")
    if max_reference_events is not None and (
        not isinstance(max_reference_events, (int, np.integer)) or max_reference_events < 1
    ):
        raise ValueError(f"max_reference_events must be None or a positive integer, got {max_reference_events!r}")

    # New items and users, against the whole reference.
    new_item = ~np.isin(current["item_id"].to_numpy(), reference["item_id"].unique())
    new_user = ~np.isin(current["user_id"].to_numpy(), reference["user_id"].unique())
    new_item_share, new_user_share = float(new_item.mean()), float(new_user.mean())
    new_items = int(current["item_id"][new_item].nunique())
    new_users = int(current["user_id"][new_user].nunique())

    has_ratings = "rating" in reference.columns and "rating" in current.columns
    rating_values = _rating_values(current) if "rating" in current.columns else np.array([])
    unseen = (
        rating_values[~np.isin(rating_values, _rating_values(reference))] if has_ratings else np.array([])
    )

    # The statistics: the (most recent part of the) reference against current, pooled.
    ref_info, compared = _window(reference), reference
    note = ""
    if max_reference_events is not None and len(reference) > max_reference_events:
        order = np.argsort(reference["timestamp"].to_numpy(), kind="stable")
        compared = reference.iloc[order[-max_reference_events:]]
        note = f"; reference: the most recent {max_reference_events} of its {len(reference)} events"
    ref_info["n_events_compared"] = int(len(compared))

    def pooled_codes(column: str) -> tuple[np.ndarray, int]:
        dtype = float if column == "rating" else None  # float32 and float64 ratings compare equal
        values = np.concatenate([_numbers(compared[column], dtype), _numbers(current[column], dtype)])
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return codes.astype(np.intp, copy=False), len(uniques)

    measures = [(*pooled_codes("item_id"), _js_reduce), (*pooled_codes("user_id"), _active_reduce)]
    if has_ratings:
        measures.append((*pooled_codes("rating"), _js_reduce))
    values = _resplit_values(len(compared), len(current), permutations, seed, measures)

    statistics = [_js_statistic("item popularity", "item-frequency distributions", values[0], note)]
    if has_ratings:
        statistics.append(_js_statistic("rating distribution", "rating-value histograms", values[2], note))
    statistics.append(_activity_statistic(values[1], len(compared), len(current), note))

    reasons = []
    if new_item_share > new_item_threshold:
        reasons.append(
            f"new items: {new_item_share:.2%} of current events are on items the reference never had "
            f"(threshold {new_item_threshold:.2%})"
        )
    popularity = statistics[0]
    if popularity.p_value < alpha:
        reasons.append(
            f"item popularity shifted: JS distance {popularity.value:.4f}, p = {popularity.p_value:.4g} "
            f"(alpha {alpha:g})"
        )

    return DriftReport(
        reference=ref_info,
        current=_window(current),
        new_item_share=new_item_share,
        new_user_share=new_user_share,
        new_items=new_items,
        new_users=new_users,
        rating_values=[float(v) for v in rating_values],
        unseen_rating_values=[float(v) for v in unseen],
        statistics=statistics,
        forces_retrain=bool(reasons),
        reasons=reasons,
    )


def check_value_set(report: DriftReport, current: pd.DataFrame, *, max_rows: int = 5) -> None:
    """Raise ``UnseenValuesError`` when ``current`` has rating values the reference never had
    (``report.unseen_rating_values``), naming the first ``max_rows`` offending rows."""
    if not report.unseen_rating_values:
        return
    if "rating" not in current.columns:
        raise ValueError("the report lists unseen rating values but current has no 'rating' column")
    ratings = current["rating"].to_numpy(dtype=float, na_value=np.nan)
    positions = np.flatnonzero(np.isin(ratings, np.asarray(report.unseen_rating_values, dtype=float)))
    if len(positions) == 0:
        raise ValueError(
            f"the report lists unseen rating values {report.unseen_rating_values} that this current "
            "frame does not have; was the report measured on another frame?"
        )
    stamps = current["timestamp"].to_numpy()
    rows = [(int(pos), int(stamps[pos])) for pos in positions[:max_rows]]
    error = UnseenValuesError("rating", report.unseen_rating_values, rows, len(positions))
    if {"user_id", "item_id"} <= set(current.columns):  # name each row as the source file has it
        first = current.iloc[positions[:max_rows]]
        named = ", ".join(f"user_id {u} item_id {i} rating {r:g} at {_iso(t)}" for u, i, r, t in
                          zip(first["user_id"], first["item_id"], first["rating"], first["timestamp"]))  # fmt: skip
        error.args = (f"{error.args[0]}; e.g. {named}",)
    raise error
