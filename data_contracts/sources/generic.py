"""The generic on-disk format (documented in ``data_contracts/FORMATS.md``).

A folder with:

- ``interactions.parquet`` or ``interactions.csv`` (``.csv.gz`` too): columns ``user_id``,
  ``item_id``, optional ``rating``, ``timestamp`` (unix seconds as an integer, or an ISO-8601
  datetime string; naive datetimes are UTC). Extra columns are ignored.
- optional ``items.{parquet,csv,csv.gz}`` and ``users.{parquet,csv,csv.gz}`` with the canonical
  columns (``data_contracts.schema``); absent optional columns are filled by ``schema.conform``.

A missing items or users table is derived from the ids in the interactions (item ``kind``
"movie", every text column ""), so referential integrity holds. An items table without a ``kind``
column gets "movie". A table that is given is never extended: ids missing from it are left for
the data contract to report.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..schema import REQUIRED_COLUMNS, SCHEMAS, conform
from . import SourceError, Tables, files_checksum

__all__ = ["read_generic", "find_table_file"]

_SUFFIXES = (".parquet", ".csv", ".csv.gz")
_SNIPPET = 80


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def find_table_file(folder: Path, table: str) -> Path | None:
    """The one file holding ``table`` in ``folder`` (None if absent; SourceError if ambiguous)."""
    found = [folder / f"{table}{suffix}" for suffix in _SUFFIXES if (folder / f"{table}{suffix}").is_file()]
    if len(found) > 1:
        raise SourceError(f"{folder}: {table} is given twice ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# CSV


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _csv_records(path: Path):
    """(line number where the record starts, record) for every non-blank record, header included."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        line = 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            yield start, record


def _csv_locate_structure_error(path: Path) -> SourceError | None:
    """Find the first record whose field count differs from the header's."""
    try:
        header_len = None
        for number, record in _csv_records(path):
            if header_len is None:
                header_len = len(record)
                continue
            if len(record) != header_len:
                return SourceError(
                    f"{path}:{number}: malformed line, expected {header_len} comma-separated fields, "
                    f"got {len(record)}: {_snippet(','.join(record))}"
                )
    except UnicodeDecodeError as exc:
        return SourceError(f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})")
    except (csv.Error, OSError, EOFError) as exc:
        return SourceError(f"{path}: cannot read CSV ({exc})")
    return None


def _csv_line_of_row(path: Path, row: int) -> tuple[int, str]:
    """(line number, text) of data row ``row`` (0-based, header excluded)."""
    for index, (number, record) in enumerate(_csv_records(path)):
        if index == row + 1:
            return number, ",".join(record)
    return -1, ""


def _csv_header(path: Path) -> list[str]:
    for _, record in _csv_records(path):
        return [c.strip() for c in record]
    raise SourceError(f"{path}: empty file, expected a header line")


def _read_csv(path: Path, text_columns: set[str]) -> pd.DataFrame:
    """Read a CSV strictly (every record has the header's field count).

    Columns in ``text_columns`` (and every column not in the schema) are read as text, so that
    "NA" or "007" stay as written; the others are typed by pyarrow's inference.
    """
    try:
        header = _csv_header(path)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (csv.Error, OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read CSV ({exc})") from None
    if len(set(header)) != len(header):
        raise SourceError(f"{path}:1: duplicate column names in header {header}")
    column_types = {c: pa.string() for c in header if c in text_columns}
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        located = _csv_locate_structure_error(path)
        if located is not None:
            raise located from None
        raise SourceError(f"{path}: cannot parse CSV ({str(exc).splitlines()[0]})") from None
    return table.to_pandas()


# --------------------------------------------------------------------------------------------
# Tables


def _read_table(path: Path, table: str) -> pd.DataFrame:
    schema = SCHEMAS[table]
    if path.name.endswith(".parquet"):
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{path}: cannot read parquet ({str(exc).splitlines()[0]})") from None
    else:
        # Text columns of the schema are read as text; so is timestamp (ints or ISO strings).
        text = {c for c, dtype in schema.items() if dtype == "string"}
        if table == "interactions":
            text.add("timestamp")
        frame = _read_csv(path, text)
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{path}: missing required column(s) {missing}; found {list(frame.columns)[:12]}"
        )
    for column, dtype in schema.items():  # empty text in a numeric column means "missing"
        if (column in frame.columns and dtype != "string"
                and not pd.api.types.is_numeric_dtype(frame[column].dtype)
                and not pd.api.types.is_datetime64_any_dtype(frame[column].dtype)):
            frame[column] = frame[column].replace("", None)
    return frame


