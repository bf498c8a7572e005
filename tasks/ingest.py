"""Ingest: read a source (synthetic, MovieLens folder or download, generic files) into the
canonical interactions / items / users tables (data_contracts/schema.py)."""

from __future__ import annotations

import json
from typing import NamedTuple

from flytekit import task

from pipeline.options import DataOptions
from tasks.common import DATA_CACHE, DATA_RESOURCES, DatasetInfo, Table
from tasks.errors import user_errors


class IngestedTables(NamedTuple):
    interactions: Table
    items: Table
    users: Table
    info: DatasetInfo


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def ingest(data: DataOptions) -> IngestedTables:
    """Read ``data.source`` ("synthetic" | "movielens" | "movielens-download" | "generic") at
    ``data.path`` (``pipeline.steps.read_tables``; the options in ``pipeline.options.DataOptions``)."""
    from pipeline.steps import read_tables

    with user_errors():
        tables = read_tables(data)
    info = DatasetInfo(
        name=tables.name,
        source=data.source,
        path=data.path,
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
