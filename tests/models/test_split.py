"""Leave-one-out split on hand-built tables (DESIGN.md, "Evaluation protocol")."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from models.data import CASE_COLUMNS, TRAIN_COLUMNS
from models.split import ACTIVITY_BUCKETS, _activity_bucket, cold_selection_cases, leave_one_out_split


def frame(rows):
    """Interactions from (user_id, item_id, timestamp) tuples, in the given (file) order."""
    users, items, ts = zip(*rows)
    return pd.DataFrame(
        {
            "user_id": np.array(users, dtype=np.int64),
            "item_id": np.array(items, dtype=np.int64),
            "rating": np.arange(len(rows), dtype=np.float32) + 1,
            "timestamp": np.array(ts, dtype=np.int64),
        }
    )


def side_tables(interactions, extra_items=(), extra_users=()):
    item_ids = sorted(set(interactions["item_id"]) | set(extra_items))
    user_ids = sorted(set(interactions["user_id"]) | set(extra_users))
    items = pd.DataFrame({"item_id": item_ids, "title": [f"t{i}" for i in item_ids]})
    users = pd.DataFrame({"user_id": user_ids, "age": [20 + u for u in user_ids]})
    return items, users


def split(rows, **kwargs):
    interactions = frame(rows)
    items, users = side_tables(interactions)
    kwargs.setdefault("mode", "standard")
    return leave_one_out_split(interactions, items, users, **kwargs)


def case(data, stage, user_idx):
    cases = data.cases
    found = cases[(cases["stage"] == stage) & (cases["user_idx"] == user_idx)]
    assert len(found) == 1, found
    return found.iloc[0]


# Standard mode ---------------------------------------------------------------------------------

# user 7: file order is not time order; items (raw ids) 30, 10, 40, 20 at times 3, 1, 4, 2.
USER_7 = [(7, 30, 3), (7, 10, 1), (7, 40, 4), (7, 20, 2)]


def test_standard_last_is_test_second_last_is_valid_rest_is_train():
    data, _ = split(USER_7)
    # catalogue sorted by raw id: 10->1, 20->2, 30->3, 40->4
    assert data.train["item_idx"].tolist() == [1, 2]
    assert case(data, "valid", 1)["target_item"] == 3
    assert case(data, "test", 1)["target_item"] == 4


def test_valid_history_is_train_part_and_test_history_adds_valid_item():
    data, _ = split(USER_7)
    valid, test = case(data, "valid", 1), case(data, "test", 1)
    assert valid["history"] == [1, 2] and valid["history_timestamps"] == [1, 2]
    assert test["history"] == [1, 2, 3] and test["history_timestamps"] == [1, 2, 3]
    assert valid["target_timestamp"] == 3 and test["target_timestamp"] == 4


def test_timestamp_ties_keep_source_file_order():
    # all at the same time: file order 40, 10, 30, 20 decides
    data, _ = split([(1, 40, 5), (1, 10, 5), (1, 30, 5), (1, 20, 5)])
    assert data.train["item_idx"].tolist() == [4, 1]
    assert case(data, "valid", 1)["target_item"] == 3
    assert case(data, "test", 1)["target_item"] == 2


def test_ties_only_reorder_within_equal_timestamps():
    data, _ = split([(1, 10, 9), (1, 20, 2), (1, 30, 2), (1, 40, 1)])
    assert data.train["item_idx"].tolist() == [4, 2]
    assert case(data, "valid", 1)["target_item"] == 3
    assert case(data, "test", 1)["target_item"] == 1


def test_users_with_fewer_than_three_interactions_are_train_only():
    data, summary = split([(1, 10, 1), (1, 20, 2), (2, 30, 1), *[(3, i, i) for i in (10, 20, 30)]])
    assert sorted(data.cases["user_idx"].unique().tolist()) == [3]
    assert data.train["user_idx"].tolist() == [1, 1, 2, 3]
    assert summary.users_train_only == 2


def test_train_rows_keep_rating_and_timestamp_in_user_then_time_order():
    data, _ = split([(2, 10, 5), (1, 20, 3), (2, 30, 1), (1, 10, 2)])
    assert list(data.train.columns) == list(TRAIN_COLUMNS)
    assert data.train["user_idx"].tolist() == [1, 1, 2, 2]
    assert data.train["item_idx"].tolist() == [1, 2, 3, 1]
    assert data.train["timestamp"].tolist() == [2, 3, 1, 5]
    assert data.train["rating"].tolist() == [4.0, 2.0, 3.0, 1.0]


def test_index_space_is_sorted_raw_ids_and_catalogue_is_the_items_table():
    interactions = frame([(9, 50, 1), (4, 20, 1), (9, 20, 2)])
    items, users = side_tables(interactions, extra_items=(99, 1), extra_users=(5,))
    data, summary = leave_one_out_split(interactions, items, users, mode="standard")
    # every item of the items table is in the catalogue, rated or not; users need an interaction
    assert data.n_items == 4 and data.n_users == 2
    assert data.items[["item_idx", "item_id"]].values.tolist() == [[1, 1], [2, 20], [3, 50], [4, 99]]
    assert data.items["title"].tolist() == ["t1", "t20", "t50", "t99"]
    assert data.train["item_idx"].tolist() == [2, 3, 2]
    assert data.users[["user_idx", "user_id", "age"]].values.tolist() == [[1, 4, 24], [2, 9, 29]]
    assert summary.n_items == 4 and summary.items_without_interactions == 2
    assert summary.items_without_metadata == 0
    assert summary.users_without_interactions == 1


def test_ids_missing_from_side_tables_are_kept_and_counted():
    interactions = frame([(1, 10, 1), (2, 20, 1)])
    items = pd.DataFrame({"item_id": [10], "title": ["t10"]})
    users = pd.DataFrame({"user_id": [2], "age": [30]})
    data, summary = leave_one_out_split(interactions, items, users, mode="standard")
    assert data.items["item_id"].tolist() == [10, 20]
    assert summary.items_without_metadata == 1 and summary.users_without_metadata == 1


def test_unrated_items_are_candidates_of_the_full_ranking():
    """Issue 25: an item of the items table that nobody rated is in the catalogue, so a target
    that has no training row either (here item 40, a test target only) no longer outranks it."""
    from models.general.popularity import Popularity, PopularityConfig
    from models.metrics import evaluate

    rows = [(1, 10, 1), (1, 20, 2), (1, 30, 3), (2, 10, 1), (2, 20, 2), (2, 40, 3), (3, 10, 1)]
    interactions = frame(rows)
    items, users = side_tables(interactions, extra_items=(15, 50))
    data, summary = leave_one_out_split(interactions, items, users, mode="standard")
    to_idx = dict(zip(data.items["item_id"], data.items["item_idx"]))
    assert to_idx == {10: 1, 15: 2, 20: 3, 30: 4, 40: 5, 50: 6}
    assert (data.n_items, summary.n_items, summary.items_without_interactions) == (6, 6, 2)
    assert summary.items_without_metadata == 0
    summary.check()
    rated, _ = leave_one_out_split(interactions, None, None, mode="standard")
    assert rated.n_items == 4  # without an items table: the rated items

    def ranks(split_data):
        model = Popularity(PopularityConfig(split_data.n_items))
        model.fit(split_data.training_data(), "cpu", progress=False)
        result = evaluate(model.score, split_data.stage("test"), split_data.n_items, max_len=1)
        top = result.per_case["top_items"].tolist()
        return result.per_case.set_index("user_idx")["rank"].to_dict(), top, model.counts.tolist()

    with_unrated, top, counts = ranks(data)
    assert counts == [0, 3, 0, 0, 0, 0, 0]  # item 10 trains 3 times; the unrated 15 and 50 count zero
    without, _, _ = ranks(rated)
    # user 1: target 30 (count 0), history 10, 20 excluded; candidates 30 and 40 (and 15, 50)
    # user 2: target 40 (count 0), history 10, 20 excluded; candidates 30, 40 (and 15, 50)
    # every candidate ties at 0, and ties count against the target
    assert without == {1: 2, 2: 2}
    assert with_unrated == {1: 4, 2: 4}
    assert all({to_idx[15], to_idx[50]} <= set(t) for t in top)  # they reach the top lists too


def test_unrated_items_change_no_holdout_draw():
    """The cold-item count is a share of the rated items and the draw is among rated items, so
    adding unrated items to the catalogue moves indices but draws the same raw ids."""
    rows = random_rows()
    interactions = frame(rows)
    items, users = side_tables(interactions)
    plain, s_plain = leave_one_out_split(interactions, items, users, mode="pipeline", seed=11)
    items_more, _ = side_tables(interactions, extra_items=(1, 3, 5, 51, 1001))
    data, s = leave_one_out_split(interactions, items_more, users, mode="pipeline", seed=11)
    assert (s.n_items, s.items_without_interactions) == (s_plain.n_items + 5, 5)
    assert (s.cold_user_ids, s.cold_item_ids) == (s_plain.cold_user_ids, s_plain.cold_item_ids)
    assert s.train_rows == s_plain.train_rows and s.test_cases == s_plain.test_cases
    unrated = set(data.items.loc[data.items["item_id"].isin([1, 3, 5, 51, 1001]), "item_idx"])
    assert not unrated & set(data.train["item_idx"]) and not unrated & set(data.cases["target_item"])
    to_raw = dict(zip(data.items["item_idx"], data.items["item_id"]))
    plain_raw = dict(zip(plain.items["item_idx"], plain.items["item_id"]))
    assert [to_raw[i] for i in data.train["item_idx"]] == [plain_raw[i] for i in plain.train["item_idx"]]


def test_standard_mode_makes_every_case_warm():
    rows = [(u, i, t) for u in range(1, 6) for t, i in enumerate(range(u, u + 4))]
    data, summary = split(rows)
    assert set(data.cases["slice"]) == {"warm"}
    assert summary.test_cases == {"warm": 5, "cold_user": 0, "cold_item": 0}
    assert summary.cold_users == 0 and summary.cold_items == 0


def test_cases_have_exact_columns_unique_ids_and_python_int_lists():
    data, _ = split(USER_7 + [(8, 10, 1), (8, 20, 1), (8, 30, 1)])
    cases = data.cases
    assert list(cases.columns) == list(CASE_COLUMNS)
    assert cases["case_id"].is_unique and cases["case_id"].dtype == np.int64
    assert cases["case_id"].tolist() == [2, 4, 3, 5]  # valid then test; 2*user_idx (+1 test)
    for column in ("history", "history_timestamps"):
        for value in cases[column]:
            assert type(value) is list and all(type(x) is int for x in value)


def test_cases_survive_a_parquet_round_trip(tmp_path):
    data, _ = split(USER_7)
    path = tmp_path / "cases.parquet"
    data.cases.to_parquet(path)
    back = pd.read_parquet(path)
    assert [list(h) for h in back["history"]] == list(data.cases["history"])


@pytest.mark.parametrize(
    "length, bucket",
    [(0, "1-10"), (1, "1-10"), (10, "1-10"), (11, "11-50"), (50, "11-50"), (51, "51-200"),
     (200, "51-200"), (201, "201+"), (5000, "201+")],
)
def test_activity_bucket_boundaries(length, bucket):
    assert _activity_bucket(np.array([length]))[0] == bucket
    assert bucket in ACTIVITY_BUCKETS


def test_activity_bucket_is_the_case_history_length():
    rows = [(1, i, i) for i in range(1, 15)]  # 14 interactions: valid history 12, test history 13
    data, _ = split(rows)
    assert case(data, "valid", 1)["activity_bucket"] == "11-50"
    rows = [(1, i, i) for i in range(1, 13)]  # 12: valid history 10, test history 11
    data, _ = split(rows)
    assert case(data, "valid", 1)["activity_bucket"] == "1-10"
    assert case(data, "test", 1)["activity_bucket"] == "11-50"


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        split(USER_7, mode="random")


# Pipeline mode ---------------------------------------------------------------------------------


def random_rows(seed=3, n_users=60, n_items=50):
    """A random table with users of 1..20 interactions and many timestamp ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in rng.permutation(np.arange(100, 100 + n_users)):
        for _ in range(rng.integers(1, 21)):
            rows.append((int(user), int(rng.integers(1, n_items + 1)) * 2, int(rng.integers(0, 8))))
    order = rng.permutation(len(rows))
    return [rows[k] for k in order]


