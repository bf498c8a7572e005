"""Validate: run the great-expectations data contracts before any GPU time is spent."""

from __future__ import annotations

import json
from typing import NamedTuple

from flytekit import Deck, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from pipeline.options import DataOptions
from tasks.common import DATA_CACHE, DATA_RESOURCES, DatasetInfo, Table, work_dir
from tasks.errors import UserError
from tasks.local_state import quarantine_dir


class ValidatedTables(NamedTuple):
    interactions: Table
    items: Table
    users: Table
    report: FlyteFile  # the validation result as a readable HTML page
    summary: str  # JSON: per table, expectations, failures, quarantine counts and files
    quarantine: FlyteDirectory  # one parquet file per table of quarantined rows (empty if none)


@task(cache=DATA_CACHE, retries=0, enable_deck=True, **DATA_RESOURCES)
def validate(
    interactions: Table,
    items: Table,
    users: Table,
    info: DatasetInfo,
    data: DataOptions,
) -> ValidatedTables:
    """Check the three tables against their contracts.

    Fails (stopping the workflow before training) with an error naming the dataset, the source
    file of each table, each failed expectation, the count and sample rows; with
    ``data.quarantine`` bad rows are written to parquet instead (in a folder that outlives the
    run, printed and returned), counted, and the rest continue.
    """
    from data_contracts.report import render_html
    from data_contracts.sources import Tables
    from data_contracts.validate import DataContractError
    from pipeline.steps import check_contracts
    from tasks.decks import own_deck

    own_deck()
    out = work_dir("validation")
    quarantine = data.quarantine
    qdir = quarantine_dir(info.name, info.checksum) if quarantine else work_dir("quarantine")
    tables = Tables(name=info.name, interactions=interactions, items=items, users=users, checksum=info.checksum)
    try:
        outcome = check_contracts(tables, data, quarantine_dir=qdir)
    except DataContractError as exc:
        raise UserError(f"{exc}\n{_sources_line(info)}") from exc
    html = render_html(outcome)
    (out / "validation.html").write_text(html)
    Deck("Data contracts", html)
    kept = {table: len(frame) for table, frame in outcome.frames.items() if frame is not None}
    quarantined = {table: t.rows_quarantined for table, t in outcome.tables.items()}
    print(f"data contracts for {info.name}: passed={outcome.passed}, rows kept {kept}, quarantined {quarantined}")
    if quarantine and any(quarantined.values()):
        print(f"quarantined rows: {qdir} ({', '.join(f'{t}.parquet' for t, n in quarantined.items() if n)})")
    return ValidatedTables(
        outcome.frames["interactions"],
        outcome.frames["items"],
        outcome.frames["users"],
        FlyteFile(str(out / "validation.html")),
        json.dumps(outcome.summary),
        FlyteDirectory(str(qdir)),
    )


def _sources_line(info: DatasetInfo) -> str:
    """Which file each table came from (row numbers count that file's data rows from 0)."""
    files = json.loads(info.files_json or "{}")
    if not files:
        return f"  source: {info.source} {info.path}".rstrip()
    listed = ", ".join(f"{table} from {path}" for table, path in files.items())
    return f"  read {listed} (rows are data rows of that file, counted from 0)"
