"""GNN-TV (hetero_gnn): the heterogeneous graph it trains on, the inductive user path, cold
items reached through their metadata alone, meta-path fusion and the multi-task heads."""

import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.general.popularity import Popularity, PopularityConfig
from models.graph.interaction_graph import build_hetero_graph
from models.graph.hetero_gnn import HeteroGNN, HeteroGNNConfig, stable_bucket
from models.metrics import evaluate
from tests.models.conftest import CHAIN_LEN, N_CHAINS
from tests.models.graph.conftest import (
    COLD_ITEMS,
    assert_one_row_scores_as_the_batch,
    chain_of,
    history_batch,
    loss_as_cold_users,
    score_with,
)

CPU = torch.device("cpu")
TINY = dict(text_dim=0, dim=16, n_layers=2, heads=2, dropout=0.0, lr=0.01, batch_size=256, attribute_buckets=64)




@pytest.fixture(scope="module")
def trained(planted_cold_items):
    model = HeteroGNN(HeteroGNNConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, max_epochs=30, patience=5))
    report = model.fit(planted_cold_items, CPU, progress=False)
    return model, report


def test_stable_bucket_is_crc32_and_the_same_in_every_process():
    assert stable_bucket(["Drama", "Comedy"], 64).tolist() == [zlib.crc32(b"Drama") % 64, zlib.crc32(b"Comedy") % 64]


def test_it_trains_on_the_metadata_graph(trained):
    model, _ = trained
    g = model.graph
    assert set(g["attribute_rows"]) == {"genre", "cast", "network"}  # no creator column here
    assert len(g["attribute_rows"]["genre"]) == N_CHAINS + 1  # Genre0..2 and Drama
    assert g["edges"][("item", "has_genre", "genre")].shape[1] == 2 * N_CHAINS * CHAIN_LEN
    # cold items have metadata edges but no rating edges
    assert not model.item_has_edges[COLD_ITEMS].any()
    assert set(COLD_ITEMS) <= set(g["edges"][("item", "on", "network")][0].tolist())


def test_history_path_gives_the_propagated_user_state(trained, planted_cold_items):
    model, _ = trained
    with torch.no_grad():
        users, _, _ = model.propagate()
    for user in (1, 2, 30):
        items = planted_cold_items.train.loc[planted_cold_items.train["user_idx"] == user, "item_idx"].tolist()
        torch.testing.assert_close(model.embed_users(history_batch([user], [items]))[0], users[user], rtol=1e-4, atol=1e-5)


def test_loss_decreases_and_beats_popularity(trained, planted_cold_items):
    model, report = trained
    assert report.epochs[-1].train_loss < 0.8 * report.epochs[0].train_loss
    popularity = Popularity(PopularityConfig(planted_cold_items.n_items))
    popularity.fit(planted_cold_items, CPU, progress=False)
    ours = evaluate(model.score, planted_cold_items.valid_cases, planted_cold_items.n_items).metrics["all"]["ndcg@10"]
    theirs = evaluate(popularity.score, planted_cold_items.valid_cases, planted_cold_items.n_items).metrics["all"]["ndcg@10"]
    assert ours > theirs + 0.05


def test_cold_items_are_reached_through_their_metadata_alone(trained):
    """No text (text_dim 0) and no rating edges: only genre, cast and network place them."""
    model, _ = trained
    for chain, cold in enumerate(COLD_ITEMS):
        history = [chain * CHAIN_LEN + k for k in (10, 11, 12, 13)]
        scores = model.score(history_batch([0], [history]))[0]
        others = [i for i in COLD_ITEMS if i != cold]
        assert scores[cold] > scores[others].max(), (chain, scores[COLD_ITEMS])


def test_genre_and_network_heads_learn_the_item_metadata(planted_cold_items):
    # the heads alone: no id or cold-item dropout adding noise to 15 epochs on 60 items
    model = HeteroGNN(HeteroGNNConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, genre_weight=1.0, network_weight=1.0,
                                      id_dropout=0.0, cold_item_dropout=0.0, max_epochs=40, patience=100))  # fmt: skip
    model.fit(planted_cold_items, CPU, progress=False)
    rows = model.graph["attribute_rows"]
    with torch.no_grad():
        items = model.item_final[1:]
        network = model.network_head(items).argmax(1)
        genre_top2 = model.genre_head(items).topk(2).indices
    truth = torch.tensor([chain_of(i) for i in range(1, len(items) + 1)])
    assert (network == rows["network"][truth]).float().mean() > 0.9
    drama = int(stable_bucket(["Drama"], TINY["attribute_buckets"]))
    chain_genre = stable_bucket([f"Genre{c}" for c in range(N_CHAINS)], TINY["attribute_buckets"])[truth]
    has_both = [(drama in set(t.tolist())) and (int(g) in set(t.tolist())) for t, g in zip(genre_top2, chain_genre)]
    assert np.mean(has_both) > 0.9