@pytest.fixture(scope="module")
def pipeline():
    rows = random_rows()
    return rows, *split(rows, mode="pipeline", seed=11)


def test_pipeline_draws_rounded_fractions_of_users_and_items(pipeline):
    _, data, summary = pipeline
    assert data.n_users == 60 and data.n_items == 50
    assert summary.cold_users == 6
    assert summary.cold_items == 3  # 0.05 * 50 = 2.5, rounded half up
    assert summary.test_cases["cold_user"] == summary.cold_users


def test_cold_users_have_no_train_rows_and_no_valid_case(pipeline):
    _, data, summary = pipeline
    cold = data.users[data.users["user_id"].isin(summary.cold_user_ids)]["user_idx"]
    assert not data.train["user_idx"].isin(cold).any()
    assert not data.stage("valid")["user_idx"].isin(cold).any()


def test_cold_user_case_shows_first_five_and_asks_for_last(pipeline):
    rows, data, summary = pipeline
    to_idx = dict(zip(data.items["item_id"], data.items["item_idx"]))
    for user_id in summary.cold_user_ids:
        mine = [(t, k, i) for k, (u, i, t) in enumerate(rows) if u == user_id]
        ordered = [to_idx[i] for _, _, i in sorted(mine)]
        user_idx = int(data.users.loc[data.users["user_id"] == user_id, "user_idx"].iloc[0])
        test = case(data, "test", user_idx)
        assert test["history"] == ordered[:5]
        assert test["target_item"] == ordered[-1]
        assert test["slice"] == "cold_user"


