"""Ingest: read a source (synthetic, MovieLens folder or download, generic files) into the
canonical interactions / items / users tables (data_contracts/schema.py)."""

from __future__ import annotations

import json
from typing import NamedTuple

from flytekit import task

from tasks.common import DATA_CACHE, DATA_RESOURCES, DatasetInfo, Table
from tasks.errors import user_errors


class IngestedTables(NamedTuple):
    interactions: Table
    items: Table
    users: Table
    info: DatasetInfo


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def ingest(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
) -> IngestedTables:
    """Read ``source`` ("synthetic" | "movielens" | "movielens-download" | "generic") at ``path``.

    ``ratings_path`` overrides a MovieLens folder's ratings file (gzip is read transparently);
    ``item_text_path`` adds item text: for MovieLens, plots (MeLU's movies_extrainfos.dat) or
    overviews (a TMDB movies CSV, joined through links.csv); for synthetic, TVmaze show dumps (a
    file, a comma-separated list or a folder) whose titles, genres, networks and summaries the
    synthetic TV shows take, the interactions unchanged. ``synthetic_users`` and ``seed`` size and
    seed the embedded synthetic catalogue.
    """
    from data_contracts.sources import read_source

    with user_errors():
        tables = read_source(
            source,
            path,
            ratings_path=ratings_path or None,
            item_text_path=item_text_path or None,
            synthetic_users=synthetic_users,
            seed=seed,
        )
    info = DatasetInfo(
        name=tables.name,
        source=source,
        path=path,
        checksum=tables.checksum,
        n_interactions=len(tables.interactions),
        n_items=len(tables.items),
        n_users=len(tables.users),
        files_json=json.dumps(tables.files) if tables.files else "",
    )
    print(
        f"ingested {info.name}: {info.n_interactions:,} interactions, {info.n_items:,} items, "
        f"{info.n_users:,} users (sha256 {info.checksum[:12]})"
    )
    return IngestedTables(tables.interactions, tables.items, tables.users, info)
