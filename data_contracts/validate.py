"""Check the canonical tables against the data contract: fail loudly, or quarantine the bad rows.

``validate_tables`` runs, per table, the ``structure`` suite on the table as given, then parses
every column to its schema dtype (values that do not parse are named row by row), runs the ``rows``
suite on the rows that parsed, cascades removed items and users to their interactions, and finally
checks each user's history length on the interactions that are left.

Duplicate interactions (the same user_id, item_id and timestamp: the compound uniqueness
expectation of the ``rows`` suite) keep one occurrence: the duplicate check names only the repeats,
each with the row it repeats (``CheckResult.first_occurrences``), so quarantine sets aside the
repeats and keeps the first occurrence. The first occurrence is the earliest copy, in input order,
that passes every other row check (the earliest copy when none does): copies share their key
columns and so every check on them (nulls, timestamp range, known ids, cascades, history), but a
copy may still differ elsewhere, e.g. in its rating.

Two kinds of failure:

- row failures name the offending rows; in quarantine mode those rows are set aside with the
  reasons, and the rest continue;
- table failures name no row (an empty table, wrong columns, a column of the wrong dtype whose
  values all parse); they stop the run in both modes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.schema import SCHEMAS, conform
from data_contracts.suites import (
    COUNTED_AS,
    PANDAS_SOURCE,
    ContractConfig,
    gx_context,
    has_item_text,
    structure_suite,
    suites_for,
    user_history_counts,
    user_history_suite,
    with_reference_flags,
)

TABLES = ("interactions", "items", "users")
SAMPLE_SIZE = 5  # offending rows shown per failed expectation
ROWS_SHOWN = 10  # row numbers listed per failed expectation in messages
ITEM_CASCADE = "item_quarantined(item_id)"
USER_CASCADE = "user_quarantined(user_id)"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"  # its failed rows keep a first occurrence


class DataContractError(ValueError):
    """The tables break the data contract; ``outcome`` holds every check's result."""

    def __init__(self, message: str, outcome: ValidationOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class CheckResult:
    """One expectation's verdict on one table.

    ``rows`` are the offending rows' positions in the input table and ``sample`` up to
    ``SAMPLE_SIZE`` of them as dicts (position under "row"). ``unexpected_count`` of
    ``element_count`` broke it, counted as ``counted`` says (the history check counts users; its
    ``rows`` are those users' interactions, hence ``rows_label``).
    ``row_level`` is False for a failure that names no row and so cannot be quarantined.
    ``first_occurrences`` (duplicate checks only) is aligned with ``rows``: the row each repeats.
    ``suite`` names the GX suite the expectation belongs to; ``observed_value`` is what GX observed
    for a table-level expectation (row count, column list, dtype), JSON-able; None for row checks.
    """

    table: str
    expectation: str
    columns: tuple[str, ...]
    description: str
    success: bool
    unexpected_count: int = 0
    element_count: int = 0
    counted: str = "rows unexpected"
    rows_label: str = "rows"
    detail: str = ""
    sample: list[dict] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    row_level: bool = True
    first_occurrences: np.ndarray | None = field(default=None, repr=False)
    suite: str = ""
    observed_value: Any = None

    @property
    def reason(self) -> str:
        """Return the label this check gives a quarantined row, e.g. ``expect_x(rating)``."""
        return f"{self.expectation}({','.join(self.columns)})"

    def describe(self) -> str:
        """Return one readable line: table, expectation, column, what failed and a sample."""
        on = f" on {', '.join(self.columns)}" if self.columns else ""
        text = f"{self.table}: {self.expectation}{on} ({self.description})"
        if self.success and self.unexpected_count:  # within what ``mostly`` allows
            return f"{text}: passed with {self.unexpected_count} of {self.element_count} {self.counted}"
        if self.success:
            return f"{text}: passed"
        parts = [self.detail] if self.detail else []
        if self.row_level:
            parts.append(f"{self.unexpected_count} of {self.element_count} {self.counted}")
            parts.append(f"{self.rows_label} {_shown(self.rows)}")
            if self.first_occurrences is not None:
                parts.append(f"first occurrences {_shown(self.first_occurrences)}")
        if self.sample:
            parts.append(f"sample {self.sample}")
        return f"{text}: " + "; ".join(parts)

    def to_dict(self) -> dict:
        """Return a JSON-able dict of this result (without the full row list)."""
        return {
            "expectation": self.expectation,
            "columns": list(self.columns),
            "description": self.description,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "element_count": self.element_count,
            "counted": self.counted,
            "detail": self.detail,
            "sample": self.sample,
            "suite": self.suite,
            "observed_value": self.observed_value,
        }


@dataclass
class TableOutcome:
    """What validation did to one table.

    ``frame`` is the kept rows, cast to the schema dtypes and re-indexed 0..n-1 in input order
    (None when a table failure stopped the run). ``quarantine_reasons`` maps each set-aside row's
    input position to its reasons; in fail mode it says what quarantine mode would set aside.
    """

    name: str
    rows_in: int
    checks: list[CheckResult]
    quarantine_reasons: dict[int, list[str]] = field(default_factory=dict, repr=False)
    frame: pd.DataFrame | None = field(default=None, repr=False)
    quarantine_path: Path | None = None

    @property
    def failures(self) -> list[CheckResult]:
        """Return the checks that failed."""
        return [check for check in self.checks if not check.success]

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine_reasons)

    @property
    def rows_kept(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    @property
    def duplicate_of(self) -> dict[int, int]:
        """Return {repeated row: its first occurrence} (input positions) from the failed checks."""
        return {
            row: first
            for check in self.failures
            if check.first_occurrences is not None
            for row, first in zip(check.rows.tolist(), check.first_occurrences.tolist())
        }

    @property
    def rows_duplicated(self) -> int:
        """Return how many rows repeat another row (each is among the quarantined rows)."""
        return len(self.duplicate_of)

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        """Return {reason: rows}; a row with two reasons counts under both."""
        counts: dict[str, int] = {}
        for reasons in self.quarantine_reasons.values():
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
        return counts


@dataclass
class ValidationOutcome:
    """The verdict on a dataset: every check per table, the kept frames and the quarantine."""

    dataset: str
    mode: Literal["fail", "quarantine"]
    tables: dict[str, TableOutcome]

    @property
    def passed(self) -> bool:
        """Return True when every expectation held on every table."""
        return not any(table.failures for table in self.tables.values())

    @property
    def failures(self) -> dict[str, list[CheckResult]]:
        """Return {table: failed checks}."""
        return {name: table.failures for name, table in self.tables.items()}

    @property
    def frames(self) -> dict[str, pd.DataFrame | None]:
        """Return {table: kept frame}."""
        return {name: table.frame for name, table in self.tables.items()}

    @property
    def quarantine_counts(self) -> dict[str, dict[str, int]]:
        """Return {table: {reason: rows}}."""
        return {name: table.quarantined_by_reason for name, table in self.tables.items()}

    @property
    def quarantine_paths(self) -> dict[str, Path]:
        """Return {table: parquet file of its quarantined rows} (quarantine mode only)."""
        return {n: t.quarantine_path for n, t in self.tables.items() if t.quarantine_path}

    @property
    def summary(self) -> dict:
        """Return a JSON-able dict: dataset, mode, passed, and per table counts and checks."""
        return {
            "dataset": self.dataset,
            "mode": self.mode,
            "passed": self.passed,
            "tables": {
                name: {
                    "rows_in": table.rows_in,
                    "rows_kept": table.rows_kept,
                    "rows_quarantined": table.rows_quarantined,
                    "rows_duplicated": table.rows_duplicated,
                    "quarantined_by_reason": table.quarantined_by_reason,
                    "quarantine_path": table.quarantine_path and str(table.quarantine_path),
                    "checks": [check.to_dict() for check in table.checks],
                }
                for name, table in self.tables.items()
            },
        }

    def error_message(self) -> str:
        """Return the multi-line message of a failed validation, one failed expectation a line."""
        lines = [f"data contract failed for dataset {self.dataset!r}:"]
        for table in self.tables.values():
            lines += [f"  {check.describe()}" for check in table.failures]
        return "\n".join(lines)


def validate_tables(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    config: ContractConfig = ContractConfig(),
    *,
    dataset: str,
    quarantine: bool = False,
    quarantine_dir: Path | None = None,
) -> ValidationOutcome:
    """Check the three canonical tables; return the outcome with the kept frames.

    Fail mode (default) raises ``DataContractError`` on any failed expectation. Quarantine mode
    writes ``<quarantine_dir>/<table>.parquet`` for every table (the offending input rows, plus
    ``source_row``, ``quarantine_reason`` and ``duplicate_of``) and keeps the rest; of duplicated
    interactions it keeps the first occurrence (see the module docstring). It still raises on
    table failures, and when no interaction or item is left.
    """
    if quarantine and quarantine_dir is None:
        raise ValueError("quarantine=True needs a quarantine_dir")
    frames = (interactions, items, users)
    raw = {name: frame.reset_index(drop=True) for name, frame in zip(TABLES, frames)}
    outcome = ValidationOutcome(
        dataset=dataset,
        mode="quarantine" if quarantine else "fail",
        tables={name: TableOutcome(name, len(frame), []) for name, frame in raw.items()},
    )
    _check_structures(outcome, raw)
    events = _check_rows(outcome, raw, _resolved(config, raw))
    _cascade(outcome, raw, events)
    _check_history(outcome, events, config)
    for name, table in outcome.tables.items():
        table.frame = conform(raw[name].drop(index=list(table.quarantine_reasons)), name)
    if quarantine:
        _write_quarantine(outcome, raw, Path(quarantine_dir))
    _raise_unless_usable(outcome)
    return outcome


def _check_structures(outcome: ValidationOutcome, raw: dict[str, pd.DataFrame]) -> None:
    """Run every structure suite; raise when a table fails in a way no row can be blamed for."""
    for name in TABLES:
        outcome.tables[name].checks = _check_structure(name, raw[name], structure_suite(name))
    if any(not c.row_level for t in outcome.tables.values() for c in t.failures):
        raise DataContractError(outcome.error_message(), outcome)


def _check_rows(
    outcome: ValidationOutcome, raw: dict[str, pd.DataFrame], config: ContractConfig
) -> pd.DataFrame:
    """Run every rows suite on the parseable rows; return the parsed interactions (input index)."""
    suites = suites_for(config)
    parsed = {name: _parse(raw[name], name, _unparseable(outcome.tables[name])) for name in TABLES}
    parsed["interactions"] = with_reference_flags(parsed["interactions"], config)
    for name in TABLES:
        table = outcome.tables[name]
        row_checks = _run_checks(name, parsed[name], raw[name], suites[name].rows, "rows")
        for check in row_checks:
            check.counted = COUNTED_AS.get((name, ",".join(check.columns)), check.counted)
        table.checks += row_checks
        for check in table.failures:
            if check.expectation == COMPOUND_UNIQUE and check.row_level:
                _keep_first_occurrences(check, parsed[name], raw[name], table.checks)
        table.quarantine_reasons = _reasons_by_row(table.checks)
    return parsed["interactions"]


def _raise_unless_usable(outcome: ValidationOutcome) -> None:
    """Raise on any failure in fail mode; in quarantine mode only when nothing is left."""
    empty = [name for name in ("interactions", "items") if outcome.tables[name].rows_kept == 0]
    if outcome.passed or (outcome.mode == "quarantine" and not empty):
        return
    message = outcome.error_message()
    if outcome.mode == "quarantine":
        message += f"\n  no {' and no '.join(empty)} row is left after quarantine"
    raise DataContractError(message, outcome)


def _resolved(config: ContractConfig, raw: dict[str, pd.DataFrame]) -> ContractConfig:
    """Fill unset known id sets from the tables (users only when the users table has rows), and
    an unset ``description_coverage`` with whether any item has a description."""
    if config.description_coverage is None:
        config = replace(config, description_coverage=has_item_text(raw["items"]))
    if config.known_item_ids is None:
        config = replace(config, known_item_ids=_ids(raw["items"]["item_id"]))
    if config.known_user_ids is None and len(raw["users"]):
        config = replace(config, known_user_ids=_ids(raw["users"]["user_id"]))
    return config


def _ids(values: pd.Series) -> frozenset[int]:
    """Return the distinct ids among ``values`` that parse as integers."""
    numbers = _to_number(values, "int64").dropna().unique()
    return frozenset(int(v) for v in numbers)


# --- structure and parsing ---------------------------------------------------------------


def _check_structure(table: str, frame: pd.DataFrame, suite) -> list[CheckResult]:
    checks = _run_checks(table, frame, frame, suite, "structure")
    columns_check = next(c for c in checks if c.expectation.endswith("match_ordered_list"))
    if not columns_check.success:
        # Expectations on missing columns only raise; the column list says it all.
        return [c for c in checks if c.success or not c.columns]
    for check in checks:
        if check.expectation.endswith("in_type_list") and not check.success:
            _name_unparseable_rows(check, frame)
    return checks


def _name_unparseable_rows(check: CheckResult, frame: pd.DataFrame) -> None:
    """Turn a column-level type failure into a row-level one where values do not parse."""
    (column,) = check.columns
    dtype = SCHEMAS[check.table][column]
    values = frame[column]
    bad = np.flatnonzero((values.notna() & _to_number(values, dtype).isna()).to_numpy(bool))
    check.detail = f"dtype {values.dtype}, expected {dtype}"
    if dtype == "string" or len(bad) == 0:
        check.row_level = False  # every value parses: the column was just not conformed
        return
    check.row_level, check.counted = True, f"values not parseable as {dtype}"
    check.unexpected_count, check.element_count = len(bad), len(frame)
    check.rows = bad
    check.sample = _sample(frame, bad)


def _to_number(values: pd.Series, dtype: str) -> pd.Series:
    """Return ``values`` as numbers of ``dtype``'s kind; <NA> where a value does not parse."""
    if dtype in ("int64", "Int64") and pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64")  # already integers: no float round trip (ids above 2**53)
    numbers = pd.to_numeric(values, errors="coerce").astype("Float64")
    if dtype in ("int64", "Int64"):
        whole = np.isfinite(numbers) & (numbers == numbers.round())
        return numbers.where(whole.fillna(False)).astype("Int64")
    return numbers


def _unparseable(table: TableOutcome) -> dict[str, np.ndarray]:
    """Return {column: unparseable row positions} from the failed type checks."""
    return {c.columns[0]: c.rows for c in table.failures if c.expectation.endswith("in_type_list")}


def _parse(frame: pd.DataFrame, table: str, unparseable: dict[str, np.ndarray]) -> pd.DataFrame:
    """Return the rows whose every value parses, badly typed columns parsed, input index kept."""
    parsed = frame.copy()
    for column in unparseable:
        parsed[column] = _to_number(frame[column], SCHEMAS[table][column])
    bad = np.concatenate([np.empty(0, np.int64), *unparseable.values()])
    return parsed.drop(index=np.unique(bad))


# --- running suites ------------------------------------------------------------------------


@functools.cache
def _batch_definition(asset: str):
    """Return a whole-dataframe batch definition for ``asset`` in a process-wide GX context."""
    source = gx_context().data_sources.get(PANDAS_SOURCE)
    return source.add_dataframe_asset(asset).add_batch_definition_whole_dataframe("whole")


def _run_checks(
    table: str, frame: pd.DataFrame, raw: pd.DataFrame, suite, stage: str
) -> list[CheckResult]:
    """Validate ``frame`` with ``suite``; samples are taken from ``raw`` by index label."""
    batch = _batch_definition(f"{table}.{stage}").get_batch(batch_parameters={"dataframe": frame})
    results = batch.validate(suite, result_format={"result_format": "COMPLETE"}).results
    return [_check_result(table, result, raw, suite.name) for result in results]


def _check_result(table: str, result, raw: pd.DataFrame, suite: str = "") -> CheckResult:
    config = result.expectation_config
    kwargs = config.kwargs
    is_table_level = config.type.startswith("expect_table_")
    columns = () if is_table_level else tuple(kwargs.get("column_list") or [kwargs["column"]])
    check = CheckResult(
        table=table,
        expectation=config.type,
        columns=columns,
        description=config.description or "",
        success=bool(result.success),
        suite=suite,
        observed_value=_observed(result.result.get("observed_value")),
    )
    error = _exception_message(result.exception_info)
    if error:
        check.success, check.row_level, check.detail = False, False, f"raised {error}"
    elif is_table_level or "unexpected_index_list" not in result.result:
        check.row_level = False
        if not check.success:
            check.detail = _table_level_detail(config.type, result.result.get("observed_value"))
    else:
        check.rows = np.asarray(result.result["unexpected_index_list"], dtype=np.int64)
        check.unexpected_count = int(result.result["unexpected_count"])
        check.element_count = int(result.result["element_count"])
        check.sample = _sample(raw, check.rows)
    return check


def _table_level_detail(expectation: str, observed) -> str:
    if expectation == "expect_table_row_count_to_be_between" and observed == 0:
        return "table is empty (0 rows)"
    if expectation == "expect_table_columns_to_match_ordered_list":
        return f"found columns {observed}"
    return f"observed {observed}"


def _exception_message(info: dict | None) -> str | None:
    """Return the first exception message GX caught, or None (its dict may be nested by metric)."""
    if not info:
        return None
    if "raised_exception" in info:
        return info["exception_message"] if info["raised_exception"] else None
    nested = (_exception_message(v) for v in info.values() if isinstance(v, dict))
    return next((m for m in nested if m), None)


# --- quarantine bookkeeping ----------------------------------------------------------------


def _reasons_by_row(checks: list[CheckResult]) -> dict[int, list[str]]:
    reasons: dict[int, list[str]] = {}
    for check in checks:
        if not check.success and check.row_level:
            for row in check.rows.tolist():
                reasons.setdefault(row, []).append(check.reason)
    return reasons


def _keep_first_occurrences(
    check: CheckResult, parsed: pd.DataFrame, raw: pd.DataFrame, checks: list[CheckResult]
) -> None:
    """Narrow a failed compound uniqueness check to the repeats of each duplicate group.

    GX names every row of a group of rows with equal ``check.columns``. The group's first
    occurrence is its earliest row (input order) that no other failed check names, or its
    earliest row when every copy fails another check; the other rows become ``check.rows``, the
    first occurrence each repeats ``check.first_occurrences``. ``parsed`` is the checked frame.
    """
    faulty_rows = _reasons_by_row([c for c in checks if c is not check])
    rows = np.sort(check.rows)
    keys = parsed.loc[rows, list(check.columns)]
    group = keys.groupby(list(check.columns), dropna=False, sort=False).ngroup().to_numpy()
    faulty = np.isin(rows, np.fromiter(faulty_rows, dtype=np.int64, count=len(faulty_rows)))
    order = np.lexsort((rows, faulty, group))  # by group, then clean copies first, then row
    leads = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    first_of_group = np.empty(group.max() + 1, dtype=np.int64)
    first_of_group[group[leads]] = rows[leads]
    first = first_of_group[group]
    repeat = rows != first
    check.rows, check.first_occurrences = rows[repeat], first[repeat]
    check.unexpected_count = len(check.rows)
    check.counted = "rows repeat another row"
    check.sample = [
        {**sample, "duplicate_of": int(of)}
        for sample, of in zip(_sample(raw, check.rows), check.first_occurrences.tolist())
    ]


def _cascade(
    outcome: ValidationOutcome, raw: dict[str, pd.DataFrame], events: pd.DataFrame
) -> None:
    """Set aside interactions whose item or user was set aside (and no kept row has its id)."""
    interactions = outcome.tables["interactions"]
    for table, column, reason in (
        ("items", "item_id", ITEM_CASCADE),
        ("users", "user_id", USER_CASCADE),
    ):
        ids = _to_number(raw[table][column], "int64")
        dropped = ids.index.isin(list(outcome.tables[table].quarantine_reasons))
        gone = set(ids[dropped].dropna()) - set(ids[~dropped].dropna())
        for row in events.index[events[column].isin(gone)].tolist():
            interactions.quarantine_reasons.setdefault(row, []).append(reason)


def _check_history(
    outcome: ValidationOutcome, events: pd.DataFrame, config: ContractConfig
) -> None:
    """Check each user's interaction count among the interactions kept so far."""
    interactions = outcome.tables["interactions"]
    kept = events.drop(index=list(interactions.quarantine_reasons), errors="ignore")
    counts = user_history_counts(kept["user_id"].dropna())
    (check,) = _run_checks("interactions", counts, counts, user_history_suite(config), "history")
    check.counted = "users below the minimum"
    if not check.success:
        short_users = counts.loc[check.rows, "user_id"]
        check.sample = [{k: v for k, v in s.items() if k != "row"} for s in check.sample]
        check.rows = kept.index[kept["user_id"].isin(short_users)].to_numpy(np.int64)
        check.rows_label = "their interaction rows"
        for row in check.rows.tolist():
            interactions.quarantine_reasons.setdefault(row, []).append(check.reason)
    interactions.checks.append(check)


def _write_quarantine(
    outcome: ValidationOutcome, raw: dict[str, pd.DataFrame], directory: Path
) -> None:
    """Write every table's set-aside rows, with ``source_row``, ``quarantine_reason`` and
    ``duplicate_of`` (the source_row of the first occurrence a row repeats; <NA> for the rest)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in outcome.tables.items():
        rows = sorted(table.quarantine_reasons)
        duplicate_of = table.duplicate_of
        out = raw[name].iloc[rows].copy()
        for column in out.columns:
            if out[column].dtype == object:  # mixed values that failed to parse: keep their text
                out[column] = out[column].astype("string")
        out["source_row"] = np.asarray(rows, dtype=np.int64)
        out["quarantine_reason"] = pd.array(
            ["; ".join(table.quarantine_reasons[r]) for r in rows], dtype="string"
        )
        out["duplicate_of"] = pd.array([duplicate_of.get(r) for r in rows], dtype="Int64")
        table.quarantine_path = directory / f"{name}.parquet"
        pq.write_table(pa.Table.from_pandas(out, preserve_index=False), table.quarantine_path)


# --- formatting ----------------------------------------------------------------------------


def _sample(frame: pd.DataFrame, rows: np.ndarray) -> list[dict]:
    """Return up to SAMPLE_SIZE rows of ``frame`` (by index label) as JSON-able dicts."""
    picked = frame.loc[rows[:SAMPLE_SIZE]]
    return [
        {"row": int(label), **{k: _jsonable(v) for k, v in record.items()}}
        for label, record in zip(picked.index, picked.to_dict("records"))
    ]


def _observed(value):
    """Return GX's observed value as plain JSON (lists element-wise; anything else as text)."""
    if isinstance(value, (list, tuple)):
        return [_observed(v) for v in value]
    value = _jsonable(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _jsonable(value):
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _shown(rows: np.ndarray) -> str:
    shown = ", ".join(str(r) for r in rows[:ROWS_SHOWN].tolist())
    return f"[{shown}{', ...' if len(rows) > ROWS_SHOWN else ''}]"
