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


def assert_one_row_scores_as_the_batch(model) -> None:
    """Each history scored alone (a serving request: the dense one-node attention path) gets
    the scores it gets in a batch (PyG's message passing): histories with repeats, padding, a
    known user, or nothing at all."""
    users = [0, 3, 0, 0]
    histories = [[0, 0, 1, 2, 3], [21, 22, 21, 23, 24], [0, 41, 41, 42, 43], [0, 0, 0, 0, 0]]
    together = model.score(history_batch(users, histories))
    for row, (user, history) in enumerate(zip(users, histories)):
        alone = model.score(history_batch([user], [history]))
        torch.testing.assert_close(alone[0], together[row], rtol=1e-5, atol=1e-5)


def loss_as_cold_users(model, data: TrainingData) -> tuple:
    """For a model built with cold_user_share ~1 and no dropout of any kind, attached to ``data``:
    (its training loss on every pair whose item is not among the user's first 3 items, the
    cross-entropy of the scores those users get as new users shown their first 3 items, the
    pairs' users, their items). The two losses are equal when a pair trained as cold is trained
    exactly as a cold user is scored."""
    import torch.nn.functional as F

    from models.graph.interaction_graph import first_items, without_untrained_items

    model.first_items = first_items(data.train, data.n_users, 3)
    users, positives = torch.tensor(data.train["user_idx"].to_numpy()), torch.tensor(data.train["item_idx"].to_numpy())
    later = (model.first_items[users] != positives.unsqueeze(1)).all(1)
    users, positives = users[later], positives[later]
    model.eval()
    cold = model.score(history_batch(torch.zeros_like(users), model.first_items[users]))[:, 1:]
    expected = F.cross_entropy(without_untrained_items(cold, model.item_has_edges), positives - 1)
    model.train()  # no dropout of any kind: train-mode propagation is eval's
    with torch.no_grad():
        loss = model.loss(users, positives)
    return loss, expected, users, positives
