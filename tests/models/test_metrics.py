"""Full-ranking evaluator with hand-computed rankings (DESIGN.md, "Evaluation protocol")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from models.data import CASE_COLUMNS
from models.metrics import (
    PER_CASE_COLUMNS,
    evaluate,
    exclusion_mask,
    metrics_from_ranks,
    per_user_slice_means,
    slice_metrics,
    target_ranks,
    top_k_items,
)

NONE = torch.zeros(1, 6, dtype=torch.bool)  # n_items = 5, nothing excluded


def scores(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def ranks_of(score_rows, targets, exclude=None):
    s = scores(*score_rows)
    if exclude is None:
        exclude = torch.zeros_like(s, dtype=torch.bool)
    return target_ranks(s, torch.tensor(targets), exclude).tolist()


# target_ranks ----------------------------------------------------------------------------------


def test_rank_is_one_plus_candidates_scoring_higher():
    assert ranks_of([[0, 0.1, 0.9, 0.5, 0.3, 0.2]], [3]) == [2]


def test_ties_count_against_the_target():
    # items 2 and 4 tie with target 3 at 0.5, item 1 is higher: rank 1 + 3
    assert ranks_of([[0, 0.9, 0.5, 0.5, 0.5, 0.1]], [3]) == [4]


def test_excluded_items_are_not_counted():
    exclude = torch.tensor([[False, True, False, False, True, False]])
    assert ranks_of([[0, 0.9, 0.5, 0.5, 0.5, 0.1]], [3], exclude) == [2]


def test_target_in_history_is_still_rankable():
    exclude = exclusion_mask([[3, 1]], 5)
    assert ranks_of([[0, 0.9, 0.8, 0.5, 0.1, 0.2]], [3], exclude) == [2]


def test_column_zero_is_never_a_candidate():
    assert ranks_of([[100.0, 0.1, 0.9, 0.5, 0.3, 0.2]], [2]) == [1]


def test_constant_scores_rank_the_target_last():
    exclude = exclusion_mask([[2]], 5)
    assert ranks_of([[1.0] * 6], [4], exclude) == [4]  # 5 items - 1 excluded = 4 candidates


def test_ranks_are_batched_per_row():
    rows = [[0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 0.5, 0.4, 0.3, 0.2, 0.1]]
    assert ranks_of(rows, [5, 5]) == [1, 5]


def test_nan_candidate_score_raises():
    with pytest.raises(ValueError, match="NaN"):
        ranks_of([[0, float("nan"), 0.2, 0.3, 0.4, 0.5]], [2])


def test_padding_target_is_rejected():
    with pytest.raises(ValueError):
        ranks_of([[0, 0.1, 0.2, 0.3, 0.4, 0.5]], [0])


# exclusion_mask --------------------------------------------------------------------------------


def test_exclusion_mask_from_lists_marks_every_history_item_but_column_zero():
    mask = exclusion_mask([[1, 3, 3], [], [5]], 5)
    assert mask.tolist() == [
        [False, True, False, True, False, False],
        [False] * 6,
        [False, False, False, False, False, True],
    ]


def test_exclusion_mask_from_padded_tensor_matches_lists():
    padded = torch.tensor([[0, 1, 3, 3], [0, 0, 0, 0], [0, 0, 0, 5]])
    assert torch.equal(exclusion_mask(padded, 5), exclusion_mask([[1, 3, 3], [], [5]], 5))


# top_k_items -----------------------------------------------------------------------------------


def test_top_k_lists_best_candidates_without_history_or_column_zero():
    s = scores([9.0, 0.1, 0.9, 0.5, 0.3, 0.2])
    exclude = exclusion_mask([[2]], 5)
    assert top_k_items(s, exclude, torch.tensor([4]), k=3).tolist() == [[3, 4, 5]]


def test_top_k_puts_the_target_at_its_rank_under_ties():
    s = scores([0, 5.0, 5.0, 5.0, 5.0, 1.0])
    top = top_k_items(s, torch.zeros(1, 6, dtype=torch.bool), torch.tensor([2]), k=5)
    assert top[0, 3].item() == 2  # rank 4: items 1, 3, 4 tie with it and come first
    assert sorted(top[0, :3].tolist()) == [1, 3, 4] and top[0, 4].item() == 5


def test_top_k_position_equals_rank_on_random_tied_scores():
    gen = torch.Generator().manual_seed(0)
    s = torch.randint(0, 4, (200, 31), generator=gen).float()
    exclude = torch.rand(200, 31, generator=gen) < 0.2
    targets = torch.randint(1, 31, (200,), generator=gen)
    ranks = target_ranks(s, targets, exclude)
    top = top_k_items(s, exclude, targets, k=20)
    for row in range(200):
        r = int(ranks[row])
        if r <= 20:
            assert top[row, r - 1] == targets[row]
        else:
            assert targets[row] not in top[row]
    assert (ranks <= 20).any() and (ranks > 20).any()


def test_top_k_pads_with_zero_when_fewer_candidates_than_k():
    s = scores([0, 0.3, 0.2, 0.1, 0.5, 0.4])
    exclude = exclusion_mask([[4, 5]], 5)
    assert top_k_items(s, exclude, torch.tensor([2]), k=5).tolist() == [[1, 2, 3, 0, 0]]


# metrics_from_ranks ----------------------------------------------------------------------------


def test_hr_ndcg_mrr_by_hand():
    top = [list(range(1, 11))] * 4
    m = metrics_from_ranks([1, 3, 15, 30], top, n_items=100)
    assert m["hr@10"] == pytest.approx(2 / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["hr@20"] == pytest.approx(3 / 4)
    assert m["ndcg@20"] == pytest.approx((1 + 0.5 + 0.25) / 4)  # log2(16) = 4
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 15 + 1 / 30) / 4)
    assert m["n_cases"] == 4


def test_ndcg_cuts_at_k_but_mrr_does_not():
    m = metrics_from_ranks([11], [list(range(1, 11))], n_items=20)
    assert m["hr@10"] == 0 and m["ndcg@10"] == 0
    assert m["ndcg@20"] == pytest.approx(1 / math.log2(12))
    assert m["mrr"] == pytest.approx(1 / 11)


def test_coverage_counts_distinct_items_of_top_ten_lists():
    top = [list(range(1, 21)), list(range(6, 26)), [3] * 10 + [0] * 10]
    # top-10s: 1..10, 6..15 -> 1..15 distinct; [3]*10 adds nothing; padding 0 is not an item
    assert metrics_from_ranks([1, 1, 1], top, n_items=30)["coverage@10"] == pytest.approx(15 / 30)


def test_per_user_slice_means_count_each_user_once_per_slice():
    per_case = pd.DataFrame({
        "user_idx": [1, 2, 7, 7, 7, 8],
        "slice": ["warm", "warm", "cold_user", "cold_user", "cold_user", "cold_user"],
        "rank": [1, 20, 1, 3, 50, 2],
    })  # fmt: skip
    out = per_user_slice_means(per_case)
    user7 = (1 + 1 / math.log2(4) + 0) / 3  # three targets, one user
    user8 = 1 / math.log2(3)
    assert out["cold_user"]["ndcg@10"] == pytest.approx((user7 + user8) / 2)
    assert out["cold_user"]["hr@10"] == pytest.approx((2 / 3 + 1) / 2)
    assert (out["cold_user"]["n_cases"], out["cold_user"]["n_users"]) == (4, 2)
    assert out["warm"]["ndcg@10"] == pytest.approx(0.5)
    assert out["all"]["ndcg@10"] == pytest.approx((1 + 0 + user7 + user8) / 4)
    assert (out["all"]["n_cases"], out["all"]["n_users"]) == (6, 4)
    assert "cold_item" not in out


def test_per_user_slice_means_are_slice_metrics_with_one_case_per_user():
    rng = np.random.default_rng(0)
    per_case = pd.DataFrame({
        "user_idx": np.arange(40), "slice": rng.choice(["warm", "cold_user", "cold_item"], 40),
        "rank": rng.integers(1, 30, 40), "top_items": [list(range(1, 21))] * 40, "activity_bucket": "1-10",
    })  # fmt: skip
    exact, means = slice_metrics(per_case, n_items=50), per_user_slice_means(per_case)
    for name, m in means.items():
        assert m["ndcg@10"] == pytest.approx(exact[name]["ndcg@10"]) and m["hr@10"] == pytest.approx(exact[name]["hr@10"])


def test_metrics_of_no_cases_are_nan():
    m = metrics_from_ranks([], [], n_items=10)
    assert math.isnan(m["hr@10"]) and m["n_cases"] == 0


# evaluate --------------------------------------------------------------------------------------


def tiny_cases():
    return pd.DataFrame(
        {
            "case_id": [11, 12, 13],
            "stage": ["test"] * 3,
            "user_idx": [1, 2, 3],
            "target_item": [3, 6, 2],
            "target_timestamp": [10, 10, 10],
            "history": [[6, 5], [], [2, 2, 1, 6]],
            "history_timestamps": [[1, 2], [], [1, 2, 3, 4]],
            "slice": ["warm", "warm", "cold_user"],
            "activity_bucket": ["1-10"] * 3,
        },
        columns=list(CASE_COLUMNS),
    )


def item_index_scores(batch):
    """Score of item i is i: item 6 best, 1 worst (column 0 gets a huge score, ignored)."""
    s = torch.arange(7, dtype=torch.float32).repeat(batch.items.shape[0], 1)
    s[:, 0] = 1e9
    return s


def test_evaluate_ranks_tiny_cases_by_hand():
    # case 11: candidates 1..4 (+3), item 4 beats 3 -> rank 2
    # case 12: empty history, target 6 is best -> rank 1
    # case 13: history 2,2,1,6 but target 2 stays: candidates 2..5, items 3, 4, 5 beat it -> 4
    result = evaluate(item_index_scores, tiny_cases(), n_items=6, max_len=2, top_n=10)
    per_case = result.per_case
    assert list(per_case.columns) == list(PER_CASE_COLUMNS)
    assert per_case["rank"].tolist() == [2, 1, 4]
    assert per_case["top_items"].tolist() == [
        [4, 3, 2, 1] + [0] * 6,
        [6, 5, 4, 3, 2, 1] + [0] * 4,
        [5, 4, 3, 2] + [0] * 6,
    ]


def test_evaluate_metrics_per_slice_by_hand():
    result = evaluate(item_index_scores, tiny_cases(), n_items=6, max_len=2, top_n=10)
    assert set(result.metrics) == {"all", "warm", "cold_user", "activity:1-10"}
    everything = result.metrics["all"]
    assert everything["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(5)) / 3)
    assert everything["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 4) / 3)
    assert everything["coverage@10"] == 1.0 and everything["n_cases"] == 3
    assert result.metrics["cold_user"]["coverage@10"] == pytest.approx(4 / 6)
    assert result.metrics["warm"]["mrr"] == pytest.approx(0.75)
    keys = {"hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10", "n_cases"}
    assert set(everything) == keys


def test_evaluate_batches_give_the_same_result_as_one_batch():
    one = evaluate(item_index_scores, tiny_cases(), n_items=6, batch_size=512, top_n=10)
    many = evaluate(item_index_scores, tiny_cases(), n_items=6, batch_size=1, top_n=10)
    pd.testing.assert_frame_equal(one.per_case, many.per_case)


def test_evaluate_feeds_truncated_histories_and_cold_users_as_user_zero():
    seen = []

    def spy(batch):
        seen.append((batch.items.tolist(), batch.users.tolist()))
        return item_index_scores(batch)

    evaluate(spy, tiny_cases(), n_items=6, max_len=2, top_n=10)
    assert seen == [([[6, 5], [0, 0], [1, 6]], [1, 2, 0])]


def test_evaluate_runs_without_autograd():
    def check(batch):
        assert torch.is_inference_mode_enabled()
        return item_index_scores(batch)

    evaluate(check, tiny_cases(), n_items=6, top_n=10)


def test_evaluate_rejects_wrongly_shaped_scores():
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda b: torch.zeros(b.items.shape[0], 6), tiny_cases(), n_items=6, top_n=10)


def test_metrics_recompute_from_saved_per_case_parquet(tmp_path):
    result = evaluate(item_index_scores, tiny_cases(), n_items=6, top_n=10)
    path = tmp_path / "per_case.parquet"
    result.per_case.to_parquet(path)
    assert slice_metrics(pd.read_parquet(path), n_items=6) == result.metrics


def test_evaluate_3000_cases_by_3700_items_is_fast():
    import time

    rng = np.random.default_rng(0)
    n, n_items = 3000, 3700
    lengths = rng.integers(1, 300, n)
    cases = pd.DataFrame(
        {
            "case_id": np.arange(n),
            "stage": "test",
            "user_idx": np.arange(1, n + 1),
            "target_item": rng.integers(1, n_items + 1, n),
            "target_timestamp": 0,
            "history": [rng.integers(1, n_items + 1, k).tolist() for k in lengths],
            "history_timestamps": [list(range(k)) for k in lengths],
            "slice": "warm",
            "activity_bucket": "51-200",
        }
    )
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    result = evaluate(
        lambda b: torch.rand(b.items.shape[0], n_items + 1, generator=gen), cases, n_items
    )
    assert time.perf_counter() - started < 10
    # random scores: hit@10 of a uniform rank over ~3600 candidates is about 0.003
    assert result.metrics["all"]["hr@10"] < 0.02
