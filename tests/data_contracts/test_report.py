"""The HTML report: the verdict in words with its counts, suites and GX version, what GX observed
on every check (passing ones too), failed checks (and tables) first, no empty detail cell."""

from __future__ import annotations

import re
from html import unescape

import great_expectations as gx
import pytest

from data_contracts.report import context_line, render_html, summary_line
from data_contracts.validate import (
    CheckResult,
    DataContractError,
    TableOutcome,
    ValidationOutcome,
    validate_tables,
)
from tests.data_contracts.conftest import INTERACTIONS, ITEMS, USERS, _table


def _tables(interactions=None, items=None, users=None):
    return (
        _table("interactions", INTERACTIONS, interactions or {}),
        _table("items", ITEMS, items or {}),
        _table("users", USERS, users or {}),
    )


@pytest.fixture(scope="module")
def failed():
    """Fail mode, two failed expectations (a rating out of range, an unknown item kind)."""
    with pytest.raises(DataContractError) as caught:
        validate_tables(*_tables({"rating": {2: 9.0}}, {"kind": {1: "book"}}), dataset="tiny-set")
    return caught.value.outcome


@pytest.fixture(scope="module")
def passed():
    return validate_tables(*_tables(), dataset="tiny-set")


def _n_checks(outcome) -> int:
    return sum(len(table.checks) for table in outcome.tables.values())


def _check_rows(page: str, table: str) -> list[list[str]]:
    """The cells (text) of the checks table of section ``table``, header row excluded."""
    section = page.split(f"<h2>{table}</h2>")[1].split("<h2>")[0]
    checks = section.split("<table>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", checks)[1:]
    return [[unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", r)] for r in rows]


def test_summary_line_says_failed_with_counts_percent_and_what_the_mode_does(failed):
    n = _n_checks(failed)
    percent = int(1000 * (n - 2) / n) / 10
    line = (
        f"Validation failed: 2 of {n} expectations failed ({percent:.1f}% passed)"
        " · mode: fail (the run stops)"
    )
    assert summary_line(failed) == line
    assert f"<span class='fail'>{line}</span>" in render_html(failed)


def test_summary_line_says_passed(passed):
    n = _n_checks(passed)
    line = (
        f"Validation passed: all {n} expectations passed (100.0%)"
        " · mode: fail (a failed expectation stops the run)"
    )
    assert summary_line(passed) == line
    page = render_html(passed)
    assert f"<span class='pass'>{line}</span>" in page
    assert "PASS" not in page and "FAIL" not in page


def test_success_percent_never_rounds_a_failure_up_to_100():
    checks = [CheckResult("t", "expect_x", ("c",), "x", success=i > 0) for i in range(1000)]
    outcome = ValidationOutcome("d", "quarantine", {"t": TableOutcome("t", 1, checks)})
    assert summary_line(outcome) == (
        "Validation failed: 1 of 1000 expectations failed (99.9% passed)"
        " · mode: quarantine (failing rows are set aside, the rest continue)"
    )


def test_header_names_every_suite_and_the_gx_version(passed):
    suites = (
        "interactions.structure, interactions.rows, user_history, items.structure, items.rows, "
        "users.structure, users.rows"
    )
    assert context_line(passed) == f"suites: {suites} · great-expectations {gx.__version__}"
    assert context_line(passed) in render_html(passed)


def test_passing_checks_show_what_gx_observed(passed):
    rows = {(r[2], r[3]): r for r in _check_rows(render_html(passed), "interactions")}
    assert rows[("expect_table_row_count_to_be_between", "")][5] == "12 rows"
    assert rows[("expect_table_columns_to_match_ordered_list", "")][5] == (
        "columns user_id, item_id, rating, timestamp"
    )
    assert rows[("expect_column_values_to_be_in_type_list", "rating")][5] == "dtype float32"
    assert rows[("expect_column_values_to_be_between", "rating")][5:] == [
        "0 of 12 rows unexpected", "all 12 rows pass",
    ]
    assert rows[("expect_column_values_to_be_between", "n_interactions")][5:] == [
        "0 of 4 users below the minimum", "all 4 users pass",
    ]


def test_check_results_carry_suite_and_observed_value(passed):
    checks = {c.expectation: c for c in passed.tables["items"].checks if not c.columns}
    count = checks["expect_table_row_count_to_be_between"]
    assert (count.suite, count.observed_value) == ("items.structure", 4)
    summary = passed.summary["tables"]["items"]["checks"][0]
    assert (summary["suite"], summary["observed_value"]) == ("items.structure", 4)


def test_failed_checks_and_tables_come_first_with_a_detail(failed):
    page = render_html(failed)
    order = [page.index(f"<h2>{name}</h2>") for name in ("interactions", "items", "users")]
    assert order == sorted(order)  # both failing tables keep their order, before users
    items = _check_rows(page, "items")
    assert [r[0] for r in items] == ["failed"] + ["passed"] * (len(items) - 1)
    assert items[0][1:4] == ["items.rows", "expect_column_values_to_be_in_set", "kind"]
    assert items[0][5:] == ["1 of 4 rows unexpected", "rows [1]; sample below"]
    assert "1 of 16 expectations failed" in page.split("<h2>items</h2>")[1].split("<table>")[0]


def test_only_failing_table_goes_first():
    with pytest.raises(DataContractError) as caught:
        validate_tables(*_tables(users={"gender": {0: "female"}}), dataset="tiny-set")
    page = render_html(caught.value.outcome)
    assert page.index("<h2>users</h2>") < page.index("<h2>interactions</h2>")


def test_no_check_has_an_empty_detail_or_observed_cell(failed, passed):
    for outcome in (failed, passed):
        page = render_html(outcome)
        for table in outcome.tables:
            for row in _check_rows(page, table):
                assert row[5] and row[6], row


def test_report_shows_how_many_items_have_no_description_and_which():
    items = _table("items", {**ITEMS, "description": ["A heist.", "", "Aliens.", ""]}, {})
    page = render_html(validate_tables(*_tables()[:1], items, _tables()[2], dataset="tiny-set"))
    coverage = ["expect_column_values_to_match_regex", "description"]
    (row,) = [r for r in _check_rows(page, "items") if r[2:4] == coverage]
    assert row[0] == "passed"
    assert row[5:] == [
        "2 of 4 items without a description", "passes with 2 allowed; rows [1, 3]; sample below",
    ]
    sample = page.split(f"<h3>Sample: {coverage[0]} on description</h3>")[1].split("</table>")[0]
    assert "Lost" in sample and "Fargo" in sample and "Heat" not in sample
