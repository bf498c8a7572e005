"""Split: DESIGN.md's leave-one-out protocol with cold-user and cold-item holdouts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import NamedTuple

from flytekit import task

from pipeline.options import DataOptions
from tasks.common import DATA_CACHE, DATA_RESOURCES, Table
from tasks.errors import user_errors


class SplitTables(NamedTuple):
    train: Table  # user_idx, item_idx, rating, timestamp
    valid_cases: Table  # the split's validation cases: training stops early on these
    selection_cases: Table  # the held-out slices' validation cases: choices read them beside valid_cases
    test_cases: Table  # test cases: only the evaluator sees them
    items: Table  # the catalogue in index space (item_idx 1..n_items): every item of the item table
    users: Table  # users in index space (user_idx 1..n_users) with demographics
    summary: str  # JSON of models.split.SplitSummary: every input row accounted for


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def split(interactions: Table, items: Table, users: Table, data: DataOptions) -> SplitTables:
    """Per-user chronological leave-one-out (``pipeline.steps.split_tables``): ``data.split_mode``
    "standard" or "pipeline" (+ holdouts, seeded by ``data.split_seed``)."""
    from pipeline.steps import split_tables

    with user_errors():
        parts = split_tables(interactions, items, users, data)
    counts = {k: v for k, v in asdict(parts.summary).items() if not isinstance(v, list)}
    print("split: " + json.dumps(counts) + f"; {len(parts.selection_cases):,} validation cases of the held-out slices")
    return SplitTables(
        parts.data.train, parts.data.stage("valid"), parts.selection_cases, parts.test_cases,
        parts.data.items, parts.data.users, json.dumps(asdict(parts.summary)),
    )  # fmt: skip
