"""validate_tables: clean data passes; each kind of bad row is named, counted and quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.report import render_html
from data_contracts.schema import SCHEMAS
from data_contracts.suites import ContractConfig
from data_contracts.validate import DataContractError, validate_tables

FUTURE = 4_000_000_000  # year 2096
SHARED_ML100K = Path("/work/shared/data/ml-100k")
DUPLICATE = "expect_compound_columns_to_be_unique(user_id,item_id,timestamp)"


def _error(tables, config=ContractConfig()) -> DataContractError:
    with pytest.raises(DataContractError) as caught:
        validate_tables(*tables, config, dataset="tiny-set")
    return caught.value


def _failed_line(error: DataContractError, prefix: str) -> str:
    """Return the one message line that starts with ``prefix`` (after the indent)."""
    (line,) = [t.strip() for t in str(error).splitlines() if t.strip().startswith(prefix)]
    return line


def _quarantine(tables, tmp_path, config=ContractConfig(), dataset="tiny-set"):
    return validate_tables(
        *tables, config, dataset=dataset, quarantine=True, quarantine_dir=tmp_path
    )


def _with_copies(tables, rows: list[int], **edits):
    """Return ``tables`` with copies of interaction ``rows`` appended, in that order.

    ``edits`` ({column: {copy number: value}}) change cells of the copies, e.g. a rating.
    """
    interactions, *rest = tables
    copies = interactions.iloc[rows].reset_index(drop=True)
    for column, cells in edits.items():
        for copy, value in cells.items():
            copies.loc[copy, column] = value
    return (pd.concat([interactions, copies], ignore_index=True), *rest)


def _quarantined(outcome, table="interactions") -> pd.DataFrame:
    return pd.read_parquet(outcome.quarantine_paths[table]).set_index("source_row")


# --- fail mode ---------------------------------------------------------------------------


def test_clean_dataset_passes_and_keeps_every_row(make_tables):
    outcome = validate_tables(*make_tables(), dataset="tiny-set")
    assert outcome.passed
    assert {name: t.rows_kept for name, t in outcome.tables.items()} == {
        "interactions": 12, "items": 4, "users": 4,
    }
    assert outcome.quarantine_paths == {}


def test_kept_frames_have_schema_dtypes(make_tables):
    outcome = validate_tables(*make_tables(), dataset="tiny-set")
    for name, frame in outcome.frames.items():
        assert {c: str(t) for c, t in frame.dtypes.items()} == SCHEMAS[name]


def test_error_names_dataset_and_one_failed_expectation_per_line(make_tables):
    error = _error(make_tables(interactions={"rating": {2: 9.0}}, items={"kind": {1: "book"}}))
    lines = str(error).splitlines()
    assert lines[0] == "data contract failed for dataset 'tiny-set':"
    assert len(lines) == 3
    assert "Traceback" not in str(error)


def test_error_carries_the_outcome(make_tables):
    error = _error(make_tables(interactions={"rating": {2: 9.0}}))
    assert isinstance(error, ValueError)
    assert not error.outcome.passed
    (failure,) = error.outcome.failures["interactions"]
    assert (failure.expectation, failure.columns, failure.rows.tolist()) == (
        "expect_column_values_to_be_between", ("rating",), [2],
    )


def test_null_user_id_fails_not_null(make_tables):
    error = _error(make_tables(interactions={"user_id": {3: None, 7: None}}))
    line = _failed_line(error, "interactions: expect_column_values_to_not_be_null on user_id")
    assert "2 of 12 rows unexpected; rows [3, 7]" in line


def test_out_of_range_ratings_fail_with_exact_count_and_sample(make_tables):
    error = _error(make_tables(interactions={"rating": {1: 7.5, 5: -1.0}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_between on rating")
    assert "2 of 12 rows unexpected; rows [1, 5]" in line
    assert "'rating': 7.5" in line and "'row': 5" in line


def test_unknown_item_fails_reference_to_items(make_tables):
    error = _error(make_tables(interactions={"item_id": {4: 99}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_in_set on item_id_in")
    assert "(item_id exists in the items table)" in line
    assert "1 of 12 rows unexpected; rows [4]" in line


def test_unknown_user_fails_reference_to_users(make_tables):
    error = _error(make_tables(interactions={"user_id": {0: 77, 1: 77, 2: 77}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_in_set on user_id_in")
    assert "3 of 12 rows unexpected; rows [0, 1, 2]" in line


def test_empty_users_table_skips_the_user_reference_check(make_tables):
    interactions, items, users = make_tables()
    outcome = validate_tables(interactions, items, users.iloc[:0], dataset="tiny-set")
    assert outcome.passed
    checks = outcome.tables["interactions"].checks
    checked = [c.columns for c in checks if c.expectation.endswith("in_set")]
    assert checked == [("item_id_in_items",)]


def test_duplicate_events_fail_compound_uniqueness(make_tables):
    duplicate = {"user_id": {1: 1}, "item_id": {1: 10}, "timestamp": {1: 1_600_000_000}}
    error = _error(make_tables(interactions=duplicate))
    line = _failed_line(
        error, "interactions: expect_compound_columns_to_be_unique on user_id, item_id, timestamp"
    )
    assert "1 of 12 rows repeat another row; rows [1]; first occurrences [0]" in line


def test_duplicate_events_fail_naming_every_repeat_and_its_first_occurrence(make_tables):
    error = _error(_with_copies(make_tables(), [2, 5, 2]))
    line = _failed_line(error, "interactions: expect_compound_columns_to_be_unique")
    assert "3 of 15 rows repeat another row; rows [12, 13, 14]; first occurrences [2, 5, 2]" in line
    assert "'row': 14" in line and "'duplicate_of': 2" in line  # the sample shows the pairs
    assert error.outcome.tables["interactions"].duplicate_of == {12: 2, 13: 5, 14: 2}


def test_non_numeric_user_id_is_reported_row_by_row(make_tables):
    error = _error(make_tables(interactions={"user_id": {4: "abc", 9: "n/a"}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_in_type_list on user_id")
    assert "dtype object, expected int64; 2 of 12 values not parseable as int64" in line
    assert "rows [4, 9]" in line
    assert "'user_id': 'abc'" in line


def test_fractional_item_id_is_reported_row_by_row(make_tables):
    error = _error(make_tables(interactions={"item_id": {6: 11.5}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_in_type_list on item_id")
    assert "dtype float64, expected int64; 1 of 12 values not parseable as int64; rows [6]" in line


def test_unparseable_rows_are_not_checked_again_by_value_expectations(make_tables):
    error = _error(make_tables(interactions={"user_id": {4: "abc"}}))
    assert [f.expectation for f in error.outcome.failures["interactions"]] == [
        "expect_column_values_to_be_in_type_list"
    ]


def test_implausible_timestamps_fail(make_tables):
    error = _error(make_tables(interactions={"timestamp": {0: 0, 11: FUTURE}}))
    line = _failed_line(error, "interactions: expect_column_values_to_be_between on timestamp")
    assert "2 of 12 rows unexpected; rows [0, 11]" in line


def test_empty_interactions_table_fails_as_empty(make_tables):
    interactions, items, users = make_tables()
    error = _error((interactions.iloc[:0], items, users))
    assert _failed_line(error, "interactions: expect_table_row_count_to_be_between").endswith(
        "table is empty (0 rows)"
    )


def test_empty_items_table_fails_as_empty(make_tables):
    interactions, items, users = make_tables()
    error = _error((interactions, items.iloc[:0], users))
    line = _failed_line(error, "items: expect_table_row_count_to_be_between")
    assert line.endswith("(table is not empty): table is empty (0 rows)")


def test_user_below_min_history_fails(make_tables):
    dropped = make_tables()[0].drop(index=[9, 10])  # user 4 keeps 1 of 3 events
    error = _error((dropped, *make_tables()[1:]), ContractConfig(min_history_length=2))
    line = _failed_line(error, "interactions: expect_column_values_to_be_between on n_interactions")
    assert "1 of 4 users below the minimum; their interaction rows [9]" in line
    assert "{'user_id': 4, 'n_interactions': 1}" in line


def test_unknown_item_kind_fails(make_tables):
    error = _error(make_tables(items={"kind": {2: "book"}}))
    assert "1 of 4 rows unexpected; rows [2]" in _failed_line(
        error, "items: expect_column_values_to_be_in_set on kind"
    )


def test_duplicate_item_id_fails_uniqueness(make_tables):
    error = _error(make_tables(items={"item_id": {3: 10}}))
    line = _failed_line(error, "items: expect_column_values_to_be_unique on item_id")
    assert "2 of 4 rows unexpected; rows [0, 3]" in line


def test_missing_column_fails_the_table_before_row_checks(make_tables):
    interactions, items, users = make_tables()
    error = _error((interactions.drop(columns="rating"), items, users))
    assert [f.expectation for f in error.outcome.failures["interactions"]] == [
        "expect_table_columns_to_match_ordered_list"
    ]


def test_summary_is_json_serialisable(make_tables):
    error = _error(make_tables(interactions={"user_id": {4: "abc"}, "rating": {1: None}}))
    summary = json.loads(json.dumps(error.outcome.summary))
    assert summary["dataset"] == "tiny-set" and summary["passed"] is False


# --- quarantine mode ----------------------------------------------------------------------

MIXED_FAULTS = {
    "interactions": {"rating": {1: 9.0}, "user_id": {4: "abc"}, "item_id": {6: 99}},
    "items": {"kind": {3: "book"}},  # item 13: its interactions 5, 8 and 11 follow it out
    "users": {"gender": {0: "female"}},  # user 1: interactions 0 and 2 follow (1 is out already)
}


def test_quarantine_counts_per_table_and_reason(make_tables, tmp_path):
    outcome = _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    assert not outcome.passed
    assert outcome.quarantine_counts == {
        "interactions": {
            "expect_column_values_to_be_in_type_list(user_id)": 1,
            "expect_column_values_to_be_between(rating)": 1,
            "expect_column_values_to_be_in_set(item_id_in_items)": 1,
            "item_quarantined(item_id)": 3,
            "user_quarantined(user_id)": 3,
        },
        "items": {"expect_column_values_to_be_in_set(kind)": 1},
        "users": {"expect_column_values_to_be_in_set(gender)": 1},
    }


def test_quarantine_conserves_every_row(make_tables, tmp_path):
    outcome = _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    for name, table in outcome.tables.items():
        quarantined = pd.read_parquet(outcome.quarantine_paths[name])
        assert table.rows_in == table.rows_kept + table.rows_quarantined, name
        assert len(quarantined) == table.rows_quarantined, name
    rows = {name: (t.rows_kept, t.rows_quarantined) for name, t in outcome.tables.items()}
    assert rows == {"interactions": (4, 8), "items": (3, 1), "users": (3, 1)}


def test_quarantine_file_holds_exactly_the_bad_rows_with_reasons(make_tables, tmp_path):
    _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    quarantined = pd.read_parquet(tmp_path / "interactions.parquet")
    assert dict(zip(quarantined["source_row"], quarantined["quarantine_reason"])) == {
        0: "user_quarantined(user_id)",
        1: "expect_column_values_to_be_between(rating); user_quarantined(user_id)",
        2: "user_quarantined(user_id)",
        4: "expect_column_values_to_be_in_type_list(user_id)",
        5: "item_quarantined(item_id)",
        6: "expect_column_values_to_be_in_set(item_id_in_items)",
        8: "item_quarantined(item_id)",
        11: "item_quarantined(item_id)",
    }


def test_quarantine_file_keeps_the_original_values(make_tables, tmp_path):
    _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    quarantined = pd.read_parquet(tmp_path / "interactions.parquet").set_index("source_row")
    assert list(quarantined.columns) == [
        *SCHEMAS["interactions"], "quarantine_reason", "duplicate_of",
    ]
    assert quarantined["duplicate_of"].isna().all()  # no duplicates among MIXED_FAULTS
    assert quarantined.loc[4, "user_id"] == "abc"  # unparseable column stored as text
    assert quarantined.loc[1, "rating"] == 9.0
    items = pd.read_parquet(tmp_path / "items.parquet")
    assert items[["source_row", "item_id", "kind"]].values.tolist() == [[3, 13, "book"]]


def test_kept_frames_are_cast_and_reindexed_in_input_order(make_tables, tmp_path):
    outcome = _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    kept = outcome.frames["interactions"]
    assert list(kept.index) == [0, 1, 2, 3]
    assert kept["timestamp"].tolist() == [1_600_000_000 + 60 * row for row in (3, 7, 9, 10)]
    assert {c: str(t) for c, t in kept.dtypes.items()} == SCHEMAS["interactions"]


def test_kept_rows_pass_the_contract_again(make_tables, tmp_path):
    outcome = _quarantine(make_tables(**MIXED_FAULTS), tmp_path)
    again = validate_tables(*outcome.frames.values(), dataset="tiny-set")
    assert again.passed


def test_quarantine_sets_aside_the_interactions_of_short_histories(make_tables, tmp_path):
    tables = make_tables(interactions={"rating": {9: 9.0}})  # user 4 keeps 2 valid events
    outcome = _quarantine(tables, tmp_path, ContractConfig(min_history_length=3))
    assert outcome.quarantine_counts["interactions"] == {
        "expect_column_values_to_be_between(rating)": 1,
        "expect_column_values_to_be_between(n_interactions)": 2,
    }
    assert sorted(outcome.frames["interactions"]["user_id"].unique()) == [1, 2, 3]


def test_quarantine_sets_aside_every_copy_of_a_duplicated_item_id(make_tables, tmp_path):
    outcome = _quarantine(make_tables(items={"item_id": {3: 10}}), tmp_path)
    assert outcome.tables["items"].rows_quarantined == 2
    # Item 10 (rows 0, 3, 9) is gone; item 13 never existed in the items table (rows 5, 8, 11).
    assert outcome.quarantine_counts["interactions"] == {
        "expect_column_values_to_be_in_set(item_id_in_items)": 3,
        "item_quarantined(item_id)": 3,
    }


def test_quarantine_keeps_the_first_occurrence_of_duplicate_events(make_tables, tmp_path):
    tables = _with_copies(make_tables(), [2, 5, 2])  # rows 12, 13, 14
    outcome = _quarantine(tables, tmp_path)
    table = outcome.tables["interactions"]
    assert (table.rows_in, table.rows_kept, table.rows_quarantined) == (15, 12, 3)
    assert table.rows_in == table.rows_kept + table.rows_quarantined
    assert outcome.quarantine_counts["interactions"] == {DUPLICATE: 3}
    quarantined = _quarantined(outcome)
    assert quarantined["duplicate_of"].dtype == "Int64"
    assert quarantined["duplicate_of"].to_dict() == {12: 2, 13: 5, 14: 2}
    assert set(quarantined["quarantine_reason"]) == {DUPLICATE}
    pd.testing.assert_frame_equal(outcome.frames["interactions"], make_tables()[0])
    assert validate_tables(*outcome.frames.values(), dataset="tiny-set").passed


def test_duplicate_of_is_missing_for_rows_quarantined_for_other_reasons(make_tables, tmp_path):
    tables = _with_copies(make_tables(interactions={"rating": {7: 9.0}}), [3], rating={0: 9.5})
    outcome = _quarantine(tables, tmp_path)
    quarantined = _quarantined(outcome)
    rating = "expect_column_values_to_be_between(rating)"
    assert quarantined["quarantine_reason"].to_dict() == {
        7: rating, 12: f"{rating}; {DUPLICATE}",  # a bad repeat: both reasons, counted once
    }
    assert quarantined["duplicate_of"].tolist() == [pd.NA, 3]
    assert outcome.tables["interactions"].rows_kept == 11


def test_a_clean_copy_is_kept_when_the_first_copy_breaks_another_check(make_tables, tmp_path):
    # Copies agree on user_id, item_id and timestamp but may not on the rating: row 1 is out of
    # range, so its clean copy (row 12) is the occurrence kept, and row 1 repeats it.
    tables = _with_copies(make_tables(interactions={"rating": {1: 9.0}}), [1, 1], rating={0: 3.5})
    outcome = _quarantine(tables, tmp_path)
    quarantined = _quarantined(outcome)
    assert quarantined["quarantine_reason"].to_dict() == {
        1: f"expect_column_values_to_be_between(rating); {DUPLICATE}",
        13: f"expect_column_values_to_be_between(rating); {DUPLICATE}",
    }
    assert quarantined["duplicate_of"].to_dict() == {1: 12, 13: 12}
    kept = outcome.frames["interactions"]
    assert (len(kept), kept.loc[11, "rating"]) == (12, 3.5)


def test_copies_of_an_unknown_item_event_are_all_quarantined_once(make_tables, tmp_path):
    tables = _with_copies(make_tables(interactions={"item_id": {4: 99}}), [4, 4])
    outcome = _quarantine(tables, tmp_path)
    table = outcome.tables["interactions"]
    unknown = "expect_column_values_to_be_in_set(item_id_in_items)"
    assert outcome.quarantine_counts["interactions"] == {DUPLICATE: 2, unknown: 3}
    assert (table.rows_in, table.rows_kept, table.rows_quarantined) == (14, 11, 3)
    assert _quarantined(outcome)["duplicate_of"].tolist() == [pd.NA, 4, 4]


def test_repeats_do_not_count_towards_the_history_length(make_tables, tmp_path):
    interactions, items, users = make_tables()
    tables = _with_copies((interactions.drop(index=[9, 10]), items, users), [9])  # user 4: 1 + 1
    outcome = _quarantine(tables, tmp_path, ContractConfig(min_history_length=2))
    quarantined = _quarantined(outcome)
    assert quarantined["quarantine_reason"].to_dict() == {
        9: "expect_column_values_to_be_between(n_interactions)",
        10: DUPLICATE,
    }
    assert quarantined["duplicate_of"].tolist() == [pd.NA, 9]
    table = outcome.tables["interactions"]
    assert (table.rows_in, table.rows_kept, table.rows_quarantined) == (11, 9, 2)


def test_summary_counts_duplicates(make_tables, tmp_path):
    outcome = _quarantine(_with_copies(make_tables(), [0, 0]), tmp_path)
    counts = json.loads(json.dumps(outcome.summary))["tables"]["interactions"]
    keys = ("rows_in", "rows_kept", "rows_quarantined", "rows_duplicated")
    assert [counts[k] for k in keys] == [14, 12, 2, 2]


@pytest.mark.skipif(
    not SHARED_ML100K.is_dir(), reason="needs the shared ml-100k copy in /work/shared/data"
)
def test_ml100k_with_ten_appended_duplicates_quarantines_exactly_the_ten(tmp_path):
    from data_contracts.sources.movielens import read_movielens

    source = read_movielens(SHARED_ML100K, progress=False)
    picked = [0, 1, 2, 999, 12_345, 50_000, 77_777, 99_997, 99_998, 99_999]
    tables = _with_copies((source.interactions, source.items, source.users), picked)
    outcome = _quarantine(tables, tmp_path / "quarantine", dataset="ml-100k")
    table = outcome.tables["interactions"]
    assert (table.rows_in, table.rows_kept, table.rows_quarantined) == (100_010, 100_000, 10)
    assert outcome.quarantine_counts["interactions"] == {DUPLICATE: 10}
    quarantined = _quarantined(outcome)
    assert quarantined["duplicate_of"].to_dict() == dict(zip(range(100_000, 100_010), picked))
    pd.testing.assert_frame_equal(outcome.frames["interactions"], source.interactions)

    error = _error(tables)
    line = _failed_line(error, "interactions: expect_compound_columns_to_be_unique")
    assert "10 of 100010 rows repeat another row" in line
    assert f"rows {list(range(100_000, 100_010))}" in line
    assert f"first occurrences {picked}" in line


def test_clean_quarantine_run_writes_empty_files(make_tables, tmp_path):
    outcome = _quarantine(make_tables(), tmp_path)
    assert outcome.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "interactions.parquet", "items.parquet", "users.parquet",
    ]
    assert all(len(pd.read_parquet(p)) == 0 for p in outcome.quarantine_paths.values())


def test_quarantine_still_fails_on_an_empty_table(make_tables, tmp_path):
    interactions, items, users = make_tables()
    with pytest.raises(DataContractError, match="table is empty"):
        _quarantine((interactions.iloc[:0], items, users), tmp_path)


def test_quarantine_fails_when_no_interaction_is_left(make_tables, tmp_path):
    tables = make_tables(interactions={"rating": {row: 9.0 for row in range(12)}})
    with pytest.raises(DataContractError, match="no interactions row is left after quarantine"):
        _quarantine(tables, tmp_path)


def test_quarantine_needs_a_directory(make_tables):
    with pytest.raises(ValueError, match="quarantine_dir"):
        validate_tables(*make_tables(), dataset="tiny-set", quarantine=True)


# --- report ------------------------------------------------------------------------------


def test_html_report_lists_expectations_verdicts_and_counts(make_tables, tmp_path):
    page = render_html(_quarantine(make_tables(**MIXED_FAULTS), tmp_path))
    assert page.startswith("<!DOCTYPE html>")
    assert "expect_column_values_to_be_between" in page
    assert "expect_compound_columns_to_be_unique" in page
    assert "<span class='fail'>failed</span>" in page and "<span class='pass'>passed</span>" in page
    assert "PASS" not in page and "FAIL" not in page
    assert "quarantined: 8" in page
    assert "female" in page  # the sample row of the failed gender check


def test_html_report_counts_the_repeats_not_their_first_occurrences(make_tables, tmp_path):
    page = render_html(_quarantine(_with_copies(make_tables(), [2, 5, 2]), tmp_path))
    assert "kept: 12 &middot; quarantined: 3, of which 3 repeat another row" in page
    assert "3 of 15 rows repeat another row" in page
    assert "they repeat 2 row(s)" in page
    assert "<th>duplicate_of</th>" in page  # the sample pairs each repeat with its first


def test_html_report_escapes_data(make_tables, tmp_path):
    tables = make_tables(items={"kind": {0: "<script>x</script>"}})
    page = render_html(_quarantine(tables, tmp_path))
    assert "<script>" not in page and "&lt;script&gt;" in page


# --- item-text coverage ----------------------------------------------------------------------

COVERAGE = "expect_column_values_to_match_regex"


def _with_descriptions(tables, descriptions: list[str]):
    interactions, items, users = tables
    items = items.assign(description=pd.array(descriptions, dtype="string"))
    return interactions, items, users


def _coverage_check(outcome):
    checks = outcome.tables["items"].checks
    found = [c for c in checks if c.expectation == COVERAGE and c.columns == ("description",)]
    return found[0] if found else None


def test_items_without_a_description_are_counted_and_named(make_tables):
    tables = _with_descriptions(make_tables(), ["A heist.", "", "Aliens.", "   "])
    outcome = validate_tables(*tables, dataset="tiny-set")
    check = _coverage_check(outcome)
    assert outcome.passed and check.success  # the default share 0.0 reports, never fails
    assert (check.unexpected_count, check.element_count) == (2, 4)
    assert check.rows.tolist() == [1, 3]
    assert [s["item_id"] for s in check.sample] == [11, 13]
    assert check.counted == "items without a description"
    assert check.describe().endswith("passed with 2 of 4 items without a description")
    assert outcome.tables["items"].rows_kept == 4  # counted, not dropped
    summary = outcome.summary["tables"]["items"]["checks"]
    counts = [c["unexpected_count"] for c in summary if c["expectation"] == COVERAGE]
    assert counts == [0, 2]  # release_date's regex check, then the coverage check


def test_a_dataset_without_item_text_is_not_checked_for_coverage(make_tables):
    outcome = validate_tables(*make_tables(), dataset="tiny-set")  # every description is ""
    assert outcome.passed and _coverage_check(outcome) is None
    blank = validate_tables(*_with_descriptions(make_tables(), [" "] * 4), dataset="tiny-set")
    assert blank.passed and _coverage_check(blank) is None


def test_coverage_can_be_forced_on_a_text_less_dataset(make_tables):
    outcome = validate_tables(*make_tables(), ContractConfig(description_coverage=True), dataset="tiny-set")
    assert _coverage_check(outcome).unexpected_count == 4 and outcome.passed


def test_coverage_below_the_minimum_share_fails_naming_the_count(make_tables):
    tables = _with_descriptions(make_tables(), ["A heist.", "", "Aliens.", "Snow."])
    config = ContractConfig(min_description_share=0.9)
    error = _error(tables, config)
    line = _failed_line(error, f"items: {COVERAGE} on description")
    assert "at least 90% of items have a description" in line
    assert "1 of 4 items without a description" in line and "rows [1]" in line
    assert validate_tables(*tables, ContractConfig(min_description_share=0.75), dataset="tiny-set").passed


def test_quarantine_sets_aside_the_items_without_text_when_coverage_fails(make_tables, tmp_path):
    tables = _with_descriptions(make_tables(), ["A heist.", "", "Aliens.", "Snow."])
    outcome = _quarantine(tables, tmp_path, ContractConfig(min_description_share=0.9))
    reason = f"{COVERAGE}(description)"
    assert outcome.tables["items"].quarantined_by_reason == {reason: 1}
    assert outcome.tables["interactions"].quarantined_by_reason == {"item_quarantined(item_id)": 3}
