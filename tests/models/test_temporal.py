"""The retrain split at a cutoff and the replay's window cases (models.temporal)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.temporal import cutoff_split, window_cases

DAY = 86_400
T = 100 * DAY  # the cutoff


def interactions() -> pd.DataFrame:
    # user 1: old history, last event inside the validation week -> warm case
    # user 2: every event before the validation week -> no case, all training
    # user 3: one event, inside the week -> cold_user case (empty history)
    # user 4: last event in the week on item 30, which nobody else rated -> cold_item case
    # user 5: two events at the same second inside the week: the later row in the file is the target
    rows = [
        (1, 10, T - 30 * DAY), (1, 11, T - 20 * DAY), (1, 12, T - 2 * DAY),
        (2, 10, T - 40 * DAY), (2, 12, T - 9 * DAY),
        (3, 11, T - 1 * DAY),
        (4, 10, T - 50 * DAY), (4, 30, T - 3 * DAY),
        (5, 11, T - 15 * DAY), (5, 10, T - DAY), (5, 12, T - DAY),
        # after the cutoff: the replay's window [T, T + 7 days)
        (1, 30, T + DAY), (1, 14, T + 2 * DAY),  # first in window: 30 (rated before T by user 4)
        (6, 12, T + 3 * DAY),  # a user new since the cutoff
        (2, 31, T + 4 * DAY),  # an item nobody rated before the cutoff
        (3, 10, T + 8 * DAY),  # after the window
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(rating=4.0)


ITEMS = pd.DataFrame({"item_id": [10, 11, 12, 13, 14, 30, 31, 99]})


def test_the_retrain_split_validates_on_each_users_last_event_of_the_last_week_and_trains_on_the_rest():
    frame = interactions()
    before = frame[frame["timestamp"] < T].reset_index(drop=True)
    data, summary = cutoff_split(before, ITEMS, None, cutoff=T, validation_seconds=7 * DAY)
    items = dict(zip(data.items["item_id"], data.items["item_idx"]))
    users = dict(zip(data.users["user_id"], data.users["user_idx"]))
    cases = data.cases.set_index("user_idx")
    assert set(cases.index) == {users[1], users[3], users[4], users[5]}  # user 2 has no case
    assert (data.cases["stage"] == "valid").all()
    assert cases.loc[users[1], "target_item"] == items[12] and cases.loc[users[1], "slice"] == "warm"
    assert cases.loc[users[1], "history"] == [items[10], items[11]]
    assert cases.loc[users[3], "slice"] == "cold_user" and cases.loc[users[3], "history"] == []
    assert cases.loc[users[4], "slice"] == "cold_item" and cases.loc[users[4], "target_item"] == items[30]
    assert cases.loc[users[5], "target_item"] == items[12]  # same second: file order decides
    assert cases.loc[users[5], "history"] == [items[11], items[10]]
    assert summary.train_rows + sum(summary.valid_cases.values()) == len(before) == summary.rows_in
    assert summary.users_without_case == 1
    assert data.n_items == len(ITEMS)  # the catalogue is the item table
    # no validation target is a training row
    trained = set(zip(data.train["user_idx"], data.train["item_idx"]))
    assert not trained & set(zip(data.cases["user_idx"], data.cases["target_item"]))


def test_the_retrain_split_refuses_rows_after_the_cutoff():
    with pytest.raises(ValueError, match="at or after the cutoff"):
        cutoff_split(interactions(), ITEMS, None, cutoff=T, validation_seconds=7 * DAY)


def test_window_cases_follow_the_replay_protocol():
    frame = interactions()
    before = frame[frame["timestamp"] < T].reset_index(drop=True)
    index, _ = cutoff_split(before, ITEMS, None, cutoff=T, validation_seconds=7 * DAY)
    cases = window_cases(frame, index, start=T, end=T + 7 * DAY)
    items = dict(zip(index.items["item_id"], index.items["item_idx"]))
    users = dict(zip(index.users["user_id"], index.users["user_idx"]))
    assert len(cases) == 3  # users 1, 2, 6; user 3's event is after the window
    by_user = cases.set_index("user_idx")
    one = by_user.loc[users[1]]
    assert one["target_item"] == items[30] and one["history"] == [items[10], items[11], items[12]]
    assert one["slice"] == "warm"  # the validation target is history here: every event before T
    two = by_user.loc[users[2]]
    assert two["slice"] == "cold_item" and two["target_item"] == items[31]
    new = cases[cases["slice"] == "cold_user"]
    assert len(new) == 1 and new["history"].iloc[0] == [] and new["user_idx"].iloc[0] > index.n_users
    assert (cases["stage"] == "test").all() and cases["case_id"].is_unique


def test_window_cases_refuse_an_item_outside_the_catalogue():
    frame = interactions()
    before = frame[frame["timestamp"] < T].reset_index(drop=True)
    index, _ = cutoff_split(before, pd.DataFrame({"item_id": [10, 11, 12, 30]}), None, cutoff=T, validation_seconds=7 * DAY)
    with pytest.raises(ValueError, match="outside the catalogue"):
        window_cases(frame, index, start=T, end=T + 7 * DAY)