def test_cold_items_absent_from_train_valid_targets_and_warm_histories(pipeline):
    _, data, summary = pipeline
    cold = set(data.items[data.items["item_id"].isin(summary.cold_item_ids)]["item_idx"])
    assert len(cold) == summary.cold_items > 0
    assert not data.train["item_idx"].isin(cold).any()
    assert not data.stage("valid")["target_item"].isin(cold).any()
    warm_user_cases = data.cases[data.cases["slice"] != "cold_user"]
    assert all(not cold.intersection(h) for h in warm_user_cases["history"])


def test_cold_item_targets_of_warm_users_get_cold_item_slice(pipeline):
    _, data, summary = pipeline
    cold = set(data.items[data.items["item_id"].isin(summary.cold_item_ids)]["item_idx"])
    test = data.stage("test")
    warm_users = test[test["slice"] != "cold_user"]
    expected = np.where(warm_users["target_item"].isin(cold), "cold_item", "warm")
    assert warm_users["slice"].tolist() == expected.tolist()
    assert set(data.stage("valid")["slice"]) == {"warm"}


def test_cold_items_stay_in_the_catalogue(pipeline):
    rows, data, _ = pipeline
    standard, _ = split(rows, mode="standard")
    assert data.n_items == standard.n_items and data.n_users == standard.n_users


