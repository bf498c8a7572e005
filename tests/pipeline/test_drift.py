"""Drift between windows: new items and users, rating value sets, and permutation p-values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

import pipeline.drift as drift
from pipeline.drift import UnseenValuesError, check_value_set, js_distance, measure_drift

T0 = 1_000_000_000  # 2001-09-09T01:46:40Z


def events(n: int, *, seed: int, n_users: int = 60, n_items: int = 40, ratings=(1.0, 2.0, 3.0, 4.0, 5.0)):
    """``n`` canonical interactions, items drawn from one skewed popularity, in time order."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n).astype("int64"),
            "item_id": rng.choice(n_items, size=n, p=popularity / popularity.sum()).astype("int64"),
            "rating": rng.choice(np.asarray(ratings), size=n).astype("float32"),
            "timestamp": (T0 + np.arange(n) * 60).astype("int64"),
        }
    )


def halves(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two random halves of the same events: no drift by construction."""
    pool = events(2000, seed=seed)
    order = np.random.default_rng(seed + 1).permutation(len(pool))
    first, second = np.sort(order[:1000]), np.sort(order[1000:])
    return pool.iloc[first].reset_index(drop=True), pool.iloc[second].reset_index(drop=True)


def test_js_distance_is_scipys_base_2_distance_and_the_permutation_rows_agree():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.random(12), rng.random(12)
        p[rng.random(12) < 0.3] = 0  # zero cells on one side: 0 * log 0 = 0
        q[0] = 0
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint supports: the maximum
    assert js_distance([3, 1], [6, 2]) == pytest.approx(0.0, abs=1e-7)  # same shape, other scale
    counts = rng.integers(0, 5, size=(4, 9)).astype(float) + np.eye(4, 9)
    other = rng.integers(1, 5, size=(4, 9)).astype(float)
    expected = [jensenshannon(a, b, base=2) for a, b in zip(counts, other)]
    assert drift._js_rows(counts, other) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        js_distance([1, -1], [1, 1])


def test_two_random_halves_of_the_same_events_do_not_force_a_retrain():
    reference, current = halves()
    report = measure_drift(reference, current, permutations=200, seed=0)
    popularity = report.statistic("item popularity")
    assert popularity.value > 0  # a random re-split has a JS distance too ...
    assert popularity.p_value > 0.05  # ... and this one is ordinary among them
    assert report.statistic("rating distribution").p_value > 0.01
    assert not report.forces_retrain and report.reasons == []
    assert report.new_item_share <= 0.05 and report.unseen_rating_values == []
    assert report.reference["n_events"] == report.current["n_events"] == 1000


def test_a_drifted_window_forces_a_retrain_and_names_why():
    reference = events(2000, seed=1, n_items=40)
    # 90 events on three popular-in-reference-but-not-top items, 10 events on two new items.
    current = pd.DataFrame(
        {
            "user_id": np.arange(100, dtype="int64") % 7,
            "item_id": np.array([30] * 40 + [31] * 30 + [32] * 20 + [900] * 6 + [901] * 4, dtype="int64"),
            "rating": np.full(100, 4.0, dtype="float32"),
            "timestamp": (T0 + 10**7 + np.arange(100)).astype("int64"),
        }
    )
    assert set(reference["item_id"]) >= {30, 31, 32} and not set(reference["item_id"]) & {900, 901}
    report = measure_drift(reference, current, permutations=200, seed=0)
    assert report.new_item_share == pytest.approx(10 / 100) and report.new_items == 2
    assert report.new_user_share == 0.0 and report.new_users == 0  # users 0..6 are in the reference
    assert report.forces_retrain
    assert any("new items" in r and "10.00%" in r and "5.00%" in r for r in report.reasons)
    popularity = report.statistic("item popularity")
    assert popularity.p_value == pytest.approx(1 / 201)  # beyond every re-split
    assert any(r.startswith("item popularity shifted: JS distance") for r in report.reasons)

    # The popularity test alone forces it: no new items, but the same concentration.
    only_old = current[current["item_id"] < 900]
    report = measure_drift(reference, only_old, permutations=200, seed=0, new_item_threshold=0.05)
    assert report.new_item_share == 0.0
    assert report.forces_retrain and len(report.reasons) == 1 and "item popularity shifted" in report.reasons[0]

    # The threshold is strict: a share equal to it is not a reason.
    report = measure_drift(reference, current, permutations=200, seed=0, new_item_threshold=0.10)
    assert [r.split(":")[0] for r in report.reasons] == ["item popularity shifted"]


def test_new_user_share_counts_events_not_users():
    reference = events(500, seed=2, n_users=10)
    current = pd.DataFrame(
        {"user_id": [0, 0, 77, 77, 77, 78], "item_id": [0, 1, 0, 1, 2, 3], "rating": [4.0] * 6,
         "timestamp": [T0 + 10**6 + i for i in range(6)]}  # fmt: skip
    )
    report = measure_drift(reference, current, permutations=100)
    assert report.new_user_share == pytest.approx(4 / 6) and report.new_users == 2
    assert report.new_item_share == 0.0 and report.new_items == 0


def test_half_stars_in_a_whole_star_log_are_a_contract_event():
    reference = events(600, seed=4)
    current = events(50, seed=5, ratings=(3.0, 4.0))
    current.loc[[7, 19], "rating"] = 3.5
    report = measure_drift(reference, current, permutations=100)
    assert report.unseen_rating_values == [3.5]
    assert report.rating_values == [3.0, 3.5, 4.0]
    with pytest.raises(UnseenValuesError) as caught:
        check_value_set(report, current)
    message = str(caught.value)
    assert "'rating'" in message and "3.5" in message and "row 7" in message and "row 19" in message
    assert f"timestamp {T0 + 7 * 60}" in message
    assert caught.value.rows == [(7, T0 + 7 * 60), (19, T0 + 19 * 60)] and caught.value.column == "rating"
    assert isinstance(caught.value, ValueError)

    check_value_set(measure_drift(reference, events(50, seed=5), permutations=100), events(50, seed=5))  # no raise


def test_row_positions_are_positions_not_index_labels():
    reference = events(300, seed=6)
    current = events(20, seed=7).iloc[::-1]  # index labels 19..0
    current.iloc[2, current.columns.get_loc("rating")] = 4.5
    report = measure_drift(reference, current, permutations=100)
    with pytest.raises(UnseenValuesError, match=r"row 2 \("):
        check_value_set(report, current)


def test_without_a_rating_column_there_are_no_rating_statistics():
    reference, current = halves()
    report = measure_drift(reference.drop(columns="rating"), current.drop(columns="rating"), permutations=100)
    assert [s.name for s in report.statistics] == ["item popularity", "activity per user"]
    assert report.rating_values == [] and report.unseen_rating_values == []
    check_value_set(report, current)


def test_p_values_are_in_range_and_reproducible_with_the_seed():
    reference, current = halves(seed=8)
    first = measure_drift(reference, current, permutations=150, seed=11)
    again = measure_drift(reference, current, permutations=150, seed=11)
    assert first.to_dict() == again.to_dict()
    for stat in first.statistics:
        assert 0 < stat.p_value <= 1
        assert round(stat.p_value * 151) == pytest.approx(stat.p_value * 151)  # (1 + k) / (1 + n)
    other = measure_drift(reference, current, permutations=150, seed=12)
    assert [s.p_value for s in other.statistics] != [s.p_value for s in first.statistics]
    assert [s.value for s in other.statistics] == [s.value for s in first.statistics]  # observed: no randomness


def test_the_resplits_do_not_depend_on_the_block_size(monkeypatch):
    reference, current = halves(seed=9)
    whole = measure_drift(reference, current, permutations=120, seed=5)
    monkeypatch.setattr(drift, "_BLOCK_CELLS", 1)  # one split per block
    assert measure_drift(reference, current, permutations=120, seed=5).to_dict() == whole.to_dict()


def test_max_reference_events_keeps_the_most_recent_and_says_so():
    reference = events(1000, seed=10).sample(frac=1.0, random_state=0)  # out of time order
    current = events(100, seed=11)
    report = measure_drift(reference, current, permutations=100, max_reference_events=300)
    assert report.reference["n_events"] == 1000 and report.reference["n_events_compared"] == 300
    assert all("most recent 300 of its 1000" in s.detail for s in report.statistics)
    latest = reference.sort_values("timestamp").tail(300)
    direct = measure_drift(latest, current, permutations=100)
    assert report.statistic("item popularity").value == pytest.approx(direct.statistic("item popularity").value)
    assert "most recent" not in measure_drift(reference, current, permutations=100).statistics[0].detail


def test_the_report_is_json_able_short_and_readable():
    reference = events(800, seed=12)
    current = events(80, seed=13, ratings=(2.5, 4.0))
    report = measure_drift(reference, current, permutations=100)
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["statistics"][0]["name"] == "item popularity" and decoded["unseen_rating_values"] == [2.5]
    assert decoded["reference"]["first"] == "2001-09-09T01:46:40Z"
    summary = report.summary()
    assert len(summary) < 250 and "\n" not in summary and "pop JS" in summary
    table = report.markdown()
    assert "| item popularity |" in table and "| rating distribution |" in table and "2.5" in table


def test_bad_inputs_are_refused_with_a_clear_message():
    reference, current = halves()
    with pytest.raises(ValueError, match="cannot reach alpha=0.01"):
        measure_drift(reference, current, permutations=50)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['timestamp'\]"):
        measure_drift(reference, current.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="current has no events"):
        measure_drift(reference, current.iloc[:0])
    with pytest.raises(TypeError, match="reference must be a pandas DataFrame"):
        measure_drift(reference.to_dict(), current)
