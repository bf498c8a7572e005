"""The data window of a scheduled retrain: a pure function of the cutoff, naive read as UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from data_contracts.sources import Tables
from pipeline.window import as_utc, before_cutoff, cutoff_seconds

T = int(datetime(2000, 11, 6, tzinfo=timezone.utc).timestamp())


def tables() -> Tables:
    interactions = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 13],
                                 "timestamp": [T - 60, T - 1, T, T + 1, T - 5], "rating": [4.0] * 5})  # fmt: skip
    items = pd.DataFrame({"item_id": [10, 11, 12, 13, 14]})
    users = pd.DataFrame({"user_id": [1, 2, 3]})
    return Tables(interactions=interactions, items=items, users=users, name="tiny", checksum="abc")


def test_the_window_keeps_the_interactions_strictly_before_the_cutoff_in_source_order():
    window = before_cutoff(tables(), datetime(2000, 11, 6, tzinfo=timezone.utc))
    assert window.interactions["timestamp"].tolist() == [T - 60, T - 1, T - 5]
    assert len(window.items) == 5 and len(window.users) == 3  # the catalogue stays the item table
    assert window.name == "tiny[<2000-11-06T00:00:00Z]"


def test_a_naive_cutoff_is_utc_and_an_aware_one_is_converted():
    naive = datetime(2000, 11, 6)
    paris = datetime(2000, 11, 6, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(naive) == as_utc(paris) == datetime(2000, 11, 6, tzinfo=timezone.utc)
    assert before_cutoff(tables(), naive).checksum == before_cutoff(tables(), paris).checksum
    assert cutoff_seconds(datetime(2000, 11, 6, 0, 0, 0, 500_000)) == T + 1  # T itself is not before it
    with pytest.raises(TypeError, match="cutoff must be a datetime"):
        before_cutoff(tables(), "2000-11-06")


def test_the_window_is_a_pure_function_of_the_cutoff():
    cutoff = datetime(2000, 11, 6, 0, 0, 1)
    first, again = before_cutoff(tables(), cutoff), before_cutoff(tables(), cutoff)
    assert first.checksum == again.checksum and first.interactions.equals(again.interactions)
    later = before_cutoff(tables(), cutoff + timedelta(seconds=1))
    assert later.checksum != first.checksum and len(later.interactions) == len(first.interactions) + 1
    same_rows = before_cutoff(tables(), datetime(2000, 11, 5, 23, 59, 59, 900_000))
    assert same_rows.interactions.equals(before_cutoff(tables(), datetime(2000, 11, 6)).interactions)
