"""Splits by time, for scheduled retraining (DESIGN.md, "Retraining and replay").

Two cuts of the same sorted interactions (per user by timestamp, ties in source-file order, the
order of ``models.split``), both in the index space of ``models.data``:

- ``cutoff_split``: what a retrain at cutoff T trains and chooses on. The interactions are those
  before T (``pipeline.window.before_cutoff``). **Each user whose last interaction falls in the
  validation window [T - validation_seconds, T) gives one validation case**: target that last
  interaction, history every earlier one. Every other row is training. So the validation targets
  are the newest events before the cutoff, and every one of them is after the previous weekly
  cutoff when the window is the schedule's step: the previous champion never trained on them,
  which is what lets the gate compare it with the candidate on them. Slices follow from the data:
  ``cold_user`` when the history is empty (the user's only event is the target), ``cold_item``
  when the target item has no training row, else ``warm``. No test case exists: the test of a
  retrain is the future (``window_cases``).
- ``window_cases``: the replay's cases for the window [start, end): each user with an interaction
  in it gives one case, target that user's first interaction in the window, history all of the
  user's interactions before ``start``; ``cold_user`` when that history is empty (a user new since
  the cutoff), ``cold_item`` when the target item had no interaction at all before ``start``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.data import CASE_COLUMNS, SLICES, TRAIN_COLUMNS, SplitData
from models.split import _OrderedRows, _activity_bucket, _cases, _list_column, _side_table


@dataclass
class CutoffSummary:
    """Counts of a ``cutoff_split``; every input row is a training row or a validation target."""

    cutoff: int  # unix seconds: every row is before it
    validation_since: int  # unix seconds: validation targets are at or after it
    rows_in: int
    n_users: int
    n_items: int
    train_rows: int
    valid_cases: dict[str, int]  # per slice
    users_without_case: int  # last interaction before the validation window: all rows train

    def check(self) -> None:
        if self.train_rows + sum(self.valid_cases.values()) != self.rows_in:
            raise AssertionError(f"cutoff split accounting broken: {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cutoff_split(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    *,
    cutoff: int,
    validation_seconds: int,
) -> tuple[SplitData, CutoffSummary]:
    """The retrain split at ``cutoff`` (unix seconds; see the module docstring). ``interactions``
    must all be before it, in source-file order; ``items`` sets the catalogue as in
    ``models.split.leave_one_out_split``."""
    if validation_seconds <= 0:
        raise ValueError(f"validation_seconds must be > 0, got {validation_seconds}")
    late = interactions["timestamp"].to_numpy(np.int64) >= cutoff
    if late.any():
        row = int(np.flatnonzero(late)[0])
        raise ValueError(
            f"cutoff_split: {int(late.sum())} interaction(s) at or after the cutoff {cutoff}, the first at row {row} "
            f"(timestamp {int(interactions['timestamp'].iloc[row])}): cut the window first (pipeline.window.before_cutoff)"
        )
    since = cutoff - validation_seconds
    rows = _OrderedRows.of(interactions, items)
    user, item, ts, counts, rev = rows.user, rows.item, rows.ts, rows.counts, rows.rev
    rating = (
        interactions["rating"].to_numpy(np.float32)[rows.order]
        if "rating" in interactions.columns
        else np.ones(len(ts), dtype=np.float32)
    )
    is_target = (rev == 0) & (ts >= since)
    is_train = ~is_target
    trained_items = np.bincount(item[is_train], minlength=rows.n_items + 1) > 0
    targets = np.flatnonzero(is_target)
    case_users = user[targets]
    has_case = np.zeros(rows.n_users + 1, dtype=bool)
    has_case[case_users] = True
    history_mask = has_case[user] & is_train
    history_length = counts[case_users] - 1
    slices = np.where(history_length == 0, "cold_user", np.where(trained_items[item[targets]], "warm", "cold_item"))
    cases = _cases("valid", case_users, targets, history_mask, slices.astype(object), user, item, ts)
    for column in ("stage", "slice", "activity_bucket"):
        cases[column] = cases[column].astype(str)
    train = pd.DataFrame(
        {"user_idx": user[is_train], "item_idx": item[is_train], "rating": rating[is_train], "timestamp": ts[is_train]},
        columns=list(TRAIN_COLUMNS),
    )
    items_table, _, _ = _side_table(items, "item_id", "item_idx", rows.item_ids)
    users_table, _, _ = _side_table(users, "user_id", "user_idx", rows.user_ids)
    per_slice = cases["slice"].value_counts()
    summary = CutoffSummary(
        cutoff=int(cutoff), validation_since=int(since), rows_in=len(ts), n_users=rows.n_users, n_items=rows.n_items,
        train_rows=len(train), valid_cases={s: int(per_slice.get(s, 0)) for s in SLICES},
        users_without_case=int(((counts[1:] > 0) & ~has_case[1:]).sum()),
    )  # fmt: skip
    summary.check()
    data = SplitData(rows.n_users, rows.n_items, train, cases, items_table, users_table)
    return data, summary


def window_cases(interactions: pd.DataFrame, index: SplitData, *, start: int, end: int) -> pd.DataFrame:
    """The replay's cases of the window [``start``, ``end``) (see the module docstring), in the
    index space of ``index`` (the split the model was trained on: its ``items`` and ``users``
    tables map raw ids). ``interactions``: every interaction, in source-file order. A user the
    index does not know (new since the cutoff) gets a fresh ``user_idx`` above the index's users,
    so each user stays one user in per-user means; the evaluator hands such a case (slice
    ``cold_user``) to the model as user 0. Stage is "test". Raises ValueError if a target or
    history item is not in the index's catalogue."""
    ts_all = interactions["timestamp"].to_numpy(np.int64)
    keep = ts_all < end
    frame = interactions.loc[keep, ["user_id", "item_id", "timestamp"]]
    user_raw = frame["user_id"].to_numpy(np.int64)
    item_raw = frame["item_id"].to_numpy(np.int64)
    ts = frame["timestamp"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(ts)), ts, user_raw))
    user_raw, item_raw, ts = user_raw[order], item_raw[order], ts[order]

    catalogue = index.items["item_id"].to_numpy(np.int64)
    item = np.searchsorted(catalogue, item_raw)
    unknown = (item >= len(catalogue)) | (catalogue[np.minimum(item, len(catalogue) - 1)] != item_raw)
    if unknown.any():
        raise ValueError(f"window_cases: {int(unknown.sum())} interaction(s) on items outside the catalogue, e.g. item_id {int(item_raw[unknown][0])}")
    item = item + 1
    before = ts < start
    in_window = ~before
    first_in_window = in_window & np.r_[True, (user_raw[1:] != user_raw[:-1]) | ~in_window[:-1]]
    targets = np.flatnonzero(first_in_window)
    case_raw = user_raw[targets]

    known_ids = index.users["user_id"].to_numpy(np.int64)
    position = np.searchsorted(known_ids, case_raw)
    known = (position < len(known_ids)) & (known_ids[np.minimum(position, len(known_ids) - 1)] == case_raw)
    new_rank = np.cumsum(~known)
    case_users = np.where(known, position + 1, len(known_ids) + new_rank).astype(np.int64)

    history_mask = before & np.isin(user_raw, case_raw)
    hist_users = user_raw[history_mask]
    lengths = np.bincount(np.searchsorted(case_raw, hist_users), minlength=len(case_raw))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    seen_items = np.zeros(len(catalogue) + 1, dtype=bool)
    seen_items[item[before]] = True
    target_items = item[targets]
    slices = np.where(lengths == 0, "cold_user", np.where(seen_items[target_items], "warm", "cold_item"))
    cases = pd.DataFrame(
        {
            "case_id": np.arange(len(targets), dtype=np.int64),
            "stage": "test",
            "user_idx": case_users,
            "target_item": target_items.astype(np.int64),
            "target_timestamp": ts[targets],
            "history": _list_column(offsets, item[history_mask]),
            "history_timestamps": _list_column(offsets, ts[history_mask]),
            "slice": slices.astype(str),
            "activity_bucket": _activity_bucket(lengths).astype(str),
        },
        columns=list(CASE_COLUMNS),
    )
    return cases
