"""Plain-Python use of the model families: no Flyte, no MLflow, one DataFrame of interactions.

```python
import pandas as pd
from models.api import split, train

interactions = pd.read_csv("ratings.csv")  # columns user_id, item_id, timestamp[, rating]
data = split(interactions)  # standard leave-one-out split: no cold users or items held out
model = train("sasrec", data, dim=32, max_epochs=5)  # any family of models.registry.FAMILIES
print(model.recommend([1, 2, 3], k=10))  # top-10 raw item ids, the history excluded
print(model.evaluate(data)["all"])  # test-case metrics: hr@10, ndcg@10, mrr, ...
```

- ``split`` is the standard leave-one-out split (``models/split.py``): per user with >= 3 interactions the
  last is the test target and the one before the validation target. Unlike the workflow's
  default (``split_mode`` "pipeline"), it holds out no cold users or items unless asked
  (``mode="pipeline"``). ``items`` / ``users`` tables are optional; ids are integers.
- ``train`` fits one family with early stopping on the validation cases (never the test cases);
  keyword arguments are fields of the family's config dataclass. Side inputs are built here:
  the interaction graph from the training part; item text embeddings only from an ``items``
  table with text (``split(interactions, items=...)``).
- ``Recommender.recommend`` takes raw item ids (oldest first) and returns raw item ids; ids the
  model never saw are ignored. The user is scored as unknown: the history is the whole input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from models.data import HistoryBatch, SplitData, left_pad
from models.interface import FitReport

REQUIRED = ("user_id", "item_id", "timestamp")


def split(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    *,
    mode: str = "standard",
    seed: int = 0,
    **holdouts: Any,
) -> SplitData:
    """Leave-one-out split of ``interactions`` (row order breaks timestamp ties), in index space.

    ``holdouts`` go to ``models.split.leave_one_out_split`` (cold-user/item fractions, pipeline mode).
    """
    from models.split import leave_one_out_split

    frame = _table(interactions, "interactions", REQUIRED)
    events = pd.DataFrame({c: _ids(frame[c], c) for c in ("user_id", "item_id")})
    events["timestamp"] = _seconds(frame["timestamp"])
    if "rating" in frame.columns:
        ratings = pd.to_numeric(frame["rating"], errors="coerce")
        bad = np.flatnonzero(ratings.isna().to_numpy())
        if len(bad):
            raise ValueError(f"rating must be a number; row {bad[0]} has {frame['rating'].iloc[bad[0]]!r}")
        events["rating"] = ratings.to_numpy(np.float32)
    if items is not None and len(items.columns):
        items = _table(items, "items", ("item_id",)).assign(item_id=lambda t: _ids(t["item_id"], "item_id"))
    if users is not None and len(users.columns):
        users = _table(users, "users", ("user_id",)).assign(user_id=lambda t: _ids(t["user_id"], "user_id"))
    data, _ = leave_one_out_split(events, items, users, mode=mode, seed=seed, **holdouts)
    return data


def train(
    family: str,
    data: SplitData,
    *,
    device: str = "auto",
    progress: bool = False,
    text_encoder: str = "all-MiniLM-L6-v2",
    **config: Any,
) -> "Recommender":
    """Fit ``family`` on ``data``'s training part, choosing epochs on its validation cases.

    ``config``: fields of the family's config dataclass (e.g. ``dim``, ``max_epochs``, ``seed``).
    ``text_encoder``: sentence-transformers name or path, for families that read item text.
    """
    from models.device import pick_device
    from models.registry import ConfigError, FAMILIES, trainable_families
    from models.content.item_text import MissingItemText
    from pipeline.steps import build_side_inputs, fit_family

    if family not in trainable_families():
        raise ConfigError(f"unknown model {family!r}; known: {', '.join(trainable_families())}")
    training = data.training_data()
    if not len(training.valid_cases):
        raise ValueError("no validation case: train needs users with >= 3 interactions to choose epochs")
    torch_device = pick_device(device)
    try:
        side_inputs = build_side_inputs(FAMILIES[family].side_inputs, training, text_encoder=text_encoder, device=str(torch_device))
    except MissingItemText as error:
        raise ValueError(f"{family} needs item text: pass split(interactions, items=...) with an items table; {error}") from None
    fitted = fit_family(family, training, config, side_inputs, device=torch_device, progress=progress)
    model, report = fitted.model, fitted.report
    model.eval()
    item_ids = np.zeros(data.n_items + 1, dtype=np.int64)
    item_ids[data.items["item_idx"].to_numpy(np.int64)] = data.items["item_id"].to_numpy(np.int64)
    return Recommender(family, model, item_ids, report, torch_device)


@dataclass
class Recommender:
    """A trained model with its catalogue: raw item ids in, raw item ids out."""

    family: str
    model: torch.nn.Module
    item_ids: np.ndarray  # raw item id of each item_idx (entry 0 is padding)
    report: FitReport  # epochs, best epoch, best validation metrics
    device: torch.device

    def __post_init__(self) -> None:
        self._index_of = {int(raw): idx for idx, raw in enumerate(self.item_ids.tolist()) if idx}

    def recommend(
        self, history: Sequence[int], k: int = 10, timestamps: Sequence[int] | None = None
    ) -> list[int]:
        """The ``k`` best raw item ids after ``history`` (raw ids, oldest first), none of them in it.

        ``timestamps`` (unix seconds, aligned with ``history``) matter to time-aware families only.
        """
        history = _raw_ids(history)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        times = [0] * len(history) if timestamps is None else _raw_ids(timestamps, "timestamps")
        if len(times) != len(history):
            raise ValueError(f"timestamps has {len(times)} values, history {len(history)}")
        known = [(self._index_of[i], t) for i, t in zip(history, times) if i in self._index_of]
        items = [i for i, _ in known]
        width = self.model.history_length or max(1, len(items))
        batch = HistoryBatch(
            items=left_pad([items], width),
            timestamps=left_pad([[t for _, t in known]], width),
            users=torch.zeros(1, dtype=torch.long),
        ).to(self.device)
        n_candidates = len(self.item_ids) - 1 - len(set(items))
        with torch.inference_mode():
            scores = self.model.score(batch).float()[0].cpu()
            scores[0] = float("-inf")  # padding
            scores[items] = float("-inf")  # the history
            top = torch.topk(scores, k=min(int(k), n_candidates)).indices
        return [int(i) for i in self.item_ids[top.numpy()]]

    def evaluate(self, data: SplitData, ks: Sequence[int] = (10, 20)) -> dict[str, dict[str, float]]:
        """Metrics of ``data``'s test cases per slice ("all", "warm", ..., "activity:<bucket>")."""
        from pipeline.steps import evaluate

        ids = data.items.sort_values("item_idx")["item_id"].to_numpy(np.int64)
        if not np.array_equal(ids, self.item_ids[1:]):
            raise ValueError("data has another catalogue than the one this model was trained on")
        result = evaluate(self.model, data.stage("test"), data.n_items, device=self.device, ks=ks)
        return result.metrics