def test_pipeline_split_is_reproducible_for_a_seed():
    rows = random_rows()
    a, sa = split(rows, mode="pipeline", seed=5)
    b, sb = split(rows, mode="pipeline", seed=5)
    c, sc = split(rows, mode="pipeline", seed=6)
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.cases, b.cases)
    assert sa == sb
    assert (sa.cold_user_ids, sa.cold_item_ids) != (sc.cold_user_ids, sc.cold_item_ids)


def reference_split(rows, cold_user_ids, cold_item_ids, shown=5):
    """The protocol written out per user with Python loops, given the drawn holdouts."""
    item_idx = {i: k + 1 for k, i in enumerate(sorted({i for _, i, _ in rows}))}
    user_idx = {u: k + 1 for k, u in enumerate(sorted({u for u, _, _ in rows}))}
    cold_items = {item_idx[i] for i in cold_item_ids}
    train, cases = [], []
    for user in sorted(user_idx):
        events = sorted((t, k, item_idx[i]) for k, (u, i, t) in enumerate(rows) if u == user)
        seq = [(i, t) for t, _, i in events]
        u = user_idx[user]
        if user in cold_user_ids:
            cases.append(("test", u, seq[-1], seq[:shown], "cold_user"))
            continue
        if len(seq) < 3:
            train += [(u, i, t) for i, t in seq if i not in cold_items]
            continue
        fit = [(i, t) for i, t in seq[:-2] if i not in cold_items]
        train += [(u, i, t) for i, t in fit]
        valid = seq[-2] if seq[-2][0] not in cold_items else None
        if valid:
            cases.append(("valid", u, valid, fit, "warm"))
        target = seq[-1]
        slice_ = "cold_item" if target[0] in cold_items else "warm"
        cases.append(("test", u, target, fit + ([valid] if valid else []), slice_))
    return train, cases


