"""The data a scheduled retrain may read: every interaction strictly before its cutoff.

The window is a pure function of the tables and the cutoff, never of the wall clock (a Flyte
schedule binds its kickoff time to the workflow input with ``kickoff_time_input_arg``;
``current_context().execution_date`` is the time the task ran, flyte#4191). A naive datetime is
read as UTC. The item and user tables stay whole: the catalogue is the item table, and an item
nobody rated before the cutoff is a candidate like any other.

The first building block of scheduled retraining (issue 26); the retraining workflow, drift,
warm starts and the replay are not built yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if not isinstance(moment, datetime):
        raise TypeError(f"cutoff must be a datetime, got {type(moment).__name__} {moment!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def cutoff_seconds(cutoff: datetime) -> int:
    """The cutoff in unix seconds (the unit of the canonical ``timestamp`` column); a cutoff with
    a fraction of a second rounds up, so "strictly before the cutoff" stays exact in seconds."""
    utc = as_utc(cutoff)
    whole = int(utc.timestamp())
    return whole + (1 if utc.timestamp() > whole else 0)


def before_cutoff(tables, cutoff: datetime):
    """``tables`` (``data_contracts.sources.Tables``) with only the interactions whose timestamp
    is before ``cutoff``, in their source order; the checksum names the window: the source's
    checksum, the cutoff and the kept rows' content."""
    limit = cutoff_seconds(cutoff)
    kept = tables.interactions[tables.interactions["timestamp"].to_numpy() < limit].reset_index(drop=True)
    digest = hashlib.sha256(f"{tables.checksum}\nbefore {limit}\n".encode())
    digest.update(pd.util.hash_pandas_object(kept, index=False).to_numpy().tobytes())
    name = f"{tables.name}[<{as_utc(cutoff).strftime('%Y-%m-%dT%H:%M:%SZ')}]"
    return replace(tables, interactions=kept, name=name, checksum=digest.hexdigest())
