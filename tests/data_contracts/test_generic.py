"""The generic format: interactions (+ optional items/users) as CSV or parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data_contracts.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from data_contracts.sources import SourceError, read_source
from data_contracts.sources.generic import read_generic


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame[columns].astype(object).itertuples(index=False)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "log"


def test_csv_interactions_are_the_exact_rows_in_file_order(folder):
    write(folder / "interactions.csv", "user_id,item_id,rating,timestamp\n2,10,4.5,1700000000\n1,11,3,1600000000\n")
    tables = read_generic(folder)
    assert rows(tables.interactions, list(INTERACTION_COLUMNS)) == [
        (2, 10, 4.5, 1700000000),
        (1, 11, 3.0, 1600000000),
    ]
    assert tables.name == "log"
    assert [str(d) for d in tables.interactions.dtypes] == list(INTERACTION_COLUMNS.values())


def test_missing_items_and_users_are_derived_from_ids(folder):
    write(folder / "interactions.csv", "user_id,item_id,timestamp\n5,30,1\n4,20,2\n5,20,3\n")
    tables = read_generic(folder)
    assert rows(tables.items, ["item_id", "title", "kind", "genres"]) == [(20, "", "movie", ""), (30, "", "movie", "")]
    assert tables.users["user_id"].tolist() == [4, 5]
    assert tables.users["age"].isna().all()
    assert list(tables.items.columns) == list(ITEM_COLUMNS) and list(tables.users.columns) == list(USER_COLUMNS)


def test_missing_rating_column_means_implicit_one(folder):
    write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    assert read_generic(folder).interactions["rating"].tolist() == [1.0]


def test_iso_timestamps_become_unix_seconds(folder):
    write(
        folder / "interactions.csv",
        "user_id,item_id,timestamp\n1,2,2021-01-01T00:00:00Z\n1,3,2021-01-01 01:00:00\n1,4,2021-01-01T02:00:00+01:00\n",
    )
    assert read_generic(folder).interactions["timestamp"].tolist() == [1609459200, 1609462800, 1609462800]


def test_parquet_tables_with_datetime_timestamps_and_partial_item_columns(folder):
    folder.mkdir()
    pd.DataFrame({
        "user_id": [1, 2],
        "item_id": [7, 8],
        "timestamp": pd.to_datetime(["2021-01-01", "2021-01-02"]),
        "session": ["a", "b"],  # extra columns are ignored
    }).to_parquet(folder / "interactions.parquet")
    pd.DataFrame({"item_id": [7, 8], "title": ["Seven", "Eight"], "kind": ["movie", "tv"], "seasons": [None, 2]}).to_parquet(
        folder / "items.parquet"
    )
    tables = read_generic(folder)
    assert tables.interactions["timestamp"].tolist() == [1609459200, 1609545600]
    assert rows(tables.items, ["item_id", "title", "kind", "description", "seasons"]) == [
        (7, "Seven", "movie", "", pd.NA),
        (8, "Eight", "tv", "", 2),
    ]
    assert str(tables.items["seasons"].dtype) == "Int64"


def test_csv_items_and_users_keep_text_as_written(folder):
    write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    write(folder / "items.csv", 'item_id,title,genres,release_date\n2,NA,"Drama|Comedy",2001-02-03\n')
    write(folder / "users.csv", "user_id,age,gender,region\n1,,F,007\n")
    tables = read_generic(folder)
    assert rows(tables.items, ["item_id", "title", "kind", "genres", "release_date"]) == [
        (2, "NA", "movie", "Drama|Comedy", "2001-02-03")
    ]
    assert rows(tables.users, list(USER_COLUMNS)) == [(1, pd.NA, "F", "", "007")]


def test_gzipped_csv_is_read(folder):
    import gzip

    folder.mkdir()
    (folder / "interactions.csv.gz").write_bytes(gzip.compress(b"user_id,item_id,timestamp\n1,2,3\n"))
    assert len(read_generic(folder).interactions) == 1


def test_checksum_follows_file_contents(folder):
    path = write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    first = read_generic(folder).checksum
    assert read_generic(folder).checksum == first
    path.write_text("user_id,item_id,timestamp\n1,2,4\n")
    assert read_generic(folder).checksum != first


def test_read_source_dispatches_generic(folder):
    write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    assert len(read_source("generic", str(folder), synthetic_users=1000, seed=0).interactions) == 1
    with pytest.raises(SourceError, match="does not take item_text_path"):
        read_source("generic", str(folder), item_text_path="plots.dat")


# --- errors -------------------------------------------------------------------------------------


def message(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_malformed_csv_line_names_file_and_line(folder):
    path = write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n\n4,5\n6,7,8\n")
    with pytest.raises(SourceError) as exc:
        read_generic(folder)
    assert message(exc).startswith(f"{path}:4: malformed line") and "'4,5'" in message(exc)


def test_non_integer_id_names_file_and_line(folder):
    path = write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\nu9,2,3\n")
    with pytest.raises(SourceError) as exc:
        read_generic(folder)
    assert message(exc).startswith(f"{path}:3: user_id must be an integer") and "u9" in message(exc)


def test_unparseable_timestamp_names_file_and_line(folder):
    path = write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,2021-01-01\n1,3,last tuesday\n")
    with pytest.raises(SourceError) as exc:
        read_generic(folder)
    assert message(exc).startswith(f"{path}:3: timestamp") and "last tuesday" in message(exc)


def test_missing_required_column_names_file(folder):
    path = write(folder / "interactions.csv", "user,item_id,timestamp\n1,2,3\n")
    with pytest.raises(SourceError, match=r"missing required column\(s\) \['user_id'\]") as exc:
        read_generic(folder)
    assert str(path) in message(exc)


def test_folder_without_interactions_is_a_source_error(folder):
    write(folder / "items.csv", "item_id\n1\n")
    with pytest.raises(SourceError, match="has no interactions.parquet or interactions.csv"):
        read_generic(folder)


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_generic(tmp_path / "nope")


def test_interactions_given_twice_is_ambiguous(folder):
    write(folder / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}).to_parquet(folder / "interactions.parquet")
    with pytest.raises(SourceError, match="given twice"):
        read_generic(folder)
