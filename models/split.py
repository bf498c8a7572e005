"""Leave-one-out split into index space (DESIGN.md, "Evaluation protocol").

``leave_one_out_split`` maps the canonical raw tables (``data_contracts.schema``) into the index
space of ``models.data`` and cuts them into a training part and evaluation cases:

- **Catalogue** (the candidates of every case): every item of the items table, rated or not, plus
  any item of the interactions that the items table lacks (``items_without_metadata``); indexed
  1..n_items by raw ``item_id``, sorted. An item nobody rated is a candidate like any other (with
  no training row, as a cold item). Without an items table the catalogue is the rated items.
  Users are indexed the same way, but only users with at least one interaction.
- **Order** is per user by timestamp; ties keep the order of the source file (the sort key is
  ``(user, timestamp, original row position)``).
- **Standard mode:** per user with >= 3 interactions the last one is the test target, the
  second-to-last the validation target, the rest is training. Users with fewer are training only.
  A validation case's input history is the user's training part; a test case's is the training
  part plus the validation item. Every case is slice ``"warm"``.
- **Pipeline mode** (the workflow default) adds two seeded holdouts, drawn with one
  ``numpy.random.Generator(seed)`` in this order:

  1. *cold users*: ``round(cold_user_fraction * n_users)`` users, drawn among users with at least
     ``cold_user_shown + 1`` interactions. They have no training rows and no validation case; each
     gets one test case (slice ``"cold_user"``) whose history is its first ``cold_user_shown``
     interactions and whose target is its last. Their histories are kept as they are, cold items
     included (they are test-time inputs, never training data).
  2. *cold items*: ``round(cold_item_fraction * n_rated)`` items, ``n_rated`` the catalogue items
     with at least one interaction (at least 1 when n_rated >= 20), drawn among the items that
     appear in the training or validation part of non-cold users (so never an unrated item; the
     draw does not depend on how many unrated items the catalogue has). Every such training row
     and validation target is removed, so the items are also absent from every warm user's
     validation and test history. Test cases of warm users whose target is a cold item get slice
     ``"cold_item"``. Cold items stay in the catalogue.

Rounding is half-up (``floor(x + 0.5)``); counts are capped by the number of eligible users/items.
Every input row ends as exactly one of: training row, validation target, warm-user test target,
removed by the cold-item holdout, or a cold user's row (shown or hidden); ``SplitSummary.check``
asserts this.

``case_id`` is ``2 * user_idx`` for a user's validation case and ``2 * user_idx + 1`` for its test
case: unique, and the same for the same user in both modes and for every seed.

``user_idx`` in the cases is the real index, also for cold users (so demographics can be joined);
``models.metrics.evaluate`` hands cold users to the model as user 0 ("unknown").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from models.data import CASE_COLUMNS, SLICES, TRAIN_COLUMNS, SplitData

MODES = ("pipeline", "standard")

# Activity bucket of a case = length of its input history. Upper bounds are inclusive; an empty
# history (possible only when the cold-item holdout removed the whole training part) counts as
# "1-10".
ACTIVITY_BUCKETS = ("1-10", "11-50", "51-200", "201+")
_BUCKET_UPPER = np.array([10, 50, 200])

# Role of each interaction row after the split.
_TRAIN, _VALID, _TEST, _REMOVED, _COLD_SHOWN, _COLD_HIDDEN = range(6)


@dataclass
class SplitSummary:
    """Counts of a split; JSON-able through ``dataclasses.asdict``."""

    mode: str
    seed: int
    rows_in: int
    n_users: int  # users with >= 1 interaction (index 1..n_users), cold users included
    n_items: int  # catalogue (index 1..n_items): items table + rated items it lacks; cold items included
    train_rows: int
    valid_cases: int
    test_cases: dict[str, int]  # per slice; every slice of models.data.SLICES is a key
    users_train_only: int  # users with < 3 interactions: all rows train, no cases
    cold_users: int
    cold_user_rows: int  # every row of a cold user (shown + hidden; the hidden include the target)
    cold_user_shown_rows: int
    cold_items: int
    cold_item_removed_rows: int  # training rows + validation targets removed by the holdout
    cold_item_removed_train_rows: int
    cold_item_dropped_valid_cases: int  # validation targets that were cold items
    cases_with_empty_history: int  # valid/test cases whose whole history was cold items
    items_without_interactions: int  # in the catalogue (so in the items table), no interaction
    users_without_interactions: int  # in the users table, no interaction
    items_without_metadata: int  # in the catalogue, absent from the items table
    users_without_metadata: int  # with interactions, absent from the users table
    cold_user_ids: list[int] = field(default_factory=list)  # raw user_id, sorted
    cold_item_ids: list[int] = field(default_factory=list)  # raw item_id, sorted

    @property
    def accounted_rows(self) -> int:
        warm_user_test_targets = self.test_cases["warm"] + self.test_cases["cold_item"]
        return (
            self.train_rows
            + self.valid_cases
            + warm_user_test_targets
            + self.cold_item_removed_rows
            + self.cold_user_rows
        )

    def check(self) -> None:
        """Assert the accounting identity: every input row is counted exactly once."""
        if self.accounted_rows != self.rows_in:
            raise AssertionError(
                f"split accounting broken: {self.rows_in} rows in, {self.accounted_rows} accounted "
                f"({self.to_dict()})"
            )
        if self.cold_item_removed_rows != (
            self.cold_item_removed_train_rows + self.cold_item_dropped_valid_cases
        ):
            raise AssertionError("cold-item removed rows do not add up")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass(frozen=True)
class _OrderedRows:
    """The interactions in index space, sorted by (user, timestamp, source position): np.lexsort
    sorts by its last key first. ``pos`` counts each user's rows from the oldest (0), ``rev``
    from the newest (0)."""

    user_ids: np.ndarray  # raw ids, sorted; user_idx = position + 1
    item_ids: np.ndarray  # the catalogue's raw ids, sorted; item_idx = position + 1
    order: np.ndarray  # source row of each sorted row
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    counts: np.ndarray  # rows per user_idx; counts[0] == 0
    pos: np.ndarray
    rev: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def of(cls, interactions: pd.DataFrame, items: pd.DataFrame | None) -> "_OrderedRows":
        """``items``: the items table (``_catalogue``); None or ``pd.DataFrame()`` for none."""
        raw_ts = interactions["timestamp"].to_numpy(np.int64)
        user_ids, user_inv = np.unique(interactions["user_id"].to_numpy(np.int64), return_inverse=True)
        raw_items = interactions["item_id"].to_numpy(np.int64)
        item_ids = _catalogue(raw_items, items)
        item_inv = np.searchsorted(item_ids, raw_items)
        n_rows = len(raw_ts)
        order = np.lexsort((np.arange(n_rows), raw_ts, user_inv))
        user = user_inv[order].astype(np.int64) + 1
        counts = np.bincount(user, minlength=len(user_ids) + 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(n_rows) - starts[user]
        return cls(
            user_ids=user_ids, item_ids=item_ids, order=order, user=user,
            item=item_inv[order].astype(np.int64) + 1, ts=raw_ts[order], counts=counts,
            pos=pos, rev=counts[user] - 1 - pos,
        )  # fmt: skip


def _side_ids(table: pd.DataFrame | None, key: str) -> np.ndarray:
    """The ``key`` column of a side table as int64 (empty for None or ``pd.DataFrame()``)."""
    if table is None or (key not in table.columns and len(table.columns) == 0):
        return np.empty(0, dtype=np.int64)
    if key not in table.columns:
        raise ValueError(f"the {key[:-3]}s table needs a {key!r} column; found {list(table.columns)}")
    return table[key].to_numpy(np.int64)


def _catalogue(raw_items: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
    """The catalogue's raw item ids, sorted: every item of the items table, rated or not, and
    every item of the interactions (``raw_items``) the table lacks."""
    return np.union1d(_side_ids(items, "item_id"), raw_items)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _list_column(offsets: np.ndarray, values: np.ndarray) -> list[list[int]]:
    """Python lists of int, one per segment ``values[offsets[k]:offsets[k+1]]`` (built in C)."""
    return pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int64), type=pa.int64()), pa.array(values, type=pa.int64())
    ).to_pylist()


def _activity_bucket(lengths: np.ndarray) -> np.ndarray:
    return np.asarray(ACTIVITY_BUCKETS, dtype=object)[
        np.searchsorted(_BUCKET_UPPER, lengths, side="left")
    ]


def _cases(
    stage: str,
    case_users: np.ndarray,
    case_rows: np.ndarray,
    history_mask: np.ndarray,
    slices: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    ts: np.ndarray,
) -> pd.DataFrame:
    """Cases for ``case_users`` (sorted, unique), targets at sorted rows ``case_rows``.

    The history of each case is the rows in ``history_mask`` of its user, in sorted order;
    ``history_mask`` must only select rows of ``case_users``.
    """
    hist_user = user[history_mask]
    # Rows are sorted by user, so each case's history is one contiguous run.
    counts = np.bincount(np.searchsorted(case_users, hist_user), minlength=len(case_users))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return pd.DataFrame(
        {
            "case_id": (2 * case_users + (1 if stage == "test" else 0)).astype(np.int64),
            "stage": stage,
            "user_idx": case_users.astype(np.int64),
            "target_item": item[case_rows].astype(np.int64),
            "target_timestamp": ts[case_rows].astype(np.int64),
            "history": _list_column(offsets, item[history_mask]),
            "history_timestamps": _list_column(offsets, ts[history_mask]),
            "slice": slices,
            "activity_bucket": _activity_bucket(counts),
        },
        columns=list(CASE_COLUMNS),
    )


def _side_table(
    table: pd.DataFrame | None, key: str, idx_name: str, ids: np.ndarray
) -> tuple[pd.DataFrame, int, int]:
    """Index-space side table for raw ``ids`` (sorted; position + 1 is the index).

    ``table`` None or without columns (``pd.DataFrame()``) means no metadata: the table is then
    just the index and the raw ids. Returns the table, how many of ``table``'s ids are not in
    ``ids`` and how many of ``ids`` are not in ``table``.
    """
    table_ids = _side_ids(table, key)  # raises for a table with columns but no ``key``
    if table is None or key not in table.columns:
        table = pd.DataFrame({key: table_ids})
    table = table.drop_duplicates(key, keep="first")
    base = pd.DataFrame({idx_name: np.arange(1, len(ids) + 1, dtype=np.int64), key: ids})
    out = base.merge(table, on=key, how="left", sort=False)
    known = np.isin(ids, table[key].to_numpy())
    without_metadata = int((~known).sum())
    without_interactions = int((~table[key].isin(ids)).sum())
    return out.reset_index(drop=True), without_interactions, without_metadata


def leave_one_out_split(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    *,
    mode: str = "pipeline",
    seed: int = 0,
    cold_user_fraction: float = 0.10,
    cold_item_fraction: float = 0.05,
    cold_user_shown: int = 5,
) -> tuple[SplitData, SplitSummary]:
    """Split canonical tables into ``SplitData`` (index space) and a ``SplitSummary``.

    See the module docstring for the protocol. ``interactions`` must be in source-file order
    (its row order is the tie-break); ``items`` / ``users`` provide the side-table columns
    (None or ``pd.DataFrame()``: none, the side tables hold only the ids of the interactions).
    ``items`` also sets the catalogue: each of its items is a candidate, rated or not.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if cold_user_shown < 1:
        raise ValueError("cold_user_shown must be >= 1")
    _side_ids(users, "user_id")  # a malformed users table fails before the work

    n_rows = len(interactions)
    rows = _OrderedRows.of(interactions, items)
    user_ids, item_ids, n_users, n_items = rows.user_ids, rows.item_ids, rows.n_users, rows.n_items
    user, item, ts, counts, pos, rev = rows.user, rows.item, rows.ts, rows.counts, rows.pos, rows.rev
    if "rating" in interactions.columns:
        rating = interactions["rating"].to_numpy(np.float32)[rows.order]
    else:
        rating = np.ones(n_rows, dtype=np.float32)
    has_cases = counts[user] >= 3
    n_rated = int((np.bincount(item, minlength=n_items + 1)[1:] > 0).sum())

    role = np.full(n_rows, _TRAIN, dtype=np.int8)
    role[has_cases & (rev == 0)] = _TEST
    role[has_cases & (rev == 1)] = _VALID

    rng = np.random.default_rng(seed)
    cold_users = np.empty(0, dtype=np.int64)
    cold_items = np.empty(0, dtype=np.int64)
    if mode == "pipeline":
        eligible_users = np.flatnonzero(counts >= cold_user_shown + 1)  # sorted user_idx
        n_cold_users = min(_round_half_up(cold_user_fraction * n_users), len(eligible_users))
        cold_users = np.sort(rng.choice(eligible_users, size=n_cold_users, replace=False))
        is_cold_user = np.zeros(n_users + 1, dtype=bool)
        is_cold_user[cold_users] = True
        row_cold_user = is_cold_user[user]
        shown = pos[row_cold_user] < cold_user_shown
        role[row_cold_user] = np.where(shown, _COLD_SHOWN, _COLD_HIDDEN)

        fit_rows = (role == _TRAIN) | (role == _VALID)  # cold users' rows are no longer either
        eligible_items = np.unique(item[fit_rows])
        n_cold_items = _round_half_up(cold_item_fraction * n_rated)
        if n_rated >= 20:
            n_cold_items = max(n_cold_items, 1)
        n_cold_items = min(n_cold_items, len(eligible_items))
        cold_items = np.sort(rng.choice(eligible_items, size=n_cold_items, replace=False))
        is_cold_item = np.zeros(n_items + 1, dtype=bool)
        is_cold_item[cold_items] = True
        removed = fit_rows & is_cold_item[item]
        removed_train_rows = int((removed & (role == _TRAIN)).sum())
        dropped_valid = int((removed & (role == _VALID)).sum())
        role[removed] = _REMOVED
    else:
        is_cold_item = np.zeros(n_items + 1, dtype=bool)
        removed_train_rows = dropped_valid = 0

    # --- cases -------------------------------------------------------------------------------
    is_train = role == _TRAIN
    valid_rows = np.flatnonzero(role == _VALID)
    valid_users = user[valid_rows]
    has_valid = np.zeros(n_users + 1, dtype=bool)
    has_valid[valid_users] = True
    valid_cases = _cases(
        "valid",
        valid_users,
        valid_rows,
        is_train & has_valid[user],
        np.full(len(valid_rows), "warm", dtype=object),
        user,
        item,
        ts,
    )

    test_rows = np.flatnonzero(role == _TEST)
    test_users = user[test_rows]
    has_test = np.zeros(n_users + 1, dtype=bool)
    has_test[test_users] = True
    test_slices = np.where(is_cold_item[item[test_rows]], "cold_item", "warm").astype(object)
    test_cases = _cases(
        "test",
        test_users,
        test_rows,
        (is_train | (role == _VALID)) & has_test[user],
        test_slices,
        user,
        item,
        ts,
    )

    frames = [valid_cases, test_cases]
    if len(cold_users):
        cold_target_rows = np.flatnonzero((role == _COLD_HIDDEN) & (rev == 0))
        frames.append(
            _cases(
                "test",
                user[cold_target_rows],
                cold_target_rows,
                role == _COLD_SHOWN,
                np.full(len(cold_target_rows), "cold_user", dtype=object),
                user,
                item,
                ts,
            )
        )
    cases = pd.concat(frames, ignore_index=True)
    stage_rank = (cases["stage"] == "test").to_numpy(np.int8)
    case_order = np.lexsort((cases["user_idx"].to_numpy(), stage_rank))
    cases = cases.iloc[case_order].reset_index(drop=True)
    for column in ("stage", "slice", "activity_bucket"):
        cases[column] = cases[column].astype(str)

    train = pd.DataFrame(
        {
            "user_idx": user[is_train],
            "item_idx": item[is_train],
            "rating": rating[is_train],
            "timestamp": ts[is_train],
        },
        columns=list(TRAIN_COLUMNS),
    )

    items_table, _, items_without_metadata = _side_table(items, "item_id", "item_idx", item_ids)
    items_without_interactions = n_items - n_rated
    users_table, users_without_interactions, users_without_metadata = _side_table(
        users, "user_id", "user_idx", user_ids
    )

    test_counts = cases.loc[cases["stage"] == "test", "slice"].value_counts()
    history_lengths = cases["history"].map(len)
    summary = SplitSummary(
        mode=mode,
        seed=int(seed),
        rows_in=int(n_rows),
        n_users=int(n_users),
        n_items=int(n_items),
        train_rows=int(len(train)),
        valid_cases=int(len(valid_cases)),
        test_cases={s: int(test_counts.get(s, 0)) for s in SLICES},
        users_train_only=int(((counts[1:] > 0) & (counts[1:] < 3)).sum()),
        cold_users=int(len(cold_users)),
        cold_user_rows=int(np.isin(role, (_COLD_SHOWN, _COLD_HIDDEN)).sum()),
        cold_user_shown_rows=int((role == _COLD_SHOWN).sum()),
        cold_items=int(len(cold_items)),
        cold_item_removed_rows=int((role == _REMOVED).sum()),
        cold_item_removed_train_rows=removed_train_rows,
        cold_item_dropped_valid_cases=dropped_valid,
        cases_with_empty_history=int((history_lengths == 0).sum()),
        items_without_interactions=items_without_interactions,
        users_without_interactions=users_without_interactions,
        items_without_metadata=items_without_metadata,
        users_without_metadata=users_without_metadata,
        cold_user_ids=[int(x) for x in user_ids[cold_users - 1]],
        cold_item_ids=[int(x) for x in item_ids[cold_items - 1]],
    )
    summary.check()

    data = SplitData(
        n_users=int(n_users),
        n_items=int(n_items),
        train=train,
        cases=cases,
        items=items_table,
        users=users_table,
    )
    return data, summary


