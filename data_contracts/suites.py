"""The data contract of the canonical tables, as great-expectations suites built in code.

Each table has two suites, because a value that cannot be parsed cannot be range-checked:

- ``structure``: checked on the table exactly as given — not empty, the canonical columns in
  order, each column of its schema dtype.
- ``rows``: checked on the rows whose values parse as their schema dtype
  (``data_contracts.validate`` parses them) — non-null and unique keys, value ranges, allowed
  values, and referential integrity on the flag columns ``with_reference_flags`` derives.

A third, derived check covers history length: ``user_history_counts`` turns the interactions into
one row per user, and ``user_history_suite`` bounds its ``n_interactions`` column.

Every expectation carries a ``description`` in plain words; reports and error messages use it.
"""

from __future__ import annotations

import os

os.environ["GX_ANALYTICS_ENABLED"] = "false"  # must be set before great_expectations is imported

import functools
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from data_contracts.schema import INTERACTION_COLUMNS, ITEM_KINDS, SCHEMAS

# Unix seconds of 1990-01-01: older than any rating log we ingest (MovieLens starts in 1995).
EPOCH_1990 = int(datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp())
ONE_DAY = 86_400
USER_GENDERS = ("M", "F", "X", "")
ISO_DATE_OR_EMPTY = r"^(?:\d{4}-\d{2}-\d{2})?$"  # non-capturing: pandas warns on groups
HAS_TEXT = r"\S"  # searched: any non-blank character; "" and whitespace are "no description"
# (table, column) of a rows-suite check -> how its unexpected rows are counted in reports.
COUNTED_AS = {("items", "description"): "items without a description"}
PANDAS_SOURCE = "contracts"  # the pandas data source of gx_context()
# Interaction id column -> (the table it refers to, the derived flag column the suite checks).
REFERENCE_FLAGS = {
    "item_id": ("items", "item_id_in_items"),
    "user_id": ("users", "user_id_in_users"),
}

# Schema dtype -> the pandas dtype names great-expectations accepts for it. Integer keys may be
# nullable Int64 (what ``schema.conform`` makes of a key column with nulls) so that a missing key
# is reported once, by its not-null expectation, and not a second time as a type error.
GX_TYPE_NAMES: dict[str, list[str]] = {
    "int64": ["int64", "Int64Dtype"],
    "Int64": ["Int64Dtype"],
    "float32": ["float32"],
    "string": ["StringDtype"],
}


@dataclass(frozen=True)
class ContractConfig:
    """The tunable bounds of the contract.

    ``max_timestamp`` None means "now + 1 day", resolved each time the suites are built.
    ``known_item_ids`` / ``known_user_ids`` are the ids interactions may refer to; None skips the
    check (``validate_tables`` fills them from the items and users tables it is given).

    Item-text coverage: ``description_coverage`` True adds to the items suite an expectation that
    counts the items with no description (empty or blank) and names them; False leaves it out;
    None (default) means "when any item has a description" (``validate_tables`` resolves it with
    ``has_item_text``), so a dataset read without item text (every description "") is not checked.
    It fails when fewer than ``min_description_share`` of the items have a description. The
    default 0.0 reports the count without ever failing: coverage is a property of the side files
    (MeLU gives 3845 of 3883 ML-1M movies a plot, TMDB 3537 of 9742 ml-latest-small movies an
    overview), and a model that needs text should set its own floor. A failing coverage check is a row check like
    any other: quarantine mode sets aside the items without a description.
    """

    rating_min: float = 0.0
    rating_max: float = 5.0
    min_timestamp: int = EPOCH_1990
    max_timestamp: int | None = None
    min_history_length: int = 1  # a user with fewer interactions breaks the contract
    known_item_ids: frozenset[int] | None = None
    known_user_ids: frozenset[int] | None = None
    description_coverage: bool | None = None
    min_description_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_description_share <= 1.0:
            raise ValueError(
                f"ContractConfig.min_description_share must be in [0, 1], got {self.min_description_share}"
            )

    def resolved_max_timestamp(self) -> int:
        """Return ``max_timestamp``, or now + 1 day (unix seconds) when it is None."""
        if self.max_timestamp is not None:
            return self.max_timestamp
        return int(time.time()) + ONE_DAY


@dataclass(frozen=True)
class TableSuites:
    """The two suites of one table (see the module docstring)."""

    structure: gx.ExpectationSuite
    rows: gx.ExpectationSuite


def interactions_suites(config: ContractConfig) -> TableSuites:
    """Return the suites of the interactions table."""
    max_time = config.resolved_max_timestamp()
    rows = [
        *_not_null(INTERACTION_COLUMNS),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["user_id", "item_id", "timestamp"],
            description="no duplicate events (same user_id, item_id and timestamp)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="rating",
            min_value=config.rating_min,
            max_value=config.rating_max,
            description=f"rating between {config.rating_min} and {config.rating_max}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value=config.min_timestamp,
            max_value=max_time,
            description=f"timestamp between {_utc(config.min_timestamp)} and {_utc(max_time)}",
        ),
    ]
    for column, (table, flag) in REFERENCE_FLAGS.items():
        if _known_ids(config, column) is not None:
            rows.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=flag,
                    value_set=[True],
                    description=f"{column} exists in the {table} table",
                )
            )
    return TableSuites(structure_suite("interactions"), _suite("interactions.rows", rows))


