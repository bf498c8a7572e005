from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from models.data import HistoryBatch, TrainingData
from models.graph.interaction_graph import build_interaction_graph
from models.graph.lightgcn import BPRPairs, LightGCN, LightGCNConfig, NeighbourSampler
from models.metrics import evaluate
from models.general.popularity import Popularity, PopularityConfig
from models.training import CHECKPOINT_NAME

CPU = torch.device("cpu")
TINY = dict(dim=32, n_layers=2, lr=0.05, batch_size=1024)  # the planted split: ~800 pairs, one batch


def _config(data: TrainingData, **overrides) -> LightGCNConfig:
    return LightGCNConfig(data.n_items, data.n_users, **{**TINY, "max_epochs": 2, **overrides})


def _batch(users, items) -> HistoryBatch:
    items = torch.as_tensor(items)
    return HistoryBatch(items, torch.zeros_like(items), torch.as_tensor(users))


@pytest.fixture(scope="module")
def planted(planted_split) -> TrainingData:
    return planted_split.training_data()


@pytest.fixture(scope="module")
def trained(planted):
    model = LightGCN(_config(planted, max_epochs=12, eval_every=4, patience=3))
    report = model.fit(planted, CPU, progress=False)
    return model, report


def test_final_embeddings_are_the_mean_of_the_layer_outputs():
    # users 1, 2; items 1, 2, 3; user 1 -- items 1, 2; user 2 -- items 2, 3
    train = pd.DataFrame({"user_idx": [1, 1, 2, 2], "item_idx": [1, 2, 2, 3]})
    model = LightGCN(LightGCNConfig(3, 2, dim=4, n_layers=3))
    model.attach_graph(build_interaction_graph(train, 2, 3))
    users, items = model.propagate()

    # by hand: nodes [u0, u1, u2, i0, i1, i2, i3]; Â = D^-½ A D^-½ (isolated nodes stay 0)
    adjacency = np.zeros((7, 7))
    for u, i in [(1, 1), (1, 2), (2, 2), (2, 3)]:
        adjacency[u, 3 + i] = adjacency[3 + i, u] = 1.0
    degree = adjacency.sum(1)
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
    norm = inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    layer = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double().numpy()
    layers = [layer]
    for _ in range(3):
        layers.append(norm @ layers[-1])
    expected = torch.from_numpy(np.mean(layers, axis=0)).float()
    torch.testing.assert_close(torch.cat([users, items]).detach(), expected)
    torch.testing.assert_close(users[0].detach(), model.user_emb.weight[0].detach() / 4)  # no edges: e⁰ / (K+1)


def test_score_shape_is_batch_by_items_plus_one_and_column_zero_is_not_ranked(trained, planted):
    model, _ = trained
    scores = model.score(_batch([1, 2, 0], [[0, 1, 2], [3, 4, 5], [0, 0, 7]]))
    assert scores.shape == (3, planted.n_items + 1) and torch.isfinite(scores).all()

    def padding_first(batch):
        scores = model.score(batch)
        scores[:, 0] = 1e9
        return scores

    plain = evaluate(model.score, planted.valid_cases, planted.n_items).metrics["all"]
    assert evaluate(padding_first, planted.valid_cases, planted.n_items).metrics["all"] == plain


def test_loss_decreases_during_training(trained):
    _, report = trained
    assert report.epochs[-1].train_loss < 0.5 * report.epochs[0].train_loss


def test_learns_planted_structure_well_above_popularity_and_the_untrained_graph(trained, planted):
    _, report = trained
    popularity = Popularity(PopularityConfig(planted.n_items))
    popularity_ndcg = popularity.fit(planted, CPU, progress=False).best_valid["ndcg@10"]
    untrained = LightGCN(_config(planted))
    untrained.attach_graph(build_interaction_graph(planted.train, planted.n_users, planted.n_items))
    untrained.eval()  # propagation alone already smooths random embeddings over the graph
    untrained_ndcg = evaluate(untrained.score, planted.valid_cases, planted.n_items).metrics["all"]["ndcg@10"]
    assert report.best_valid["ndcg@10"] > 0.45 > 0.3 > untrained_ndcg > popularity_ndcg


