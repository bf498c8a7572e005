"""GNN-TV (hetero_gnn): the heterogeneous graph it trains on, the inductive user path, cold
items reached through their metadata alone, meta-path fusion and the multi-task heads."""

import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.data import HistoryBatch, TrainingData
from models.general.popularity import Popularity, PopularityConfig
from models.graph.hetero_gnn import HeteroGNN, HeteroGNNConfig, stable_bucket
from models.metrics import evaluate
from tests.models.conftest import CHAIN_LEN, N_CHAINS

CPU = torch.device("cpu")
TINY = dict(text_dim=0, dim=16, n_layers=2, heads=2, dropout=0.0, lr=0.01, batch_size=256, attribute_buckets=64)
COLD_ITEMS = [5, 25, 45]  # one per chain: every training row with them is removed


def _chain(item: int) -> int:
    return (item - 1) // CHAIN_LEN


def _batch(users, items) -> HistoryBatch:
    items = torch.as_tensor(items)
    return HistoryBatch(items, torch.zeros_like(items), torch.as_tensor(users))


@pytest.fixture(scope="module")
def planted(planted_split) -> TrainingData:
    """The planted chains with metadata that tells the chains apart: genre, cast, network."""
    data = planted_split.training_data()
    items = data.items.copy()
    chain = (items["item_idx"] - 1) // CHAIN_LEN
    items["genres"] = [f"Genre{c}|Drama" for c in chain]
    items["cast"] = [f"Actor{c}a|Actor{c}{i % 3}" for c, i in zip(chain, items["item_idx"])]
    items["network"] = [f"Net{c}" for c in chain]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, items, data.users)


@pytest.fixture(scope="module")
def trained(planted):
    model = HeteroGNN(HeteroGNNConfig(planted.n_items, planted.n_users, **TINY, max_epochs=30, patience=5))
    report = model.fit(planted, CPU, progress=False)
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


def test_history_path_gives_the_propagated_user_state(trained, planted):
    model, _ = trained
    with torch.no_grad():
        users, _, _ = model.propagate()
    for user in (1, 2, 30):
        items = planted.train.loc[planted.train["user_idx"] == user, "item_idx"].tolist()
        torch.testing.assert_close(model.embed_users(_batch([user], [items]))[0], users[user], rtol=1e-4, atol=1e-5)


def test_loss_decreases_and_beats_popularity(trained, planted):
    model, report = trained
    assert report.epochs[-1].train_loss < 0.8 * report.epochs[0].train_loss
    popularity = Popularity(PopularityConfig(planted.n_items))
    popularity.fit(planted, CPU, progress=False)
    ours = evaluate(model.score, planted.valid_cases, planted.n_items).metrics["all"]["ndcg@10"]
    theirs = evaluate(popularity.score, planted.valid_cases, planted.n_items).metrics["all"]["ndcg@10"]
    assert ours > theirs + 0.05


def test_cold_items_are_reached_through_their_metadata_alone(trained):
    """No text (text_dim 0) and no rating edges: only genre, cast and network place them."""
    model, _ = trained
    for chain, cold in enumerate(COLD_ITEMS):
        history = [chain * CHAIN_LEN + k for k in (10, 11, 12, 13)]
        scores = model.score(_batch([0], [history]))[0]
        others = [i for i in COLD_ITEMS if i != cold]
        assert scores[cold] > scores[others].max(), (chain, scores[COLD_ITEMS])


def test_genre_and_network_heads_learn_the_item_metadata(planted):
    # the heads alone: no id or cold-item dropout adding noise to 15 epochs on 60 items
    model = HeteroGNN(HeteroGNNConfig(planted.n_items, planted.n_users, **TINY, genre_weight=1.0, network_weight=1.0,
                                      id_dropout=0.0, cold_item_dropout=0.0, max_epochs=15, patience=100))  # fmt: skip
    model.fit(planted, CPU, progress=False)
    rows = model.graph["attribute_rows"]
    with torch.no_grad():
        items = model.item_final[1:]
        network = model.network_head(items).argmax(1)
        genre_top2 = model.genre_head(items).topk(2).indices
    truth = torch.tensor([_chain(i) for i in range(1, len(items) + 1)])
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


def test_heads_and_metapaths_can_be_turned_off(planted):
    model = HeteroGNN(HeteroGNNConfig(planted.n_items, planted.n_users, **TINY, genre_weight=0, network_weight=0,
                                      metapaths=False, max_epochs=1))  # fmt: skip
    model.fit(planted, CPU, progress=False)
    assert model.genre_head is None and model.network_head is None and not hasattr(model, "path_query")


def test_missing_text_names_the_side_input(planted):
    model = HeteroGNN(HeteroGNNConfig(planted.n_items, planted.n_users, **{**TINY, "text_dim": 8}, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(planted, CPU, progress=False)
    text = SimpleNamespace(matrix=torch.randn(planted.n_items + 1, 8))
    assert len(model.fit(planted, CPU, side_inputs={"item_text_embeddings": text}, progress=False).epochs) == 1


def test_items_trained_as_cold_keep_metadata_but_lose_id_and_ratings(planted):
    from models.graph.interaction_graph import build_hetero_graph

    config = HeteroGNNConfig(planted.n_items, planted.n_users, **TINY, id_dropout=0.0, cold_item_dropout=0.999999)
    model, empty = HeteroGNN(config), HeteroGNN(config)
    empty.load_state_dict(model.state_dict())
    model.attach(build_hetero_graph(planted.train, planted.items, planted.n_users, planted.n_items), None)
    empty.attach(build_hetero_graph(planted.train.iloc[:0], planted.items, planted.n_users, planted.n_items), None)
    model.train(), empty.train()
    _, items, _ = model.propagate()
    _, expected, _ = empty.propagate()
    torch.testing.assert_close(items, expected)