def test_pipeline_matches_a_per_user_reference(pipeline):
    rows, data, summary = pipeline
    train, cases = reference_split(rows, set(summary.cold_user_ids), set(summary.cold_item_ids))
    got_train = data.train[["user_idx", "item_idx", "timestamp"]].values.tolist()
    assert got_train == [list(r) for r in train]
    got = sorted(
        (c.stage, c.user_idx, (c.target_item, c.target_timestamp),
         list(zip(c.history, c.history_timestamps)), c.slice)
        for c in data.cases.itertuples()
    )
    assert got == sorted(cases)


def test_accounting_identity_holds_in_both_modes(pipeline):
    rows, _, summary = pipeline
    _, standard = split(rows, mode="standard")
    for s in (summary, standard):
        warm_user_tests = s.test_cases["warm"] + s.test_cases["cold_item"]
        assert s.rows_in == len(rows)
        assert s.rows_in == (
            s.train_rows + s.valid_cases + warm_user_tests + s.cold_item_removed_rows
            + s.cold_user_rows
        )


def test_summary_check_raises_when_a_row_is_unaccounted(pipeline):
    _, _, summary = pipeline
    broken = dataclasses.replace(summary, train_rows=summary.train_rows - 1)
    with pytest.raises(AssertionError):
        broken.check()


def test_summary_is_json_able(pipeline):
    _, _, summary = pipeline
    assert json.loads(json.dumps(dataclasses.asdict(summary)))["rows_in"] == summary.rows_in


def test_pipeline_summary_counts_exact_on_a_hand_built_table():
    # User 1 is the only user with >= 6 interactions: it is the cold user. Item 200 is the only
    # item in a non-cold user's train/valid part: it is the cold item.
    rows = [(1, i, i) for i in range(1, 7)]
    rows += [(2, 200, 1), (2, 200, 2), (2, 200, 3), (2, 10, 4)]  # test 10 warm, empty history
    rows += [(3, 200, 1), (3, 200, 2), (3, 12, 3)]  # test 12 warm, empty history
    rows += [(4, 200, 1), (4, 200, 2)]  # train only, both rows removed
    rows += [(5, 200, 1), (5, 200, 2), (5, 200, 3)]  # test 200: cold_item
    data, s = split(rows, mode="pipeline", seed=0, cold_item_fraction=0.2)
    assert (s.rows_in, s.n_users, s.n_items) == (18, 5, 9)
    assert (s.train_rows, s.valid_cases) == (0, 0)
    assert s.test_cases == {"warm": 2, "cold_user": 1, "cold_item": 1}
    assert (s.users_train_only, s.cold_users) == (1, 1)
    assert (s.cold_user_rows, s.cold_user_shown_rows) == (6, 5)
    assert (s.cold_items, s.cold_item_removed_rows) == (1, 9)
    assert (s.cold_item_removed_train_rows, s.cold_item_dropped_valid_cases) == (6, 3)
    assert s.cases_with_empty_history == 3
    assert (s.cold_user_ids, s.cold_item_ids) == ([1], [200])
    assert case(data, "test", 5)["slice"] == "cold_item"