def test_best_epoch_weights_and_embeddings_are_loaded_after_fit(trained, planted):
    model, report = trained
    valid = evaluate(model.score, planted.valid_cases, planted.n_items)
    assert valid.metrics["all"]["ndcg@10"] == pytest.approx(report.best_valid["ndcg@10"])


def test_config_and_state_dict_rebuild_a_model_with_the_same_scores(trained, tmp_path):
    model, _ = trained
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "adjacency" not in saved["state_dict"]  # the graph is not saved
    fresh = type(model)(LightGCNConfig(**saved["config"]))
    fresh.load_state_dict(saved["state_dict"])
    fresh.eval()
    batch = _batch([1, 5, 0], [[1, 2, 3], [0, 4, 5], [0, 7, 8]])
    torch.testing.assert_close(fresh.score(batch), model.score(batch), rtol=0, atol=0)


def test_cold_user_is_scored_by_the_mean_of_its_history_items(trained, planted):
    model, _ = trained
    unseen = planted.n_users + 7
    scores = model.score(_batch([0, unseen, 0], [[0, 4, 5], [0, 4, 5], [0, 0, 0]]))
    expected = model.item_final[[4, 5]].mean(0) @ model.item_final.T
    torch.testing.assert_close(scores[0], expected)
    torch.testing.assert_close(scores[1], expected)
    assert (scores[2] == 0).all()  # no history, no user: every item ties


def test_user_without_training_edges_is_cold():
    train = pd.DataFrame({"user_idx": [1, 1, 2], "item_idx": [1, 2, 3]})  # user 3 has no edges
    model = LightGCN(LightGCNConfig(3, 3, dim=4, n_layers=1))
    model.attach_graph(build_interaction_graph(train, 3, 3))
    model.eval()  # propagates into the scoring buffers
    scores = model.score(_batch([1, 3], [[0, 3], [0, 3]]))
    torch.testing.assert_close(scores[0], model.user_final[1] @ model.item_final.T)
    torch.testing.assert_close(scores[1], model.item_final[3] @ model.item_final.T)


def test_graph_side_input_and_graph_built_from_train_train_the_same_model(planted, tmp_path):
    graph = build_interaction_graph(planted.train, planted.n_users, planted.n_items)
    graph.save(tmp_path / "graph.pt")
    states = []
    for side_inputs in (None, {"interaction_graph": graph}, {"interaction_graph": tmp_path / "graph.pt"}):
        model = LightGCN(_config(planted, max_epochs=1))
        model.fit(planted, CPU, side_inputs=side_inputs, progress=False)
        states.append(model.state_dict())
    for state in states[1:]:
        for name, tensor in states[0].items():
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)


def test_resume_from_checkpoint_continues_at_next_epoch(planted, tmp_path):
    straight = LightGCN(_config(planted, max_epochs=3, patience=100))
    straight.fit(planted, CPU, progress=False)

    interrupted = LightGCN(_config(planted, max_epochs=2, patience=100))
    interrupted.fit(planted, CPU, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed, seen = LightGCN(_config(planted, max_epochs=3, patience=100)), []
    report = resumed.fit(planted, CPU, progress=False, on_epoch=seen.append, checkpoint_dir=tmp_path)

    assert [e.epoch for e in seen] == [2] and [e.epoch for e in report.epochs] == [0, 1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_fit_refuses_a_config_sized_for_other_users(planted):
    model = LightGCN(LightGCNConfig(planted.n_items, planted.n_users - 1))
    with pytest.raises(ValueError, match="n_users=data.n_users"):
        model.fit(planted, CPU, progress=False)


def test_negatives_are_never_training_positives_of_their_user():
    # 2 users, 5 items; user 1 has 4 of the 5, so item 5 is their only negative
    train = pd.DataFrame({"user_idx": [1, 1, 1, 1, 2], "item_idx": [1, 2, 3, 4, 5]})
    pairs = BPRPairs(build_interaction_graph(train, 2, 5), batch_size=2)
    batches = list(pairs.epoch_batches(torch.Generator().manual_seed(0)))
    users, positives, negatives = (torch.cat(parts) for parts in zip(*batches))
    assert sorted(zip(users.tolist(), positives.tolist())) == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5)]
    assert (negatives[users == 1] == 5).all() and (negatives[users == 2] != 5).all()
    assert [len(b[0]) for b in batches] == [2, 2, 1]


