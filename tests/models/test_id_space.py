"""Warm starts and re-scoring across two index spaces of the same raw ids (models.id_space)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import HistoryBatch
from models.id_space import Remapped, WarmStartError, id_indexed, row_map, warm_start
from models.registry import FAMILIES, build_model
from tests.conftest import tiny_config

OLD_ITEMS, NEW_ITEMS = np.array([10, 20, 30, 40]), np.array([10, 20, 25, 30, 40, 50])
OLD_USERS, NEW_USERS = np.array([1, 2, 3]), np.array([1, 3, 4, 5])
WITH_WEIGHTS = [f for f, spec in FAMILIES.items() if spec.trainable and f not in ("popularity", "ease")]


def test_row_map_finds_each_raw_id_in_the_previous_space():
    assert row_map(OLD_ITEMS, NEW_ITEMS).tolist() == [0, 1, 2, 0, 3, 4, 0]
    assert row_map(np.array([], dtype=np.int64), NEW_USERS).tolist() == [0] * 5


def build(family: str, items: np.ndarray, users: np.ndarray, seed: int):
    torch.manual_seed(seed)
    return build_model(family, len(items), tiny_config(family, side_input_width=8), n_users=len(users))


@pytest.mark.parametrize("family", WITH_WEIGHTS)
def test_a_warm_start_keeps_the_old_rows_by_raw_id_and_the_family_init_for_new_ones(family):
    old = build(family, OLD_ITEMS, OLD_USERS, seed=1)
    fresh = build(family, NEW_ITEMS, NEW_USERS, seed=2)
    model = build(family, NEW_ITEMS, NEW_USERS, seed=2)
    report = warm_start(model, old, items=(OLD_ITEMS, NEW_ITEMS), users=(OLD_USERS, NEW_USERS))
    old_params, fresh_params = dict(old.named_parameters()), dict(fresh.named_parameters())
    item_map, user_map = row_map(OLD_ITEMS, NEW_ITEMS), row_map(OLD_USERS, NEW_USERS)
    kinds = id_indexed(model)
    for name, param in model.named_parameters():
        before, init = old_params[name].detach(), fresh_params[name].detach()
        if name not in kinds:
            assert torch.equal(param, before), name  # shared weights are copied whole
            continue
        mapping = item_map if kinds[name] == "item" else user_map
        n = len(mapping) - 1
        for new_row in range(1, n + 1):
            expected = before[mapping[new_row]] if mapping[new_row] else init[new_row]
            assert torch.equal(param[new_row], expected), (name, new_row)
        assert torch.equal(param[n + 1 :], before[before.shape[0] - (param.shape[0] - n - 1) :]), name  # special rows
    assert report.item_rows_kept + report.item_rows_new == len(NEW_ITEMS)
    assert report.copied == [name for name, _ in model.named_parameters()]


def test_the_id_indexed_parameters_are_found_by_what_grows_with_the_catalogue():
    assert id_indexed(build("sasrec", OLD_ITEMS, OLD_USERS, seed=0)) == {"item_emb.weight": "item"}
    assert id_indexed(build("bert4rec", OLD_ITEMS, OLD_USERS, seed=0)) == {"item_emb.weight": "item", "out_bias": "item"}
    assert id_indexed(build("lightgcn", OLD_ITEMS, OLD_USERS, seed=0)) == {"user_emb.weight": "user", "item_emb.weight": "item"}
    assert "modality_emb" not in id_indexed(build("multimodal", OLD_ITEMS, OLD_USERS, seed=0))  # as many rows as items here


def test_sasrec_item_rows_move_with_their_ids():
    old = build("sasrec", OLD_ITEMS, OLD_USERS, seed=1)
    model = build("sasrec", NEW_ITEMS, NEW_USERS, seed=2)
    report = warm_start(model, old, items=(OLD_ITEMS, NEW_ITEMS), users=(OLD_USERS, NEW_USERS))
    assert torch.equal(model.item_emb.weight[4], old.item_emb.weight[3])  # item 30: index 3 -> 4
    assert (report.item_rows_kept, report.item_rows_new) == (4, 2)


def test_a_warm_start_from_another_config_or_family_is_refused():
    old = build_model("sasrec", len(OLD_ITEMS), tiny_config("sasrec", dim=16))
    model = build_model("sasrec", len(NEW_ITEMS), tiny_config("sasrec", dim=8))
    with pytest.raises(WarmStartError, match="configs differ"):
        warm_start(model, old, items=(OLD_ITEMS, NEW_ITEMS), users=(OLD_USERS, NEW_USERS))
    with pytest.raises(WarmStartError, match="cannot warm-start"):
        warm_start(build_model("bert4rec", 6, tiny_config("bert4rec")), old, items=(OLD_ITEMS, NEW_ITEMS), users=(OLD_USERS, NEW_USERS))


def test_a_remapped_model_scores_each_item_by_raw_id_and_unknown_items_last():
    old = build("sasrec", OLD_ITEMS, OLD_USERS, seed=1).eval()
    remapped = Remapped(old, items=(OLD_ITEMS, NEW_ITEMS), users=(OLD_USERS, NEW_USERS))
    # the history [10, 25, 30] in the new space is [1, 3, 4]; 25 is unknown to the old model
    new_batch = HistoryBatch(torch.tensor([[0, 1, 3, 4]]), torch.tensor([[0, 5, 6, 7]]), torch.tensor([0]))
    old_batch = HistoryBatch(torch.tensor([[0, 0, 1, 3]]), torch.tensor([[0, 0, 5, 7]]), torch.tensor([0]))
    with torch.no_grad():
        scores, expected = remapped.score(new_batch), old.score(old_batch)
    assert scores.shape == (1, len(NEW_ITEMS) + 1)
    for new_idx, old_idx in enumerate(row_map(OLD_ITEMS, NEW_ITEMS)):
        if new_idx and old_idx:
            assert torch.allclose(scores[0, new_idx], expected[0, old_idx])
    assert torch.isinf(scores[0, 3]) and torch.isinf(scores[0, 6])  # items 25 and 50: ranked last


def test_a_remapped_model_in_the_same_space_scores_as_itself():
    old = build("sasrec", OLD_ITEMS, OLD_USERS, seed=1).eval()
    remapped = Remapped(old, items=(OLD_ITEMS, OLD_ITEMS), users=(OLD_USERS, OLD_USERS))
    batch = HistoryBatch(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 5, 6]]), torch.tensor([1]))
    with torch.no_grad():
        assert torch.equal(remapped.score(batch), old.score(batch))