def test_no_cold_items_below_twenty_items_when_fraction_rounds_to_zero():
    rows = [(u, i, i) for u in range(1, 11) for i in range(1, 8)]  # 7 items: 0.35 -> 0
    _, s = split(rows, mode="pipeline")
    assert s.cold_items == 0 and s.cold_users == 1


def test_at_least_one_cold_item_from_twenty_items():
    rows = [(u, i, i) for u in range(1, 4) for i in range(1, 21)]  # 20 items: 0.05 * 20 = 1
    _, s = split(rows, mode="pipeline", cold_item_fraction=0.01)
    assert s.cold_items == 1


def test_split_of_500k_rows_is_vectorised_and_fast():
    import time

    rng = np.random.default_rng(0)
    n = 500_000
    interactions = pd.DataFrame(
        {
            "user_id": rng.integers(0, 3000, n),
            "item_id": rng.integers(0, 3700, n),
            "rating": np.ones(n, dtype=np.float32),
            "timestamp": rng.integers(0, 10**6, n),
        }
    )
    items = pd.DataFrame({"item_id": np.arange(3700)})
    users = pd.DataFrame({"user_id": np.arange(3000)})
    started = time.perf_counter()
    _, summary = leave_one_out_split(interactions, items, users, mode="pipeline")
    assert time.perf_counter() - started < 10
    assert summary.rows_in == n


# Selection cases for the held-out slices ---------------------------------------------------------


def test_cold_selection_cases_on_a_hand_built_table():
    # user 1 (7 rows) is the only user with >= 6: the cold user; item 200 the cold item
    rows = [(1, i, i) for i in range(1, 8)]  # items 1..7 at times 1..7
    rows += [(2, 20, 1), (2, 21, 2), (2, 200, 3), (2, 22, 4)]  # validation target 200: removed
    rows += [(3, 20, 1), (3, 21, 2), (3, 23, 3)]  # an ordinary warm user
    interactions = frame(rows)
    items, users = side_tables(interactions)
    data, summary = leave_one_out_split(
        interactions, items, users, mode="pipeline", seed=0, cold_user_fraction=0.34, cold_item_fraction=0.08
    )
    assert (summary.cold_user_ids, summary.cold_item_ids, summary.cold_item_dropped_valid_cases) == ([1], [200], 1)
    to_idx = dict(zip(data.items["item_id"], data.items["item_idx"]))

    cases = cold_selection_cases(interactions, summary)
    assert list(cases.columns) == list(CASE_COLUMNS) and set(cases["stage"]) == {"valid"}
    cold_user = cases[cases["slice"] == "cold_user"].iloc[0]
    assert cold_user["user_idx"] == 1 and cold_user["case_id"] == 2
    assert cold_user["history"] == [to_idx[i] for i in range(1, 6)]  # as in the test case
    assert cold_user["target_item"] == to_idx[6]  # second-to-last; the test target is 7
    assert case(data, "test", 1)["target_item"] == to_idx[7]
    cold_item = cases[cases["slice"] == "cold_item"].iloc[0]
    assert cold_item["user_idx"] == 2 and cold_item["target_item"] == to_idx[200]
    assert cold_item["history"] == [to_idx[20], to_idx[21]]  # the training part
    assert len(cases) == 2
    # none of them is a case of the split
    assert not set(cases["case_id"]) & set(data.cases["case_id"])