def test_negatives_are_uniform_over_the_items_a_user_has_not_interacted_with():
    train = pd.DataFrame({"user_idx": [1, 1, 2], "item_idx": [2, 4, 1]})
    pairs = BPRPairs(build_interaction_graph(train, 2, 6), batch_size=1)
    users = torch.tensor([1] * 4000 + [2] * 4000)
    negatives = pairs.sample_negatives(users, torch.Generator().manual_seed(0))
    counts_1 = torch.bincount(negatives[:4000], minlength=7) / 4000
    counts_2 = torch.bincount(negatives[4000:], minlength=7) / 4000
    torch.testing.assert_close(counts_1, torch.tensor([0, 1, 0, 1, 0, 1, 1]) / 4, atol=0.03, rtol=0)
    torch.testing.assert_close(counts_2, torch.tensor([0, 0, 1, 1, 1, 1, 1]) / 5, atol=0.03, rtol=0)


def test_score_reads_the_whole_history():
    assert LightGCN(LightGCNConfig(5, 2)).history_length is None


def test_cold_user_history_longer_than_any_window_is_averaged_whole(trained, planted):
    model, _ = trained
    history = list(range(1, planted.n_items + 1)) * 5  # 300 entries, every item 5 times
    scores = model.score(_batch([0], [history]))
    torch.testing.assert_close(scores[0], model.item_final[1:].mean(0) @ model.item_final.T)


# ----- mini-batch training with neighbour sampling ------------------------------------------------


def _sampling_model(train: pd.DataFrame, n_users: int, n_items: int, fanouts=(2, 2, 2)) -> LightGCN:
    model = LightGCN(LightGCNConfig(n_items, n_users, dim=4, n_layers=len(fanouts), sampling=True, fanouts=fanouts))
    graph = build_interaction_graph(train, n_users, n_items)
    model.attach_graph(graph)
    model.sampler = NeighbourSampler(graph)
    return model


def test_sampled_propagation_is_exact_where_every_node_has_one_neighbour():
    model = _sampling_model(pd.DataFrame({"user_idx": [1, 2, 3], "item_idx": [2, 3, 1]}), 3, 3)
    users, items = model.propagate()
    nodes = torch.arange(3 + 3 + 2)
    estimate = model.sampled_final(nodes, torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, torch.cat([users, items]))


def test_sampled_propagation_is_unbiased():
    """Averaged over many draws, the sampled final embeddings reach the full propagation's."""
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"user_idx": rng.integers(1, 11, 60), "item_idx": rng.integers(1, 16, 60)})
    model = _sampling_model(train, 10, 15, fanouts=(3, 2, 2))
    with torch.no_grad():
        full = torch.cat(model.propagate())
        generator = torch.Generator().manual_seed(0)
        nodes = torch.arange(len(full))
        mean = sum(model.sampled_final(nodes, generator) for _ in range(3000)) / 3000
    assert (mean - full).abs().max() < 0.05 * full.abs().max()
    one = model.sampled_final(nodes, generator)
    assert (one - full).abs().max() > 0.05 * full.abs().max()  # a single draw is an estimate


def test_sampled_training_learns_and_resumes_exactly(planted, tmp_path):
    sampled = dict(sampling=True, fanouts=(5, 5), batch_size=128, patience=100)
    straight = LightGCN(_config(planted, max_epochs=3, **sampled))
    report = straight.fit(planted, CPU, progress=False)
    assert report.epochs[-1].train_loss < report.epochs[0].train_loss

    interrupted = LightGCN(_config(planted, max_epochs=2, **sampled))
    interrupted.fit(planted, CPU, progress=False, checkpoint_dir=tmp_path)
    resumed = LightGCN(_config(planted, max_epochs=3, **sampled))
    resumed.fit(planted, CPU, progress=False, checkpoint_dir=tmp_path)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_sampling_needs_one_fanout_per_layer():
    with pytest.raises(ValueError, match="one value >= 1 per layer"):
        LightGCNConfig(10, 5, n_layers=3, sampling=True, fanouts=(10, 5))
