"""A plain, self-contained HTML page of a validation outcome (for MLflow artifacts or a browser)."""

from __future__ import annotations

from html import escape

import numpy as np

from data_contracts.validate import CheckResult, TableOutcome, ValidationOutcome

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
"""


def render_html(outcome: ValidationOutcome) -> str:
    """Return a complete HTML document: a verdict, then per table its counts, checks and samples."""
    verdict = _verdict(outcome.passed)
    body = [
        f"<h1>Data contract: {escape(outcome.dataset)}</h1>",
        f"<p>{verdict} &middot; mode: {escape(outcome.mode)}</p>",
        *(_table_section(table) for table in outcome.tables.values()),
    ]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>Data contract: {escape(outcome.dataset)}</title><style>{_STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _table_section(table: TableOutcome) -> str:
    repeats = table.rows_duplicated
    counts = (
        f"<p>rows in: {table.rows_in} &middot; kept: {table.rows_kept} &middot; "
        f"quarantined: {table.rows_quarantined}"
        + (f", of which {repeats} repeat another row" if repeats else "")
        + "</p>"
    )
    checks = _html_table(
        ["expectation", "columns", "description", "result", "unexpected", "detail"],
        [_check_cells(check) for check in table.checks],
    )
    parts = [f"<h2>{escape(table.name)}</h2>", counts, checks]
    if table.quarantine_path is not None and table.rows_quarantined:
        parts.append(f"<p>quarantined rows written to <code>{escape(str(table.quarantine_path))}</code></p>")
    if table.quarantined_by_reason:
        parts.append("<h3>Quarantined rows by reason</h3>")
        parts.append(_html_table(["reason", "rows"], table.quarantined_by_reason.items()))
    for check in table.failures:
        if check.sample:
            title = f"{check.expectation} on {', '.join(check.columns)}"
            parts.append(f"<h3>Sample: {escape(title)}</h3>")
            parts.append(_html_table(list(check.sample[0]), [s.values() for s in check.sample]))
    return "\n".join(parts)


def _check_cells(check: CheckResult) -> list:
    unexpected = f"{check.unexpected_count} of {check.element_count}" if check.row_level else ""
    if unexpected and not check.success:
        unexpected += f" {check.counted}"  # e.g. "users below the minimum", "rows repeat ..."
    detail = check.detail
    if check.first_occurrences is not None:
        detail = f"they repeat {len(np.unique(check.first_occurrences))} row(s)"
    return [
        check.expectation,
        ", ".join(check.columns),
        check.description,
        _verdict(check.success),
        unexpected,
        detail,
    ]


class _Html(str):
    """Markup made here, inserted unescaped (everything else is data and gets escaped)."""


def _verdict(passed: bool) -> _Html:
    return _Html("<span class='pass'>PASS</span>" if passed else "<span class='fail'>FAIL</span>")


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
