"""An independent implementation of the replay protocol for the popularity model, from the raw files.

It shares no code with the pipeline (no ``models``, ``pipeline`` or ``data_contracts`` import): it
reads the MovieLens files itself and applies the protocol of ``pipeline/replay.py`` as written
there, so that popularity's numbers from the product and from here must agree to 1e-6. Slow
and plain on purpose (a Python loop over cases).

- events sorted by (timestamp, row in the file); ``T_k = start + k * step``;
- training at ``T_k``: every event before ``T_k`` except, for each user whose last event before
  ``T_k`` is at or after ``T_k - validation``, that last event (the retrain's validation target);
- popularity = training events per item;
- window k's cases: each user with an event in ``[T_k, T_k + step)``, target their first one there,
  history their events before ``T_k``; slice cold_user (no history), cold_item (target item has
  no event before ``T_k``), else warm;
- candidates: every item of the item table (and any rated item it lacks), minus the history's
  items other than the target; rank = 1 + candidates other than the target whose count is >= the
  target's; NDCG@10 = 1 / log2(rank + 1) if rank <= 10, HR@10 = rank <= 10.
"""

from __future__ import annotations

import gzip
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd


def read_movielens(folder: str, ratings_path: str = "") -> tuple[pd.DataFrame, np.ndarray]:
    """(events with user, item, timestamp in file order, the item table's ids) of an ML-1M style
    ``::`` folder or an ml-latest-small style CSV folder."""
    folder_path = Path(folder)
    if (folder_path / "ratings.csv").exists() and not ratings_path:
        events = pd.read_csv(folder_path / "ratings.csv")
        events = events.rename(columns={"userId": "user", "movieId": "item"})[["user", "item", "timestamp"]]
        items = pd.read_csv(folder_path / "movies.csv")["movieId"].to_numpy(np.int64)
        return events, items
    path = Path(ratings_path) if ratings_path else folder_path / "ratings.dat"
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="latin-1") as handle:
        rows = [line.rstrip("\n").split("::") for line in handle if line.strip()]
    events = pd.DataFrame({"user": [int(r[0]) for r in rows], "item": [int(r[1]) for r in rows],
                           "timestamp": [int(r[3]) for r in rows]})  # fmt: skip
    with open(folder_path / "movies.dat", encoding="latin-1") as handle:
        items = np.array([int(line.split("::")[0]) for line in handle if line.strip()], dtype=np.int64)
    return events, items


def reference_popularity(
    events: pd.DataFrame, item_table: np.ndarray, *, start: datetime, step: timedelta, windows: int, validation: timedelta
) -> list[dict]:
    """Per window: cases per slice and NDCG@10 / HR@10 per slice of the popularity model."""
    events = events.reset_index(drop=True)
    events["row"] = np.arange(len(events))
    events = events.sort_values(["timestamp", "row"], kind="stable").reset_index(drop=True)
    catalogue = sorted(set(item_table.tolist()) | set(events["item"].tolist()))
    out = []
    for k in range(windows):
        cutoff = start.replace(tzinfo=timezone.utc) + k * step
        t, end = int(cutoff.timestamp()), int((cutoff + step).timestamp())
        since = int((cutoff - validation).timestamp())
        before = events[events["timestamp"] < t]
        last_rows = before.groupby("user").tail(1)  # sorted by (time, row): the last is each user's last
        held_out = set(last_rows.loc[last_rows["timestamp"] >= since, "row"])
        counts: dict[int, int] = {}
        for item, row in zip(before["item"], before["row"]):
            if row not in held_out:
                counts[item] = counts.get(item, 0) + 1
        seen_before = set(before["item"])
        history: dict[int, set[int]] = {}
        for user, item in zip(before["user"], before["item"]):
            history.setdefault(user, set()).add(item)
        window = events[(events["timestamp"] >= t) & (events["timestamp"] < end)]
        targets = window.groupby("user").head(1)
        scores = {"all": [], "warm": [], "cold_user": [], "cold_item": []}
        for user, target in zip(targets["user"], targets["item"]):
            mine = history.get(user, set())
            target_count = counts.get(target, 0)
            rank = 1 + sum(1 for item in catalogue if item != target and item not in mine and counts.get(item, 0) >= target_count)
            gain = 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0
            slice_name = "cold_user" if not mine else ("cold_item" if target not in seen_before else "warm")
            for name in ("all", slice_name):
                scores[name].append((gain, float(rank <= 10)))
        out.append({
            "cutoff": cutoff.isoformat(),
            "n_cases": {name: len(v) for name, v in scores.items() if v},
            "ndcg@10": {name: float(np.mean([g for g, _ in v])) for name, v in scores.items() if v},
            "hr@10": {name: float(np.mean([h for _, h in v])) for name, v in scores.items() if v},
        })  # fmt: skip
    return out
