"""A plain, self-contained HTML page of a validation outcome (for MLflow artifacts or a browser).

The page opens with the verdict in words and the counts behind it, e.g. "Validation failed: 2 of
31 expectations failed (93.5% passed) · mode: fail (the run stops)", then the suites evaluated and
the great-expectations version; then one section per table (tables with failures first), each
check with what GX observed, failed checks first; then the quarantine counts and sample rows (of
failed checks, and of passing checks that allow some rows, e.g. the items without a description).
"""

from __future__ import annotations

import math
from html import escape

import great_expectations as gx
import numpy as np

from data_contracts.validate import CheckResult, TableOutcome, ValidationOutcome, _shown

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
"""
# What each mode does with a failure, once there is one / while there is none.
MODE_MEANS = {
    "fail": ("the run stops", "a failed expectation stops the run"),
    "quarantine": (
        "failing rows are set aside, the rest continue",
        "failing rows would be set aside, the rest continue",
    ),
}
CHECK_HEADER = ["result", "suite", "expectation", "columns", "description", "observed", "detail"]


def render_html(outcome: ValidationOutcome) -> str:
    """Return a complete HTML document: the verdict, then per table its counts, checks and samples."""
    tables = sorted(outcome.tables.values(), key=lambda table: not table.failures)
    body = [
        f"<h1>Data contract: {escape(outcome.dataset)}</h1>",
        f"<p>{_verdict_line(outcome)}</p>",
        f"<p>{escape(context_line(outcome))}</p>",
        *(_table_section(table) for table in tables),
    ]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>Data contract: {escape(outcome.dataset)}</title><style>{_STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def summary_line(outcome: ValidationOutcome) -> str:
    """Return the verdict in words, e.g. "Validation failed: 2 of 31 expectations failed (93.5%
    passed) · mode: fail (the run stops)"."""
    checks = [check for table in outcome.tables.values() for check in table.checks]
    failed = sum(not check.success for check in checks)
    # Rounded down, so that a run with a failure never reads "100.0% passed".
    percent = math.floor(1000 * (len(checks) - failed) / max(len(checks), 1)) / 10
    if failed:
        counts = f"Validation failed: {failed} of {len(checks)} expectations failed ({percent:.1f}% passed)"
    else:
        counts = f"Validation passed: all {len(checks)} expectations passed ({percent:.1f}%)"
    did, would = MODE_MEANS[outcome.mode]
    return f"{counts} · mode: {outcome.mode} ({did if failed else would})"


def context_line(outcome: ValidationOutcome) -> str:
    """Return "suites: a, b, ... · great-expectations <version>"."""
    suites = list(dict.fromkeys(c.suite for t in outcome.tables.values() for c in t.checks if c.suite))
    return f"suites: {', '.join(suites) or '(none)'} · great-expectations {gx.__version__}"


def _verdict_line(outcome: ValidationOutcome) -> str:
    css = "pass" if outcome.passed else "fail"
    return f"<span class='{css}'>{escape(summary_line(outcome))}</span>"


def _table_section(table: TableOutcome) -> str:
    repeats = table.rows_duplicated
    n_failed = len(table.failures)
    verdict = f"{n_failed} of {len(table.checks)} expectations failed" if n_failed else (
        f"all {len(table.checks)} expectations passed"
    )
    counts = (
        f"<p>{_verdict(not n_failed, verdict)} &middot; rows in: {table.rows_in} &middot; "
        f"kept: {table.rows_kept} &middot; quarantined: {table.rows_quarantined}"
        + (f", of which {repeats} repeat another row" if repeats else "")
        + "</p>"
    )
    ordered = sorted(table.checks, key=lambda check: check.success)  # failed first, stable
    checks = _html_table(CHECK_HEADER, [_check_cells(check) for check in ordered])
    parts = [f"<h2>{escape(table.name)}</h2>", counts, checks]
    if table.quarantine_path is not None and table.rows_quarantined:
        parts.append(f"<p>quarantined rows written to <code>{escape(str(table.quarantine_path))}</code></p>")
    if table.quarantined_by_reason:
        parts.append("<h3>Quarantined rows by reason</h3>")
        parts.append(_html_table(["reason", "rows"], table.quarantined_by_reason.items()))
    for check in ordered:  # a passing check has a sample when ``mostly`` allowed some rows
        if check.sample:
            title = f"{check.expectation} on {', '.join(check.columns)}"
            parts.append(f"<h3>Sample: {escape(title)}</h3>")
            parts.append(_html_table(list(check.sample[0]), [s.values() for s in check.sample]))
    return "\n".join(parts)


def _check_cells(check: CheckResult) -> list:
    return [
        _verdict(check.success),
        check.suite,
        check.expectation,
        ", ".join(check.columns),
        check.description,
        observed(check),
        detail(check),
    ]


def observed(check: CheckResult) -> str:
    """What GX observed: "0 of 12 rows unexpected", "4 rows", "dtype int64", "columns a, b"."""
    if check.row_level:
        return f"{check.unexpected_count} of {check.element_count} {check.counted}"
    value = check.observed_value
    if value is None:
        return ""
    if check.expectation == "expect_table_row_count_to_be_between":
        return f"{value} rows"
    if check.expectation == "expect_table_columns_to_match_ordered_list" and isinstance(value, list):
        return "columns " + ", ".join(map(str, value))
    if check.expectation == "expect_column_values_to_be_in_type_list":
        return f"dtype {value}"
    return str(value)


def detail(check: CheckResult) -> str:
    """What passed, or what failed and where (rows, the rows they repeat, GX's error)."""
    if check.success and check.unexpected_count:  # within the share ``mostly`` allows
        shown = f"passes with {check.unexpected_count} allowed; {check.rows_label} {_shown(check.rows)}"
        return shown + ("; sample below" if check.sample else "")
    if check.success:
        if not check.row_level:
            return "as expected"
        noun = "users" if check.counted.startswith("users") else "rows"
        return f"all {check.element_count} {noun} pass" if check.element_count else f"no {noun} to check"
    parts = [check.detail] if check.detail else []
    if check.row_level:
        parts.append(f"{check.rows_label} {_shown(check.rows)}")
    if check.first_occurrences is not None:
        parts.append(f"they repeat {len(np.unique(check.first_occurrences))} row(s)")
    if check.sample:
        parts.append("sample below")
    return "; ".join(parts)


class _Html(str):
    """Markup made here, inserted unescaped (everything else is data and gets escaped)."""


def _verdict(passed: bool, text: str | None = None) -> _Html:
    css = "pass" if passed else "fail"
    return _Html(f"<span class='{css}'>{escape(text or ('passed' if passed else 'failed'))}</span>")


def _html_table(header, rows) -> str:
    """Return an HTML table; every cell but our own ``_Html`` markup is escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if isinstance(value, _Html):
        return value
    return "" if value is None else escape(str(value))
