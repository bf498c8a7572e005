"""Validate: run the great-expectations data contracts before any GPU time is spent."""

from __future__ import annotations

import json
from typing import NamedTuple

from flytekit import Deck, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from data_contracts.report import render_html
from data_contracts.suites import ContractConfig
from data_contracts.validate import validate_tables
from tasks.common import DATA_CACHE, DATA_RESOURCES, DatasetInfo, Table, work_dir


class ValidatedTables(NamedTuple):
    interactions: Table
    items: Table
    users: Table
    report: FlyteFile  # the validation result as a readable HTML page
    summary: str  # JSON: per table, expectations, failures, quarantine counts
    quarantine: FlyteDirectory  # one parquet file per table of quarantined rows (empty if none)


@task(cache=DATA_CACHE, retries=0, enable_deck=True, **DATA_RESOURCES)
def validate(
    interactions: Table,
    items: Table,
    users: Table,
    info: DatasetInfo,
    quarantine: bool = False,
    min_history_length: int = 1,
) -> ValidatedTables:
    """Check the three tables against their contracts.

    Fails (stopping the workflow before training) with an error naming the dataset, each failed
    expectation, the count and sample rows; with ``quarantine=True`` bad rows are written to
    parquet instead, counted, and the rest continue.
    """
    out = work_dir("validation")
    qdir = work_dir("quarantine")
    outcome = validate_tables(
        interactions,
        items,
        users,
        ContractConfig(min_history_length=min_history_length),
        dataset=info.name,
        quarantine=quarantine,
        quarantine_dir=qdir,
    )
    html = render_html(outcome)
    (out / "validation.html").write_text(html)
    Deck("Data contracts", html)
    summary = outcome.summary
    kept = {table: len(frame) for table, frame in outcome.frames.items() if frame is not None}
    print(f"data contracts for {info.name}: passed={outcome.passed}, rows kept {kept}, quarantined {outcome.quarantine_counts}")
    return ValidatedTables(
        outcome.frames["interactions"],
        outcome.frames["items"],
        outcome.frames["users"],
        FlyteFile(str(out / "validation.html")),
        json.dumps(summary),
        FlyteDirectory(str(qdir)),
    )
