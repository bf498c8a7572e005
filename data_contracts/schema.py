"""The canonical tables every source is read into, and every later stage reads.

Three tables, keyed by raw ids as they appear in the source:

- interactions: one row per event, in source-file order (the split's tie-break depends on it).
- items: one row per item (movie or TV show) with its metadata and text.
- users: one row per user with demographics.

Column order and dtypes below are the contract; ``data_contracts.suites`` checks them with
great-expectations, and every reader in ``data_contracts.sources`` returns frames in exactly this
shape (``conform`` does the final casting and fills absent optional columns).
"""

from __future__ import annotations

import pandas as pd

# name -> pandas dtype. String columns use pandas' "string" dtype; missing text is "" not NA.
INTERACTION_COLUMNS: dict[str, str] = {
    "user_id": "int64",
    "item_id": "int64",
    "rating": "float32",  # explicit rating; implicit-only sources use 1.0
    "timestamp": "int64",  # unix seconds
}

ITEM_COLUMNS: dict[str, str] = {
    "item_id": "int64",
    "title": "string",
    "kind": "string",  # "movie" or "tv"
    "genres": "string",  # "|"-separated, e.g. "Action|Comedy"
    "description": "string",  # plot/summary text; "" when the source has none
    "cast": "string",  # "|"-separated names
    "creator": "string",  # director (movies) or creator (TV)
    "network": "string",  # TV network or film studio
    "release_date": "string",  # ISO "YYYY-MM-DD", or "" when unknown
    "seasons": "Int64",  # number of seasons for TV shows; <NA> for movies
}

USER_COLUMNS: dict[str, str] = {
    "user_id": "int64",
    "age": "Int64",  # <NA> when unknown
    "gender": "string",  # "M", "F", "X" or "" when unknown
    "occupation": "string",
    "region": "string",  # zip code, country or region; "" when unknown
}

ITEM_KINDS = ("movie", "tv")
GENRE_SEPARATOR = "|"

REQUIRED_COLUMNS = {
    "interactions": ("user_id", "item_id", "timestamp"),
    "items": ("item_id",),
    "users": ("user_id",),
}
SCHEMAS = {"interactions": INTERACTION_COLUMNS, "items": ITEM_COLUMNS, "users": USER_COLUMNS}


class SchemaError(ValueError):
    """A table cannot be brought into the canonical shape (missing key column, unparseable type)."""


def conform(frame: pd.DataFrame, table: str, source: str = "<frame>") -> pd.DataFrame:
    """Return ``frame`` with exactly the canonical columns of ``table``, in order.

    Optional columns that are absent are filled (text with "", numbers with <NA>, rating with 1.0);
    extra columns are dropped; row order and count are preserved. Each column is cast to its
    dtype where every value allows it: an integer column with nulls becomes nullable ``Int64``, and
    a column holding values that cannot be parsed is left as it is (``object``), so that the data
    contract, not this function, reports the offending rows. Only a missing required column raises
    ``SchemaError`` (naming the source, the table and the columns found).
    """
    schema = SCHEMAS[table]
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: {table} table is missing required column(s) {missing}; "
            f"found {list(frame.columns)}"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for column, dtype in schema.items():
        if column in frame.columns:
            values = frame[column].reset_index(drop=True)
        elif column == "rating":
            values = pd.Series(1.0, index=out.index)
        elif dtype == "string":
            values = pd.Series("", index=out.index)
        else:
            values = pd.Series(pd.NA, index=out.index)
        out[column] = _cast(values, dtype)
    return out


def _cast(values: pd.Series, dtype: str) -> pd.Series:
    if dtype == "string":
        return values.astype("string").fillna("")
    numeric = pd.to_numeric(values, errors="coerce")
    if (numeric.isna() & values.notna()).any():
        return values  # unparseable values: leave them for the contract to report row by row
    if dtype == "int64":
        if numeric.isna().any():
            return numeric.astype("Int64")
        if (numeric != numeric.round()).any():
            return values
        return numeric.astype("int64")
    if dtype == "Int64":
        if (numeric.dropna() != numeric.dropna().round()).any():
            return values
        return numeric.astype("Int64")
    return numeric.astype(dtype)
