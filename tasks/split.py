"""Split: DESIGN.md's leave-one-out protocol with cold-user and cold-item holdouts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import NamedTuple

from flytekit import task

from tasks.common import DATA_CACHE, DATA_RESOURCES, Table


class SplitTables(NamedTuple):
    train: Table  # user_idx, item_idx, rating, timestamp
    valid_cases: Table  # validation cases with their input histories: training chooses on these
    test_cases: Table  # test cases: only the evaluator (and the ensemble's member scores) see them
    items: Table  # the catalogue in index space (item_idx 1..n_items) with metadata and text
    users: Table  # users in index space (user_idx 1..n_users) with demographics
    summary: str  # JSON of models.split.SplitSummary: every input row accounted for


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def split(
    interactions: Table, items: Table, users: Table, mode: str = "pipeline", seed: int = 0
) -> SplitTables:
    """Per-user chronological leave-one-out; ``mode`` is "standard" or "pipeline" (+ holdouts)."""
    from models.split import leave_one_out_split

    data, summary = leave_one_out_split(interactions, items, users, mode=mode, seed=seed)
    counts = {k: v for k, v in asdict(summary).items() if not isinstance(v, list)}
    print("split: " + json.dumps(counts))
    return SplitTables(
        data.train, data.stage("valid"), data.stage("test"), data.items, data.users, json.dumps(asdict(summary))
    )
