"""The split dataset every model trains on, and the batches every model scores.

Index space: items are 1..n_items (0 is padding, never a candidate); users are 1..n_users
(0 means "unknown user"). ``models.split`` maps raw ids into this space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

PAD = 0

# Column contracts of the split tables (they travel between Flyte tasks as parquet).
TRAIN_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")
CASE_COLUMNS = (
    "case_id",  # int64, unique over all cases
    "stage",  # "valid" or "test"
    "user_idx",  # int64
    "target_item",  # int64 item_idx
    "target_timestamp",  # int64 unix seconds
    "history",  # list<int64> item_idx, chronological, oldest first (the model's input)
    "history_timestamps",  # list<int64>, aligned with history
    "slice",  # "warm" | "cold_user" | "cold_item"
    "activity_bucket",  # "1-10", "11-50", "51-200", "201+" (length of the input history)
)
SLICES = ("warm", "cold_user", "cold_item")


@dataclass
class SplitData:
    """Training part, evaluation cases and side tables, in index space.

    train: columns TRAIN_COLUMNS, ordered by user then time (source order on ties).
    cases: columns CASE_COLUMNS; validation cases (stage == "valid") choose epochs, test cases
        (stage == "test") are only ever scored by the evaluator.
    items: ``item_idx`` (1..n_items) and ``item_id`` plus the canonical item columns: the
        catalogue, every item of the source's items table whether rated or not (plus any rated
        item the table lacks), so some items may have no interaction at all.
    users: ``user_idx`` (1..n_users) and ``user_id`` plus the canonical user columns.
    """

    n_users: int
    n_items: int
    train: pd.DataFrame
    cases: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def stage(self, stage: str) -> pd.DataFrame:
        return self.cases[self.cases["stage"] == stage].reset_index(drop=True)

    def training_data(self) -> "TrainingData":
        """What ``fit`` may see: everything but the test cases."""
        return TrainingData(self.n_users, self.n_items, self.train, self.stage("valid"), self.items, self.users)


@dataclass
class TrainingData:
    """What ``fit`` sees: the training part and the validation cases, never a test case.

    train: columns TRAIN_COLUMNS, ordered by user then time (source order on ties).
    valid_cases: columns CASE_COLUMNS, every row ``stage == "valid"``; they choose epochs and
        hyper-parameters. Test cases are not here at all: only the evaluator gets them.
    items / users: the catalogue and the users in index space, as in ``SplitData``.
    """

    n_users: int
    n_items: int
    train: pd.DataFrame
    valid_cases: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def __post_init__(self) -> None:
        stages = set(self.valid_cases["stage"]) if len(self.valid_cases) else set()
        if stages - {"valid"}:
            raise ValueError(f"TrainingData takes validation cases only, got stages {sorted(stages)}")

    def train_sequences(self) -> dict[int, np.ndarray]:
        """user_idx -> chronological array of training item_idx."""
        users = self.train["user_idx"].to_numpy(np.int64)
        items = self.train["item_idx"].to_numpy(np.int64, copy=True)
        order = np.argsort(users, kind="stable")  # train is user-ordered; stable keeps time order
        users, items = users[order], items[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        return dict(zip(users[starts].tolist(), np.split(items, starts[1:])))


@dataclass
class HistoryBatch:
    """A batch of user histories, left-padded so the latest event sits in the last column.

    items: LongTensor[B, L] of item_idx (PAD = 0 on the left).
    timestamps: LongTensor[B, L] unix seconds (0 where padded).
    users: LongTensor[B] user_idx (0 if unknown, e.g. a cold user).
    """

    items: torch.Tensor
    timestamps: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device | str) -> "HistoryBatch":
        return HistoryBatch(
            self.items.to(device), self.timestamps.to(device), self.users.to(device)
        )


def left_pad(sequences: list, max_len: int, pad: int = PAD) -> torch.Tensor:
    """Keep the last ``max_len`` values of each sequence and left-pad with ``pad``.

    Returns LongTensor[len(sequences), max_len]. Built with one numpy fill, no per-item loop.
    """
    out = np.full((len(sequences), max_len), pad, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-max_len:]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return torch.from_numpy(out)


def history_batches(
    cases: pd.DataFrame, batch_size: int, max_len: int
) -> Iterator[tuple[HistoryBatch, pd.DataFrame]]:
    """Yield (HistoryBatch, the slice of ``cases`` it holds) in order, ``batch_size`` at a time."""
    for start in range(0, len(cases), batch_size):
        chunk = cases.iloc[start : start + batch_size]
        batch = HistoryBatch(
            items=left_pad(list(chunk["history"]), max_len),
            timestamps=left_pad(list(chunk["history_timestamps"]), max_len),
            users=torch.as_tensor(chunk["user_idx"].to_numpy(np.int64, copy=True)),
        )
        yield batch, chunk