def cold_selection_cases(
    interactions: pd.DataFrame,
    summary: SplitSummary,
    *,
    items: pd.DataFrame | None = None,
    cold_user_shown: int = 5,
    cold_user_targets: int | None = 1,
) -> pd.DataFrame:
    """Validation-stage cases for the two held-out slices, for *choosing* configurations by them.

    The pipeline split's validation cases are all warm: cold users have no validation case, and
    a validation target that is a cold item is removed. So no validation number can see how a
    model serves new users or new items, and a setting that only matters there (an item bias, how
    new items are scored) could be chosen only by test. These cases ask the same questions as the
    test slices, one step earlier, from rows no training, validation or test case uses:

    - ``"cold_user"``: each cold user with at least ``cold_user_shown + 2`` interactions; history
      their first ``cold_user_shown`` (as in their test case), target their second-to-last
      interaction (their test target is the last). With ``cold_user_targets`` n > 1, up to n cases
      per cold user: the second-, third-, ... to-last interactions, never one of the shown; None:
      every interaction between the shown ones and the test target. Averaged per user
      (``models.metrics.per_user_slice_means``) each new user still counts once, as in test,
      with less noise — but those targets sit closer to the shown five than the test target
      does: on five fresh synthetic draws twenty per user chose no better settings than one
      (``benchmarks/README.md``, "Cold users over six draws").
    - ``"cold_item"``: each warm user whose validation target the cold-item holdout removed;
      history their training rows (as their validation case would have had), target that item.

    ``interactions``, ``items`` and ``summary`` must be the ones ``leave_one_out_split`` was given
    and returned (pipeline mode, the same ``cold_user_shown``): the items table sets the
    catalogue's index (None: the split was given none). ``case_id`` is ``2 * user_idx``, the
    validation id, which no case of the split uses for these users; a cold user's earlier targets
    get negative ids (-1, -2, ...), which no case of the split has. The split's own validation
    cases (and so early stopping) are unchanged; these are meant to be scored like the test cases,
    with ``models.metrics.evaluate`` (cold users reach the model as user 0).
    """
    rows = _OrderedRows.of(interactions, items)
    if (rows.n_users, rows.n_items) != (summary.n_users, summary.n_items):
        raise ValueError(
            f"the interactions and items table give {rows.n_users} users and {rows.n_items} catalogue "
            f"items, the split summary {summary.n_users} and {summary.n_items}: pass the interactions "
            f"and the items table the split was made from"
        )
    user, item, pos, rev, counts = rows.user, rows.item, rows.pos, rows.rev, rows.counts
    is_cold_user = np.zeros(rows.n_users + 1, dtype=bool)
    is_cold_user[np.searchsorted(rows.user_ids, summary.cold_user_ids) + 1] = True
    is_cold_item = np.zeros(rows.n_items + 1, dtype=bool)
    is_cold_item[np.searchsorted(rows.item_ids, summary.cold_item_ids) + 1] = True
    row_cold_user = is_cold_user[user]

    if cold_user_targets is not None and cold_user_targets < 1:
        raise ValueError(f"cold_user_targets must be >= 1 or None (all), got {cold_user_targets}")
    frames = []
    targets = np.flatnonzero(row_cold_user & (rev == 1) & (pos >= cold_user_shown))
    frames.append(_cases(
        "valid", user[targets], targets, row_cold_user & (pos < cold_user_shown) & np.isin(user, user[targets]),
        np.full(len(targets), "cold_user", dtype=object), user, item, rows.ts,
    ))  # fmt: skip
    earlier = row_cold_user & (rev >= 2) & (pos >= cold_user_shown)
    if cold_user_targets is not None:
        earlier &= rev <= cold_user_targets
    earlier = np.flatnonzero(earlier)
    if len(earlier):  # the same history as the user's second-to-last case, another target
        shown = frames[0].set_index("user_idx")
        extra = shown.loc[user[earlier]].reset_index()
        extra["case_id"] = -np.arange(1, len(earlier) + 1, dtype=np.int64)
        extra["target_item"] = item[earlier].astype(np.int64)
        extra["target_timestamp"] = rows.ts[earlier].astype(np.int64)
        frames[0] = pd.concat([frames[0], extra[list(CASE_COLUMNS)]], ignore_index=True)
    warm_with_cases = ~row_cold_user & (counts[user] >= 3)
    targets = np.flatnonzero(warm_with_cases & (rev == 1) & is_cold_item[item])
    has_target = np.zeros(rows.n_users + 1, dtype=bool)
    has_target[user[targets]] = True
    frames.append(_cases(
        "valid", user[targets], targets, has_target[user] & (rev >= 2) & ~is_cold_item[item],
        np.full(len(targets), "cold_item", dtype=object), user, item, rows.ts,
    ))  # fmt: skip
    if len(frames[1]) != summary.cold_item_dropped_valid_cases:
        raise AssertionError(
            f"{len(frames[1])} cold-item validation targets found, the split removed "
            f"{summary.cold_item_dropped_valid_cases}: were the interactions or cold_user_shown different?"
        )
    cases = pd.concat(frames, ignore_index=True)
    for column in ("stage", "slice", "activity_bucket"):
        cases[column] = cases[column].astype(str)
    return cases