def _table(frame: Any, name: str, required: Sequence[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; found {list(frame.columns)}")
    if name == "interactions" and frame.empty:
        raise ValueError("interactions is empty")
    for column in required:
        nulls = np.flatnonzero(frame[column].isna().to_numpy())
        if len(nulls):
            raise ValueError(f"{name}.{column} has {len(nulls)} null value(s), e.g. at row {nulls[0]}")
    return frame.reset_index(drop=True)


def _raw_ids(values: Any, name: str = "history") -> list[int]:
    """A list of ints from a list, tuple, array or Series of integers; raises naming a bad one."""
    if isinstance(values, (str, bytes, set, frozenset, dict)) or not hasattr(values, "__iter__"):
        what = "raw item ids" if name == "history" else "unix seconds"
        raise TypeError(f"{name} must be a list of {what}, oldest first; got {type(values).__name__}")
    out = list(values)
    for value in out:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must hold integers; got {value!r}")
    return [int(v) for v in out]


def _ids(values: pd.Series, column: str) -> np.ndarray:
    """Integer ids as int64; raises naming the first value that is not a whole number."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero((numbers.isna() | (numbers != numbers.round())).to_numpy())
    if len(bad):
        raise ValueError(f"{column} must hold integer ids; row {bad[0]} has {values.iloc[bad[0]]!r}")
    return numbers.to_numpy(np.int64)


def _seconds(values: pd.Series) -> np.ndarray:
    """Unix seconds from numbers or datetimes."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return ((values - pd.Timestamp(0, tz=values.dt.tz)) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    return _ids(values, "timestamp")

