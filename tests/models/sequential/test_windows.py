"""The one cropping every sequential family trains on (models/sequential/windows.py)."""

import numpy as np
import pandas as pd
import torch

from models.data import PAD
from models.sequential.windows import SequenceWindows


def _train() -> pd.DataFrame:
    """User 1: items 1-3, user 2: items 4-8, user 3: item 9 alone (no next item)."""
    users = [1, 1, 1, 2, 2, 2, 2, 2, 3]
    return pd.DataFrame({
        "user_idx": users, "item_idx": range(1, 10), "rating": np.linspace(1, 5, 9),
        "timestamp": [10 * i for i in range(1, 10)],
    })  # fmt: skip


def _epoch(windows: SequenceWindows, seed: int = 0) -> torch.Tensor:
    return torch.cat(list(windows.epoch_batches(8, torch.Generator().manual_seed(seed))))


def test_windows_are_latest_items_left_padded_when_short():
    windows = SequenceWindows(_train(), 4)
    items = windows.column("item_idx")
    rows = sorted(tuple(r.tolist()) for r in items[_epoch(windows)])  # user 3 has no next item: dropped
    assert rows[0] == (PAD, 1, 2, 3)
    assert rows[1] in {(4, 5, 6, 7), (5, 6, 7, 8)}  # a random crop of the long sequence


def test_every_column_follows_the_same_crop():
    windows = SequenceWindows(_train(), 4)
    row_ids = _epoch(windows)
    items, times = windows.column("item_idx")[row_ids], windows.column("timestamp")[row_ids]
    torch.testing.assert_close(times, torch.where(items > 0, items * 10, 0))  # timestamp = 10 × item here
    assert windows.column("rating")[0] == 0 and windows.column("user_idx")[0] == 0  # what PAD reads


def test_rows_are_grouped_by_user_whatever_the_table_order():
    shuffled = _train().sample(frac=1.0, random_state=0)
    shuffled = shuffled.sort_values("user_idx", kind="stable")  # user-ordered, as the split writes it
    windows = SequenceWindows(shuffled.reset_index(drop=True), 10)
    lists = {tuple(r[r > 0].tolist()) for r in windows.column("item_idx")[_epoch(windows)]}
    assert lists == {tuple(shuffled[shuffled.user_idx == 1].item_idx), tuple(shuffled[shuffled.user_idx == 2].item_idx)}


def test_crops_change_between_epochs_and_repeat_with_the_seed():
    long = pd.DataFrame({"user_idx": [1] * 30, "item_idx": range(1, 31), "rating": 4.0, "timestamp": range(30)})
    windows = SequenceWindows(long, 5)
    crops = {tuple(_epoch(windows, seed)[0].tolist()) for seed in range(10)}
    assert len(crops) > 1
    assert torch.equal(_epoch(windows, 3), _epoch(windows, 3))