def test_cold_selection_cases_with_several_targets_per_cold_user():
    # user 1 (9 rows) is the cold user: shown items 1..5, test target 9, validation targets 6..8
    rows = [(1, i, i) for i in range(1, 10)]
    rows += [(2, 20, 1), (2, 21, 2), (2, 200, 3), (2, 22, 4)]
    rows += [(3, 20, 1), (3, 21, 2), (3, 23, 3)]
    interactions = frame(rows)
    items, users = side_tables(interactions)
    data, summary = leave_one_out_split(
        interactions, items, users, mode="pipeline", seed=0, cold_user_fraction=0.34, cold_item_fraction=0.08
    )
    assert summary.cold_user_ids == [1]
    to_idx = dict(zip(data.items["item_id"], data.items["item_idx"]))

    def cold_user_cases(targets):
        cases = cold_selection_cases(interactions, summary, cold_user_targets=targets)
        assert len(cases[cases["slice"] == "cold_item"]) == 1  # the other slice is as before
        assert not set(cases["case_id"]) & set(data.cases["case_id"]) and cases["case_id"].is_unique
        return cases[cases["slice"] == "cold_user"]

    every = cold_user_cases(None)
    assert sorted(every["target_item"]) == [to_idx[i] for i in (6, 7, 8)]
    assert all(h == [to_idx[i] for i in range(1, 6)] for h in every["history"])  # the test case's history
    assert every[every["target_item"] == to_idx[8]]["case_id"].item() == 2  # the second-to-last keeps its id
    two = cold_user_cases(2)
    assert sorted(two["target_item"]) == [to_idx[7], to_idx[8]]  # the latest before the test target
    assert list(cold_user_cases(1)["target_item"]) == [to_idx[8]]
    assert sorted(cold_user_cases(10)["target_item"]) == sorted(every["target_item"])
    with pytest.raises(ValueError, match="cold_user_targets must be >= 1"):
        cold_selection_cases(interactions, summary, cold_user_targets=0)


def test_cold_selection_cases_use_no_row_a_split_case_or_training_uses(pipeline):
    rows, data, summary = pipeline
    interactions = frame(rows)
    cases = cold_selection_cases(interactions, summary)
    assert (cases["slice"] == "cold_item").sum() == summary.cold_item_dropped_valid_cases
    cold_users = data.users[data.users["user_id"].isin(summary.cold_user_ids)]["user_idx"]
    assert set(cases.loc[cases["slice"] == "cold_user", "user_idx"]) <= set(cold_users)
    assert not set(cases["case_id"]) & set(data.cases["case_id"])
    for _, c in cases.iterrows():
        test = case(data, "test", c["user_idx"])
        if c["slice"] == "cold_user":
            assert c["history"] == test["history"] and c["target_timestamp"] <= test["target_timestamp"]
        else:
            train = data.train[data.train["user_idx"] == c["user_idx"]]["item_idx"].tolist()
            assert c["history"] == train  # what its validation case would have read
    _, standard = split(rows, mode="standard")
    assert cold_selection_cases(interactions, standard).empty  # no holdouts, nothing to select by


def test_cold_selection_cases_refuse_other_interactions(pipeline):
    rows, _, summary = pipeline
    with pytest.raises(ValueError, match="pass the interactions and the items table the split was made from"):
        cold_selection_cases(frame(rows[: len(rows) // 3]), summary)


def test_cold_selection_cases_index_the_catalogue_of_the_items_table():
    rows = [(1, i, i) for i in range(1, 8)]
    rows += [(2, 20, 1), (2, 21, 2), (2, 200, 3), (2, 22, 4)]
    rows += [(3, 20, 1), (3, 21, 2), (3, 23, 3)]
    interactions = frame(rows)
    items, users = side_tables(interactions, extra_items=(0, 15, 300))  # unrated: before, among, after
    data, summary = leave_one_out_split(
        interactions, items, users, mode="pipeline", seed=0, cold_user_fraction=0.34, cold_item_fraction=0.08
    )
    assert (summary.cold_item_ids, summary.n_items) == ([200], 15)
    to_idx = dict(zip(data.items["item_id"], data.items["item_idx"]))
    cases = cold_selection_cases(interactions, summary, items=items)
    cold_item = cases[cases["slice"] == "cold_item"].iloc[0]
    assert cold_item["target_item"] == to_idx[200] and cold_item["history"] == [to_idx[20], to_idx[21]]
    cold_user = cases[cases["slice"] == "cold_user"].iloc[0]
    assert cold_user["history"] == [to_idx[i] for i in range(1, 6)] and cold_user["target_item"] == to_idx[6]
    with pytest.raises(ValueError, match="pass the interactions and the items table"):
        cold_selection_cases(interactions, summary)  # the index without the unrated items