def _where(path: Path, row: int) -> str:
    """'file:line' for a CSV data row, 'file: row N' (1-based) for parquet."""
    if path.name.endswith(".parquet"):
        return f"{path}: row {row + 1}"
    line, _ = _csv_line_of_row(path, row)
    return f"{path}:{line}"


def _integer_ids(frame: pd.DataFrame, column: str, path: Path) -> None:
    """Raise SourceError at the first value of ``column`` that is missing or not an integer."""
    values = frame[column]
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() | (numeric != numeric.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(
            f"{_where(path, row)}: {column} must be an integer, got {_snippet(str(values.iloc[row]))}"
        )


def _unix_seconds(values: pd.Series, path: Path) -> pd.Series:
    """Timestamps as int64 unix seconds from ints, integral floats, datetimes or ISO strings."""
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype("int64")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        parsed = stamps
    else:
        text = values.astype("string").str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.notna().all():
            if (numeric != numeric.round()).any():
                row = int(np.flatnonzero((numeric != numeric.round()).to_numpy())[0])
                raise SourceError(
                    f"{_where(path, row)}: timestamp must be whole unix seconds or an ISO datetime, "
                    f"got {_snippet(str(values.iloc[row]))}"
                )
            return numeric.astype("int64")
        try:
            parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        # A column mixing unix seconds and ISO strings is not supported: the numbers fail here.
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(
            f"{_where(path, row)}: timestamp must be unix seconds or an ISO datetime, "
            f"got {_snippet(str(values.iloc[row]))}"
        )
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")


def read_generic(folder: str | os.PathLike, *, name: str | None = None) -> Tables:
    """Read a folder in the generic format (see the module docstring and FORMATS.md).

    Interactions keep the file's row order. ``name`` defaults to the folder's name. Errors (missing
    folder or interactions file, a malformed CSV line, a missing required column, a non-integer id,
    an unparseable timestamp) raise SourceError naming the file and line (CSV) or row (parquet).
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceError(f"generic source folder {root} does not exist")
    if not root.is_dir():
        raise SourceError(f"generic source {root} is not a folder")
    interactions_file = find_table_file(root, "interactions")
    if interactions_file is None:
        found = sorted(p.name for p in root.iterdir())[:8]
        raise SourceError(
            f"{root} has no interactions.parquet or interactions.csv (found {found})"
        )
    items_file = find_table_file(root, "items")
    users_file = find_table_file(root, "users")

    interactions = _read_table(interactions_file, "interactions")
    for column in ("user_id", "item_id"):
        _integer_ids(interactions, column, interactions_file)
    interactions["timestamp"] = _unix_seconds(interactions["timestamp"], interactions_file)

    if items_file is not None:
        items = _read_table(items_file, "items")
        if "kind" not in items.columns:
            items["kind"] = "movie"
    else:
        items = pd.DataFrame({"item_id": np.sort(pd.unique(interactions["item_id"]))})
        items["kind"] = "movie"
    if users_file is not None:
        users = _read_table(users_file, "users")
    else:
        users = pd.DataFrame({"user_id": np.sort(pd.unique(interactions["user_id"]))})

    roles = [("interactions", interactions_file)]
    roles += [(role, f) for role, f in (("items", items_file), ("users", users_file)) if f is not None]
    source = str(root)
    return Tables(
        interactions=conform(interactions, "interactions", source),
        items=conform(items, "items", source),
        users=conform(users, "users", source),
        name=name or root.name,
        checksum=files_checksum(roles),
        files={table: str(path) for table, path in roles},
    )
