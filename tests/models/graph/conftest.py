"""The planted chains (tests/models/conftest.py) with one item per chain held out as a cold item
and metadata that tells the chains apart: what the inductive graph families are tested on."""

from dataclasses import replace

import pytest
import torch

from models.data import HistoryBatch, TrainingData
from tests.models.conftest import CHAIN_LEN

COLD_ITEMS = [5, 25, 45]  # one per chain: every training row and validation target with them is removed


def chain_of(item: int) -> int:
    return (item - 1) // CHAIN_LEN


def history_batch(users, items) -> HistoryBatch:
    items = torch.as_tensor(items)
    return HistoryBatch(items, torch.zeros_like(items), torch.as_tensor(users))


@pytest.fixture(scope="session")
def planted_cold_items(planted_split) -> TrainingData:
    data = planted_split.training_data()
    items = data.items.copy()
    chain = (items["item_idx"] - 1) // CHAIN_LEN
    items["genres"] = [f"Genre{c}|Drama" for c in chain]
    items["cast"] = [f"Actor{c}a|Actor{c}{i % 3}" for c, i in zip(chain, items["item_idx"])]
    items["network"] = [f"Net{c}" for c in chain]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, items, data.users)


def score_with(model, batch: HistoryBatch, **config_changes) -> torch.Tensor:
    """``model.score(batch)`` with score-time config fields changed, the config restored after."""
    kept = model.config
    model.config = replace(kept, **config_changes)
    try:
        return model.score(batch)
    finally:
        model.config = kept
