"""Tiny canonical tables, valid by default, with any cell replaced on request; stand-in TVmaze
show dumps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.schema import conform

T0 = 1_600_000_000  # 2020-09-13, a plausible event time

# 4 users x 3 events over 4 items; every user has a history of exactly 3.
INTERACTIONS = {
    "user_id": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4],
    "item_id": [10, 11, 12, 10, 12, 13, 11, 12, 13, 10, 11, 13],
    "rating": [4.0, 3.5, 5.0, 1.0, 2.0, 4.5, 3.0, 0.5, 4.0, 5.0, 2.5, 3.0],
    "timestamp": [T0 + i * 60 for i in range(12)],
}
ITEMS = {
    "item_id": [10, 11, 12, 13],
    "title": ["Heat", "Lost", "Alien", "Fargo"],
    "kind": ["movie", "tv", "movie", "tv"],
    "genres": ["Crime|Drama", "Drama", "Sci-Fi|Horror", "Crime"],
    "release_date": ["1995-12-15", "2004-09-22", "1979-05-25", ""],
    "seasons": [None, 6, None, 5],
}
USERS = {
    "user_id": [1, 2, 3, 4],
    "age": [25, None, 41, 33],
    "gender": ["F", "M", "", "X"],
}


def _table(name: str, columns: dict[str, list], edits: dict[str, dict]) -> pd.DataFrame:
    columns = {column: list(values) for column, values in columns.items()}
    for column, cells in edits.items():
        for row, value in cells.items():
            columns[column][row] = value
    return conform(pd.DataFrame(columns), name)


@pytest.fixture
def make_tables():
    """Return a factory: ``make_tables(interactions={"rating": {3: 9.0}})`` -> the three frames.

    Edits replace cells of the raw columns before ``schema.conform``, so a bad value ends up in
    the frame exactly as a reader would hand it over (an unparseable column stays ``object``).
    """

    def make(interactions=None, items=None, users=None):
        return (
            _table("interactions", INTERACTIONS, interactions or {}),
            _table("items", ITEMS, items or {}),
            _table("users", USERS, users or {}),
        )

    return make


def tvmaze_show(show_id: int, name: str = "", **fields) -> dict:
    """One show entry as the TVmaze API gives it (page-1 shape, every field present)."""
    entry = {
        "id": show_id,
        "name": name or f"Show {show_id}",
        "type": "Scripted",
        "language": "English",
        "genres": ["Drama"],
        "premiered": "2014-10-20",
        "rating": {"average": 7.5},
        "network": {"id": 2, "name": "CBS", "country": {"code": "US"}},
        "webChannel": None,
        "summary": f"<p>The story of show {show_id}.</p>",
    }
    entry.update(fields)
    return entry


def write_tvmaze_pages(folder: Path, page0: list[dict], page1: list[dict]) -> tuple[Path, Path]:
    """Stand-ins for the two shared dumps: page 0 wrapped in {"shows"} and without ``network``
    (as its uploader left it), page 1 a plain array."""
    first, second = folder / "shows_page0.json", folder / "shows_page1.json"
    wrapped = [{k: v for k, v in entry.items() if k != "network"} for entry in page0]
    first.write_text(json.dumps({"shows": wrapped}))
    second.write_text(json.dumps(page1))
    return first, second
