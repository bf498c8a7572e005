"""The suites hold the expectations the contract promises, with the configured bounds."""

from __future__ import annotations

import pandas as pd
import pytest

from data_contracts import suites
from data_contracts.schema import SCHEMAS
from data_contracts.suites import (
    EPOCH_1990,
    ContractConfig,
    interactions_suites,
    items_suites,
    structure_suite,
    user_history_counts,
    user_history_suite,
    users_suites,
    with_reference_flags,
)


def _kwargs_by_type_and_column(suite) -> dict[tuple[str, str], dict]:
    out = {}
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        column = kwargs.get("column") or ",".join(kwargs.get("column_list") or [])
        out[(expectation.expectation_type, column)] = kwargs
    return out


def test_interactions_rows_suite_checks_nulls_ranges_duplicates_and_references():
    config = ContractConfig(known_item_ids=frozenset({10, 11}), known_user_ids=frozenset({1}))
    checks = _kwargs_by_type_and_column(interactions_suites(config).rows)
    for column in ("user_id", "item_id", "rating", "timestamp"):
        assert ("expect_column_values_to_not_be_null", column) in checks
    assert ("expect_compound_columns_to_be_unique", "user_id,item_id,timestamp") in checks
    rating = checks[("expect_column_values_to_be_between", "rating")]
    assert (rating["min_value"], rating["max_value"]) == (0.0, 5.0)
    assert checks[("expect_column_values_to_be_in_set", "item_id_in_items")]["value_set"] == [True]
    assert checks[("expect_column_values_to_be_in_set", "user_id_in_users")]["value_set"] == [True]


def test_reference_flags_mark_known_unknown_and_missing_ids():
    config = ContractConfig(known_item_ids=frozenset({10, 11}), known_user_ids=frozenset({1}))
    events = pd.DataFrame({"user_id": pd.array([1, 2, None], "Int64"), "item_id": [10, 12, 11]})
    flagged = with_reference_flags(events, config)
    assert flagged["item_id_in_items"].tolist() == [True, False, True]
    assert flagged["user_id_in_users"].tolist() == [True, False, pd.NA]
    assert list(events.columns) == ["user_id", "item_id"]  # the input is left alone


def test_reference_checks_are_left_out_without_known_ids():
    checks = _kwargs_by_type_and_column(interactions_suites(ContractConfig()).rows)
    assert not [key for key in checks if key[0] == "expect_column_values_to_be_in_set"]


def test_timestamp_bounds_run_from_1990_to_a_day_after_build_time(monkeypatch):
    monkeypatch.setattr(suites.time, "time", lambda: 2_000_000_000.5)
    checks = _kwargs_by_type_and_column(interactions_suites(ContractConfig()).rows)
    bounds = checks[("expect_column_values_to_be_between", "timestamp")]
    assert (bounds["min_value"], bounds["max_value"]) == (EPOCH_1990, 2_000_000_000 + 86_400)
    assert EPOCH_1990 == 631_152_000


def test_structure_suite_types_every_schema_column():
    for table, schema in SCHEMAS.items():
        checks = _kwargs_by_type_and_column(structure_suite(table))
        assert ("expect_table_columns_to_match_ordered_list", ",".join(schema)) in checks
        typed = {col for kind, col in checks if kind == "expect_column_values_to_be_in_type_list"}
        assert typed == set(schema)


def test_structure_suite_requires_rows_except_in_users():
    def requires_rows(table):
        types = {e.expectation_type for e in structure_suite(table).expectations}
        return "expect_table_row_count_to_be_between" in types

    assert requires_rows("interactions") and requires_rows("items")
    assert not requires_rows("users")


def test_items_suite_keeps_ids_unique_and_kinds_to_movie_and_tv():
    checks = _kwargs_by_type_and_column(items_suites(ContractConfig()).rows)
    assert ("expect_column_values_to_be_unique", "item_id") in checks
    assert checks[("expect_column_values_to_be_in_set", "kind")]["value_set"] == ["movie", "tv"]


def test_users_suite_keeps_ids_unique():
    checks = _kwargs_by_type_and_column(users_suites(ContractConfig()).rows)
    assert ("expect_column_values_to_be_unique", "user_id") in checks
    assert ("expect_column_values_to_not_be_null", "user_id") in checks


def test_user_history_counts_gives_one_row_per_user_in_first_seen_order():
    counts = user_history_counts(pd.Series([7, 3, 7, 7, 3, 9]))
    assert counts.to_dict("list") == {"user_id": [7, 3, 9], "n_interactions": [3, 2, 1]}


def test_user_history_suite_floors_n_interactions_at_min_history_length():
    (expectation,) = user_history_suite(ContractConfig(min_history_length=5)).expectations
    kwargs = expectation.configuration.kwargs
    assert (expectation.expectation_type, kwargs["column"], kwargs["min_value"]) == (
        "expect_column_values_to_be_between",
        "n_interactions",
        5,
    )


def test_items_suite_counts_missing_descriptions_only_when_asked():
    def coverage(config):
        checks = _kwargs_by_type_and_column(items_suites(config).rows)
        return checks.get(("expect_column_values_to_match_regex", "description"))

    assert coverage(ContractConfig()) is None  # None: validate_tables decides from the items
    assert coverage(ContractConfig(description_coverage=False)) is None
    reporting = coverage(ContractConfig(description_coverage=True))
    assert (reporting["regex"], reporting["mostly"]) == (r"\S", 0.0)
    strict = coverage(ContractConfig(description_coverage=True, min_description_share=0.9))
    assert strict["mostly"] == 0.9


def test_coverage_description_says_what_is_counted_and_required():
    def described(share):
        suite = items_suites(ContractConfig(description_coverage=True, min_description_share=share)).rows
        return suite.expectations[-1].description

    assert described(0.0) == "items have a description (those without are counted; none is required)"
    assert described(0.95) == "at least 95% of items have a description (those without are counted)"


def test_min_description_share_must_be_a_share():
    with pytest.raises(ValueError, match="min_description_share must be in \\[0, 1\\], got 1.5"):
        ContractConfig(min_description_share=1.5)


def test_has_item_text_ignores_blank_descriptions():
    assert not suites.has_item_text(pd.DataFrame({"description": pd.array(["", "  ", "\n"], dtype="string")}))
    assert suites.has_item_text(pd.DataFrame({"description": pd.array(["", "A plot."], dtype="string")}))
    assert not suites.has_item_text(pd.DataFrame({"item_id": [1]}))