def test_metapath_fusion_leaves_an_item_without_metadata_as_it_is(trained):
    model, _ = trained
    with torch.no_grad():
        states = torch.randn(model.config.n_items + 1, model.config.dim)
        fused = model._metapath_fusion(states)
    torch.testing.assert_close(fused[0], states[0])  # item 0 (padding) has no metadata edges
    assert not torch.allclose(fused[1], states[1])  # item 1 reads its genre, cast and network peers


def test_heads_and_metapaths_can_be_turned_off(planted_cold_items):
    model = HeteroGNN(HeteroGNNConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, genre_weight=0, network_weight=0,
                                      metapaths=False, max_epochs=1))  # fmt: skip
    model.fit(planted_cold_items, CPU, progress=False)
    assert model.genre_head is None and model.network_head is None and not hasattr(model, "path_query")


def test_missing_text_names_the_side_input(planted_cold_items):
    model = HeteroGNN(HeteroGNNConfig(planted_cold_items.n_items, planted_cold_items.n_users, **{**TINY, "text_dim": 8}, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(planted_cold_items, CPU, progress=False)
    text = SimpleNamespace(matrix=torch.randn(planted_cold_items.n_items + 1, 8))
    assert len(model.fit(planted_cold_items, CPU, side_inputs={"item_text_embeddings": text}, progress=False).epochs) == 1


def test_items_trained_as_cold_keep_metadata_but_lose_id_and_ratings(planted_cold_items):
    from models.graph.interaction_graph import build_hetero_graph

    config = HeteroGNNConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, id_dropout=0.0, cold_item_dropout=0.999999)
    model, empty = HeteroGNN(config), HeteroGNN(config)
    empty.load_state_dict(model.state_dict())
    model.attach(build_hetero_graph(planted_cold_items.train, planted_cold_items.items, planted_cold_items.n_users, planted_cold_items.n_items), None)
    empty.attach(build_hetero_graph(planted_cold_items.train.iloc[:0], planted_cold_items.items, planted_cold_items.n_users, planted_cold_items.n_items), None)
    model.train(), empty.train()
    _, items, _ = model.propagate()
    _, expected, _ = empty.propagate()
    torch.testing.assert_close(items, expected)


def test_an_untrained_model_starts_near_the_uniform_guess(planted_cold_items):
    """Logits are scaled by 1/sqrt(dim), as in GraphSAGE (LayerNorm'd states have norm ~sqrt(dim)):
    the recommendation loss (heads off) of an untrained model is about log(n_items)."""
    data = planted_cold_items
    model = HeteroGNN(HeteroGNNConfig(data.n_items, data.n_users, **{**TINY, "dim": 64}, genre_weight=0, network_weight=0))
    model.attach(build_hetero_graph(data.train, data.items, data.n_users, data.n_items), None)
    model.eval()
    with torch.no_grad():
        loss = model.loss(torch.tensor(data.train["user_idx"].to_numpy()), torch.tensor(data.train["item_idx"].to_numpy()))
    assert abs(loss.item() - math.log(data.n_items)) < 0.5, (loss.item(), math.log(data.n_items))


@pytest.mark.parametrize("over_trained_items", [True, False])
def test_the_softmax_runs_over_the_items_with_ratings(planted_cold_items, over_trained_items):
    """As in GraphSAGE (softmax_over_trained_items): the items without training ratings are no
    negatives of the recommendation loss unless the softmax runs over the whole catalogue. (Their
    metadata still reaches other items through the shared genre and cast nodes.)"""
    data = planted_cold_items
    model = HeteroGNN(HeteroGNNConfig(data.n_items, data.n_users, **TINY, genre_weight=0, network_weight=0,
                                      softmax_over_trained_items=over_trained_items))  # fmt: skip
    model.attach(build_hetero_graph(data.train, data.items, data.n_users, data.n_items), None)
    model.eval()
    users, positives = torch.tensor(data.train["user_idx"].to_numpy()), torch.tensor(data.train["item_idx"].to_numpy())
    with torch.no_grad():
        user_states, item_states, _ = model.propagate()
        logits = user_states[users] @ item_states.T * model.logit_scale
        candidates = torch.tensor([i for i in range(1, data.n_items + 1) if over_trained_items is False or i not in COLD_ITEMS])
        expected = F.cross_entropy(logits[:, candidates], torch.searchsorted(candidates, positives))
        torch.testing.assert_close(model.loss(users, positives), expected)


def test_validation_ranks_only_the_items_with_ratings(trained):
    model, _ = trained
    batch = history_batch([0], [[1, 2, 3]])
    validation, scores = model.validation_score(batch), model.score(batch)
    assert torch.isinf(validation[:, COLD_ITEMS]).all() and torch.isfinite(scores[:, COLD_ITEMS]).all()
    known = model.item_has_edges.nonzero().squeeze(1)
    torch.testing.assert_close(validation[:, known], scores[:, known])


def test_item_bias_follows_the_id_row(planted_cold_items):
    """item_bias, as in GraphSAGE: own row for items with ratings, row 0 for the others."""
    data = planted_cold_items
    model = HeteroGNN(HeteroGNNConfig(data.n_items, data.n_users, **TINY, item_bias=True, id_dropout=0.0, cold_item_dropout=0.0))
    model.attach(build_hetero_graph(data.train, data.items, data.n_users, data.n_items), None)
    with torch.no_grad():
        model.bias.weight.copy_(torch.arange(data.n_items + 1, dtype=torch.float32)[:, None] / 10)
    model.eval()
    batch = history_batch([0], [[1, 2, 3]])
    plain = model.embed_users(batch) @ model.item_final.T * model.logit_scale
    expected = torch.arange(data.n_items + 1, dtype=torch.float32) / 10
    expected[COLD_ITEMS] = 0.0
    expected[0] = 0.0
    torch.testing.assert_close(model.score(batch) - plain, expected[None].expand_as(plain))
    _, _, _, rows = model.propagate(with_rows=True)
    assert (rows[COLD_ITEMS] == 0).all() and (rows[model.item_has_edges] == torch.arange(data.n_items + 1)[model.item_has_edges]).all()


def test_new_item_offset_moves_only_the_items_without_training_ratings(trained):
    model, _ = trained
    batch = history_batch([0], [[1, 2, 3]])
    served, shifted = model.score(batch), score_with(model, batch, new_item_offset=-1.0)
    torch.testing.assert_close(shifted[:, COLD_ITEMS], served[:, COLD_ITEMS] - 1.0)
    torch.testing.assert_close(shifted[:, model.item_has_edges], served[:, model.item_has_edges])


def test_a_pair_trained_as_a_cold_user_has_the_loss_of_that_cold_user_scored(planted_cold_items):
    """cold_user_share, as in GraphSAGE: a pair drawn as cold gets the state a cold user with
    those first items is scored with (heads off, no dropout: the loss is that cross-entropy)."""
    data = planted_cold_items
    config = HeteroGNNConfig(data.n_items, data.n_users, **TINY, id_dropout=0.0, cold_item_dropout=0.0, genre_weight=0.0,
                             network_weight=0.0, cold_user_share=0.999999, cold_user_history=3)  # fmt: skip
    model = HeteroGNN(config)
    model.attach(build_hetero_graph(data.train, data.items, data.n_users, data.n_items), None)
    loss, expected, users, positives = loss_as_cold_users(model, data)
    torch.testing.assert_close(loss, expected)
    model.config = HeteroGNNConfig(**{**config.__dict__, "cold_user_share": 0.0})
    with torch.no_grad():
        assert not torch.allclose(model.loss(users, positives), expected)


def test_fit_with_cold_users_trains_and_saves_without_their_first_items(planted_cold_items):
    data = planted_cold_items
    model = HeteroGNN(HeteroGNNConfig(data.n_items, data.n_users, **TINY, cold_user_share=0.3, max_epochs=2))
    assert len(model.fit(data, CPU, progress=False).epochs) == 2
    assert model.first_items.shape == (data.n_users + 1, 5)
    assert "first_items" not in model.state_dict()


def test_one_user_at_a_time_scores_as_the_batch_does(trained):
    """A batch of one (a serving request) takes the dense attention path, a larger batch PyG's
    message passing: the same scores, for histories with repeats, padding, or nothing at all."""
    assert_one_row_scores_as_the_batch(trained[0])
