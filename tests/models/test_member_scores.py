from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from models.data import HistoryBatch
from models.member_scores import (
    ensemble_history_length,
    member_scores,
    score_column,
    standardise,
)


@dataclass(frozen=True)
class FixedConfig:
    n_items: int


class FixedScores(nn.Module):
    """score(batch)[b] = table[batch.users[b]], one hand-written row per user; keeps its batches."""

    def __init__(self, table, history_length=None):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
        self.config = FixedConfig(self.table.shape[1] - 1)
        self.history_length = history_length
        self.seen: list[HistoryBatch] = []

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        self.seen.append(batch)
        return self.table[batch.users]


def _cases(rows, stage="valid"):
    """rows: (user_idx, target_item, history) -> a cases table (case_id = position)."""
    return pd.DataFrame({
        "case_id": np.arange(len(rows), dtype=np.int64), "stage": stage,
        "user_idx": [r[0] for r in rows], "target_item": [r[1] for r in rows],
        "target_timestamp": 10_000, "history": [list(r[2]) for r in rows],
        "history_timestamps": [list(range(100, 100 + len(r[2]))) for r in rows],
        "slice": [r[3] if len(r) > 3 else "warm" for r in rows], "activity_bucket": "1-10",
    })  # fmt: skip


# user 1: history [2], target 5; user 2: empty history, target 3.  Column 0 is padding.
A = [[0] * 7, [0, 9, 8, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]
B = [[0] * 7, [0, 1, 9, 2, 8, 3, 0.5], [0, 6, 5, 4, 3, 2, 1]]
TWO_CASES = [(1, 5, [2]), (2, 3, [])]


def _items(table, case_id):
    return table.loc[table["case_id"] == case_id, "item_idx"].tolist()


def test_candidates_are_the_union_of_each_members_top_k_eligible_items():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    table = member_scores(members, _cases(TWO_CASES), 6, top_k=2)
    # case 0: a's top-2 without history item 2 is {1, 6}, b's is {4, 5}; case 1: {6, 5} | {1, 2}
    assert _items(table, 0) == [1, 4, 5, 6]
    assert _items(table, 1) == [1, 2, 5, 6]


def test_history_items_are_never_candidates():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    table = member_scores(members, _cases(TWO_CASES), 6, top_k=6)
    assert _items(table, 0) == [1, 3, 4, 5, 6]  # every item but the history's 2
    assert _items(table, 1) == [1, 2, 3, 4, 5, 6]


def test_table_columns_and_dtypes():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    table = member_scores(members, _cases(TWO_CASES), 6, top_k=2)
    assert list(table.columns) == [
        "case_id", "stage", "item_idx", "score_a", "score_b", "is_target", "target_in_candidates",
    ]  # fmt: skip
    assert table["case_id"].dtype == np.int64 and table["item_idx"].dtype == np.int64
    assert table["score_a"].dtype == np.float32 and table["score_b"].dtype == np.float32
    assert table["is_target"].dtype == bool and table["target_in_candidates"].dtype == bool
    assert set(table["stage"]) == {"valid"}


def test_z_scores_are_taken_over_items_not_in_the_history():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    table = member_scores(members, _cases(TWO_CASES), 6, top_k=6)
    for member, rows in (("a", A), ("b", B)):
        # case 0 drops history item 2 from the statistics; case 1 has no history
        for case_id, user, kept in ((0, 1, [1, 3, 4, 5, 6]), (1, 2, [1, 2, 3, 4, 5, 6])):
            values = np.array(rows[user], dtype=np.float64)
            mean, std = values[kept].mean(), values[kept].std()  # population std
            got = table.loc[table["case_id"] == case_id, ["item_idx", score_column(member)]]
            expected = (values[got["item_idx"].to_numpy()] - mean) / std
            np.testing.assert_allclose(got[score_column(member)], expected, rtol=1e-6)


def test_target_outside_every_top_k_is_kept_as_a_miss():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    table = member_scores(members, _cases(TWO_CASES), 6, top_k=2)
    hit, miss = table[table["case_id"] == 0], table[table["case_id"] == 1]
    assert hit["target_in_candidates"].all() and hit["is_target"].sum() == 1
    assert hit.loc[hit["is_target"], "item_idx"].item() == 5
    assert len(miss) and not miss["target_in_candidates"].any() and not miss["is_target"].any()


def test_rewatched_target_stays_a_candidate_but_not_in_the_statistics():
    # history [3, 5], target 5 again: 5 is eligible (as in models.metrics), 3 is not
    scores = [[0] * 7, [0, 1, 2, 7, 3, 9, 4]]
    table = member_scores({"a": FixedScores(scores)}, _cases([(1, 5, [3, 5])]), 6, top_k=6)
    assert table["item_idx"].tolist() == [1, 2, 4, 5, 6]
    values = np.array(scores[1], dtype=np.float64)
    kept = values[[1, 2, 4, 6]]  # the history's 3 and 5 are left out of mean and std
    target = table.loc[table["is_target"], "score_a"].item()
    assert target == pytest.approx((9 - kept.mean()) / kept.std(), rel=1e-6)


def test_constant_member_standardises_to_zero():
    flat = [[0] * 7, [5.0] * 7, [5.0] * 7]
    table = member_scores({"flat": FixedScores(flat)}, _cases(TWO_CASES), 6, top_k=3)
    assert (table["score_flat"] == 0).all()
    assert standardise(torch.full((1, 4), 0.1), torch.ones(1, 4, dtype=torch.bool)).abs().max() == 0


def test_members_see_their_own_history_length_and_cold_users_as_unknown():
    rows = [(1, 5, [1, 2, 3, 4]), (2, 6, [4], "cold_user")]
    short, whole = FixedScores(A, history_length=2), FixedScores(A, history_length=None)
    member_scores({"short": short, "whole": whole}, _cases(rows), 6, top_k=2)
    (seen_short,), (seen_whole,) = short.seen, whole.seen
    assert seen_short.items.tolist() == [[3, 4], [0, 4]]
    assert seen_whole.items.tolist() == [[1, 2, 3, 4], [0, 0, 0, 4]]
    assert seen_short.users.tolist() == [1, 0]  # the cold user reaches members as user 0
    assert ensemble_history_length([short, whole]) is None
    assert ensemble_history_length([short, FixedScores(A, history_length=3)]) == 3


def test_statistics_use_the_history_the_ensemble_sees():
    # members read 1 item: the ensemble sees only the last history item, so item 1 stays in
    rows = [(1, 5, [1, 2])]
    table = member_scores({"a": FixedScores(A, history_length=1)}, _cases(rows), 6, top_k=6)
    values = np.array(A[1], dtype=np.float64)
    kept = values[[1, 3, 4, 5, 6]]
    got = table.set_index("item_idx")["score_a"]
    assert got[6] == pytest.approx((values[6] - kept.mean()) / kept.std(), rel=1e-6)
    assert set(got.index) == {3, 4, 5, 6}  # but the whole history (items 1 and 2) is still excluded from the candidates


def test_batch_size_does_not_change_the_table():
    members = {"a": FixedScores(A), "b": FixedScores(B)}
    cases = _cases(TWO_CASES * 3).assign(case_id=np.arange(6) * 7)
    one = member_scores(members, cases, 6, top_k=2, batch_size=1)
    many = member_scores(members, cases, 6, top_k=2, batch_size=4)
    pd.testing.assert_frame_equal(one, many)


def test_wrong_score_shape_is_refused():
    narrow = FixedScores([[0] * 5, [0, 1, 2, 3, 4], [0] * 5])
    with pytest.raises(ValueError, match="shape"):
        member_scores({"narrow": narrow}, _cases(TWO_CASES), 6)