def with_reference_flags(interactions: pd.DataFrame, config: ContractConfig) -> pd.DataFrame:
    """Return a copy of ``interactions`` plus a boolean column per configured id set.

    ``item_id_in_items`` (``user_id_in_users``) is True where the id is in ``known_item_ids``
    (``known_user_ids``) and <NA> where the id is null, so a missing id is reported once, as null.
    The rows suite checks these columns. Why not ``ExpectColumnValuesToBeInSet(item_id, ids)``:
    GX copies the value set ~100 times per run (about 0.1 ms per id), i.e. ~30 s for MovieLens-25M's
    220k ids whatever the row count; ``isin`` here is the same test, done once.
    """
    out = interactions.copy()
    for column, (_, flag) in REFERENCE_FLAGS.items():
        ids = _known_ids(config, column)
        if ids is not None:
            known = np.fromiter(ids, dtype=np.int64, count=len(ids))
            values = out[column]
            out[flag] = pd.array(values.isin(known), dtype="boolean")
            out.loc[values.isna(), flag] = pd.NA
    return out


def items_suites(config: ContractConfig) -> TableSuites:
    """Return the suites of the items table."""
    rows = [
        *_not_null({"item_id": "int64"}),
        gxe.ExpectColumnValuesToBeUnique(column="item_id", description="item_id is unique"),
        gxe.ExpectColumnValuesToBeInSet(
            column="kind",
            value_set=list(ITEM_KINDS),
            description=f"kind is one of {list(ITEM_KINDS)}",
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="release_date",
            regex=ISO_DATE_OR_EMPTY,
            description='release_date is "YYYY-MM-DD" or ""',
        ),
    ]
    if config.description_coverage:
        share = config.min_description_share
        rows.append(
            gxe.ExpectColumnValuesToMatchRegex(
                column="description",
                regex=HAS_TEXT,
                mostly=share,
                description=(
                    f"at least {100 * share:g}% of items have a description (those without are counted)"
                    if share
                    else "items have a description (those without are counted; none is required)"
                ),
            )
        )
    return TableSuites(structure_suite("items"), _suite("items.rows", rows))


def has_item_text(items: pd.DataFrame) -> bool:
    """Return True when any item has a description that is not blank."""
    if "description" not in items.columns:
        return False
    return bool(items["description"].astype("string").str.contains(HAS_TEXT, na=False).any())


def users_suites(config: ContractConfig) -> TableSuites:
    """Return the suites of the users table (which may be empty: then it is not checked)."""
    rows = [
        *_not_null({"user_id": "int64"}),
        gxe.ExpectColumnValuesToBeUnique(column="user_id", description="user_id is unique"),
        gxe.ExpectColumnValuesToBeInSet(
            column="gender",
            value_set=list(USER_GENDERS),
            description=f"gender is one of {list(USER_GENDERS)}",
        ),
    ]
    return TableSuites(structure_suite("users"), _suite("users.rows", rows))


def suites_for(config: ContractConfig) -> dict[str, TableSuites]:
    """Return ``{table name: TableSuites}`` for the three canonical tables."""
    return {
        "interactions": interactions_suites(config),
        "items": items_suites(config),
        "users": users_suites(config),
    }


def user_history_counts(user_ids: pd.Series) -> pd.DataFrame:
    """Return one row per user, columns ``user_id`` and ``n_interactions``, in first-seen order."""
    counts = user_ids.value_counts(sort=False)
    return pd.DataFrame({"user_id": counts.index.to_numpy(), "n_interactions": counts.to_numpy()})


def user_history_suite(config: ContractConfig) -> gx.ExpectationSuite:
    """Return the suite of the derived per-user frame of ``user_history_counts``."""
    return _suite(
        "user_history",
        [
            gxe.ExpectColumnValuesToBeBetween(
                column="n_interactions",
                min_value=config.min_history_length,
                description=f"every user has at least {config.min_history_length} interaction(s)",
            )
        ],
    )


@functools.cache
def gx_context():
    """Return the process-wide ephemeral GX context (suites need one to exist), built once."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm in logs
    context.data_sources.add_pandas(PANDAS_SOURCE)
    return context


def structure_suite(table: str) -> gx.ExpectationSuite:
    """Return the structure suite of ``table``: not empty (except users), columns, dtypes."""
    schema = SCHEMAS[table]
    expectations = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=list(schema), description=f"columns are exactly {list(schema)}"
        ),
        *(
            gxe.ExpectColumnValuesToBeInTypeList(
                column=column, type_list=GX_TYPE_NAMES[dtype], description=f"{column} is {dtype}"
            )
            for column, dtype in schema.items()
        ),
    ]
    if table != "users":  # a source without user data may yield an empty users table
        expectations.insert(
            0, gxe.ExpectTableRowCountToBeBetween(min_value=1, description="table is not empty")
        )
    return _suite(f"{table}.structure", expectations)


def _not_null(columns: dict[str, str]) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} is not null")
        for column in columns
    ]


def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _known_ids(config: ContractConfig, column: str) -> frozenset[int] | None:
    return config.known_item_ids if column == "item_id" else config.known_user_ids


def _suite(name: str, expectations: list[gxe.Expectation]) -> gx.ExpectationSuite:
    gx_context()
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite

