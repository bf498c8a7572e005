"""GraphSAGE with attention aggregation: the layer, the inductive user path against the
propagated graph, cold users and cold items without retraining, the side-input contract."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from models.general.popularity import Popularity, PopularityConfig
from models.graph.graphsage import AttentionSAGELayer, GraphSAGE, GraphSAGEConfig
from models.graph.interaction_graph import build_interaction_graph, without_untrained_items
from models.metrics import evaluate
from models.registry import load_model, save_model
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
TEXT_DIM = 8
TINY = dict(text_dim=TEXT_DIM, dim=16, n_layers=2, heads=2, dropout=0.0, lr=0.01, batch_size=256)



def _text(n_items: int) -> SimpleNamespace:
    """What the item_text_embeddings side input holds: here a chain one-hot plus noise, so an
    item's text says which chain it belongs to (row 0, padding, is zeros)."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.zeros(n_items + 1, TEXT_DIM)
    for item in range(1, n_items + 1):
        matrix[item, chain_of(item)] = 1.0
    matrix[1:, N_CHAINS:] = 0.3 * torch.randn(n_items, TEXT_DIM - N_CHAINS, generator=generator)
    return SimpleNamespace(matrix=F.normalize(matrix, dim=1))



@pytest.fixture(scope="module")
def trained(planted_cold_items):
    model = GraphSAGE(GraphSAGEConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, max_epochs=30, patience=5))
    report = model.fit(planted_cold_items, CPU, side_inputs={"item_text_embeddings": _text(planted_cold_items.n_items)}, progress=False)
    return model, report


def test_a_node_without_edges_keeps_its_root_term():
    torch.manual_seed(0)
    layer = AttentionSAGELayer(4, heads=2, dropout=0.0).eval()
    src, dst = torch.randn(3, 4), torch.randn(2, 4)
    out = layer(src, dst, torch.tensor([[0, 1, 2], [0, 0, 0]]))  # dst 1 has no in-edges
    expected = layer.norm(dst[1] + F.gelu(layer.root(dst[1]) + layer.neighbours.bias))
    torch.testing.assert_close(out[1], expected)
    # dst 0 reads its neighbours: moving one of them moves it, dst 1 stays
    moved = layer(src + torch.tensor([[0.0] * 4, [5.0] * 4, [0.0] * 4]), dst, torch.tensor([[0, 1, 2], [0, 0, 0]]))
    assert not torch.allclose(moved[0], out[0]) and torch.allclose(moved[1], out[1])


def test_history_path_gives_the_propagated_user_state(trained, planted_cold_items):
    """A warm user embedded from a history equal to their training items is exactly the user
    node of the propagated graph: the inductive path is the transductive one for known nodes."""
    model, _ = trained
    with torch.no_grad():
        users, _, _ = model.propagate()
    for user in (1, 2, 30):
        items = planted_cold_items.train.loc[planted_cold_items.train["user_idx"] == user, "item_idx"].tolist()
        state = model.embed_users(history_batch([user], [items]))
        torch.testing.assert_close(state[0], users[user], rtol=1e-4, atol=1e-5)


def test_loss_decreases_and_beats_popularity(trained, planted_cold_items):
    model, report = trained
    assert report.epochs[-1].train_loss < 0.8 * report.epochs[0].train_loss
    popularity = Popularity(PopularityConfig(planted_cold_items.n_items))
    popularity.fit(planted_cold_items, CPU, progress=False)
    ours = evaluate(model.score, planted_cold_items.valid_cases, planted_cold_items.n_items).metrics["all"]["ndcg@10"]
    theirs = evaluate(popularity.score, planted_cold_items.valid_cases, planted_cold_items.n_items).metrics["all"]["ndcg@10"]
    assert ours > theirs + 0.05


def test_cold_user_is_embedded_from_their_first_items_without_retraining(trained, planted_cold_items):
    """User 0 (unknown) with a few items of one chain: the chain's other items rank first."""
    model, _ = trained
    for chain in range(N_CHAINS):
        history = [chain * CHAIN_LEN + k for k in (2, 3, 4)]
        scores = model.score(history_batch([0], [history]))[0, 1:]
        scores[torch.tensor(history) - 1] = float("-inf")
        top = (scores.topk(10).indices + 1).tolist()
        assert sum(chain_of(i) == chain for i in top) >= 8, (chain, top)


def test_cold_items_are_ranked_from_their_text(trained):
    """Items with no training edge: a user of chain c ranks chain c's cold item above the
    other chains' cold items (LightGCN has nothing to tell them apart)."""
    model, _ = trained
    assert not model.item_has_edges[COLD_ITEMS].any()
    for chain, cold in enumerate(COLD_ITEMS):
        history = [chain * CHAIN_LEN + k for k in (10, 11, 12, 13)]
        scores = model.score(history_batch([0], [history]))[0]
        others = [i for i in COLD_ITEMS if i != cold]
        assert scores[cold] > scores[others].max(), (chain, scores[COLD_ITEMS])


def test_missing_or_mismatched_text_names_the_side_input(planted_cold_items):
    model = GraphSAGE(GraphSAGEConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(planted_cold_items, CPU, progress=False)
    wrong = SimpleNamespace(matrix=torch.zeros(planted_cold_items.n_items + 1, TEXT_DIM + 1))
    with pytest.raises(ValueError, match=r"\(61, 8\).*got \(61, 9\)"):
        model.fit(planted_cold_items, CPU, side_inputs={"item_text_embeddings": wrong}, progress=False)


def test_without_text_it_trains_on_ids_and_graph_alone(planted_cold_items):
    model = GraphSAGE(GraphSAGEConfig(planted_cold_items.n_items, planted_cold_items.n_users, **{**TINY, "text_dim": 0}, max_epochs=2))
    graph = build_interaction_graph(planted_cold_items.train, planted_cold_items.n_users, planted_cold_items.n_items)
    report = model.fit(planted_cold_items, CPU, side_inputs={"interaction_graph": graph}, progress=False)
    assert len(report.epochs) == 2 and model.text_proj is None


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    model, _ = trained
    save_model(tmp_path / "m.pt", "graphsage", model)
    family, loaded = load_model(tmp_path / "m.pt")
    batch = history_batch([1, 0, 7], [[0, 1, 2], [3, 4, 5], [21, 22, 23]])
    assert family == "graphsage"
    torch.testing.assert_close(loaded.eval().score(batch), model.score(batch))


def test_pad_columns_change_no_score(trained):
    model, _ = trained
    narrow = model.score(history_batch([1, 0], [[1, 2], [0, 22]]))
    wide = model.score(history_batch([1, 0], [[0, 0, 0, 1, 2], [0, 0, 0, 0, 22]]))
    torch.testing.assert_close(narrow, wide)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="id_dropout"):
        GraphSAGEConfig(10, 5, id_dropout=1.0)
    with pytest.raises(ValueError, match="text_dim"):
        GraphSAGEConfig(10, 5, text_dim=-1)


def test_items_trained_as_cold_have_neither_id_nor_edges(planted_cold_items):
    """cold_item_dropout: an item drawn as cold is computed exactly as an item with no training
    edge (what every cold item is at test time); with (almost) every item drawn, all are."""
    config = GraphSAGEConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, id_dropout=0.0, cold_item_dropout=0.999999)
    text = torch.as_tensor(_text(planted_cold_items.n_items).matrix)
    model = GraphSAGE(config)
    model.attach(build_interaction_graph(planted_cold_items.train, planted_cold_items.n_users, planted_cold_items.n_items), text)
    empty = GraphSAGE(config)
    empty.load_state_dict(model.state_dict())
    empty.attach(build_interaction_graph(planted_cold_items.train.iloc[:0], planted_cold_items.n_users, planted_cold_items.n_items), text)
    model.train(), empty.train()
    torch.manual_seed(0)
    _, items, _ = model.propagate()
    _, expected, _ = empty.propagate()
    torch.testing.assert_close(items, expected)
    model.eval()  # no dropout at inference: the known items read their neighbours again
    assert not torch.allclose(model.item_final, expected.detach())


def test_an_untrained_model_starts_near_the_uniform_guess(planted_cold_items):
    """Logits are scaled by 1/sqrt(dim): LayerNorm'd states have norm ~sqrt(dim), and unscaled
    dot products started training far above log(n_items) (10.96 vs 8.19 on ML-1M)."""
    data = planted_cold_items
    model = GraphSAGE(GraphSAGEConfig(data.n_items, data.n_users, **{**TINY, "dim": 64}))
    model.attach(build_interaction_graph(data.train, data.n_users, data.n_items), _text(data.n_items).matrix)
    model.eval()
    with torch.no_grad():
        loss = model.loss(torch.tensor(data.train["user_idx"].to_numpy()), torch.tensor(data.train["item_idx"].to_numpy()))
    assert abs(loss.item() - math.log(data.n_items)) < 0.5, (loss.item(), math.log(data.n_items))


@pytest.mark.parametrize("over_trained_items", [True, False])
def test_items_without_training_edges_do_not_enter_the_loss(planted_cold_items, over_trained_items):
    """softmax_over_trained_items: the cold items are never a positive, so as negatives only they
    would teach the text path that their texts mean "never watched" (on the default data every
    new item then ranked below the known ones). With the option on, their text cannot move the loss."""
    data = planted_cold_items
    model = GraphSAGE(GraphSAGEConfig(data.n_items, data.n_users, **TINY, softmax_over_trained_items=over_trained_items))
    text = torch.as_tensor(_text(data.n_items).matrix)
    pairs = torch.tensor(data.train["user_idx"].to_numpy()), torch.tensor(data.train["item_idx"].to_numpy())
    losses = []
    for cold_text in (text[COLD_ITEMS], -text[COLD_ITEMS]):
        moved = text.clone()
        moved[COLD_ITEMS] = cold_text
        model.attach(build_interaction_graph(data.train, data.n_users, data.n_items), moved)
        model.eval()
        with torch.no_grad():
            losses.append(model.loss(*pairs).item())
    assert (losses[0] == losses[1]) == over_trained_items, losses


def test_validation_ranks_only_the_items_with_training_edges(trained, planted_cold_items):
    """validate_on_trained_items: no validation case can reward a new item (the split removes the
    cold items' validation rows), so validation leaves them out; test scoring keeps them."""
    model, report = trained
    batch = history_batch([0, 0], [[1, 2, 3], [21, 22, 23]])
    scores, validation = model.score(batch), model.validation_score(batch)
    assert torch.isinf(validation[:, COLD_ITEMS]).all() and torch.isfinite(scores[:, COLD_ITEMS]).all()
    known = model.item_has_edges.nonzero().squeeze(1)
    torch.testing.assert_close(validation[:, known], scores[:, known])
    # the loop validated with it: the best epoch's NDCG@10 is that of validation_score
    again = evaluate(model.validation_score, planted_cold_items.valid_cases, planted_cold_items.n_items)
    assert report.best_valid["ndcg@10"] == pytest.approx(again.metrics["all"]["ndcg@10"], abs=1e-6)
    everything = GraphSAGE(GraphSAGEConfig(planted_cold_items.n_items, planted_cold_items.n_users, **TINY, validate_on_trained_items=False))
    everything.load_state_dict(model.state_dict())
    everything.attach(build_interaction_graph(planted_cold_items.train, planted_cold_items.n_users, planted_cold_items.n_items),
                      _text(planted_cold_items.n_items).matrix)  # fmt: skip
    everything.eval()
    torch.testing.assert_close(everything.validation_score(batch), everything.score(batch))


def test_item_bias_follows_the_id_row(planted_cold_items):
    """item_bias: a known item's logit gains its own bias, an item without training edges (or
    trained without its id this step) row 0's, in the loss and in score alike."""
    data = planted_cold_items
    model = GraphSAGE(GraphSAGEConfig(data.n_items, data.n_users, **TINY, item_bias=True, id_dropout=0.0, cold_item_dropout=0.0))
    model.attach(build_interaction_graph(data.train, data.n_users, data.n_items), _text(data.n_items).matrix)
    with torch.no_grad():
        model.bias.weight.copy_(torch.arange(data.n_items + 1, dtype=torch.float32)[:, None] / 10)
    model.eval()
    batch = history_batch([0], [[1, 2, 3]])
    plain = model.embed_users(batch) @ model.item_final.T * model.logit_scale
    expected = torch.arange(data.n_items + 1, dtype=torch.float32) / 10
    expected[COLD_ITEMS] = 0.0  # row 0
    expected[0] = 0.0
    torch.testing.assert_close(model.score(batch) - plain, expected[None].expand_as(plain))
    # the loss reads the same rows: its logits are the plain ones plus those biases
    users, items = torch.tensor([1, 2]), torch.tensor([2, 3])
    with torch.no_grad():
        user_states, item_states, _, rows = model.propagate(with_rows=True)
        logits = user_states[users] @ item_states[1:].T * model.logit_scale + expected[1:]
        logits[:, [c - 1 for c in COLD_ITEMS]] = float("-inf")  # softmax over the trained items
        torch.testing.assert_close(model.loss(users, items), F.cross_entropy(logits, items - 1))
    assert (rows[COLD_ITEMS] == 0).all()


def test_new_item_offset_moves_only_the_items_without_training_edges(trained):
    """new_item_offset is a score-time setting: set on a trained model, it shifts exactly the
    scores of the items without training edges, and it is not part of what trains the model."""
    from models.interface import training_config

    model, _ = trained
    batch = history_batch([0, 0], [[1, 2, 3], [21, 22, 23]])
    served, shifted = model.score(batch), score_with(model, batch, new_item_offset=-2.5)
    new = ~model.item_has_edges
    new[0] = False  # padding: never ranked either way
    torch.testing.assert_close(shifted[:, new], served[:, new] - 2.5)
    torch.testing.assert_close(shifted[:, model.item_has_edges], served[:, model.item_has_edges])
    assert "new_item_offset" not in training_config(model.config) and "item_bias" in training_config(model.config)


def test_a_pair_trained_as_a_cold_user_has_the_loss_of_that_cold_user_scored(planted_cold_items):
    """cold_user_share: a pair drawn as cold gets exactly the user state a cold user is scored
    with at test time (a new node joined to their first items, unknown id); with (almost) every
    pair drawn, the training loss is the cross-entropy of those scores. Pairs whose item is among
    the shown first items are left as they are (here: left out)."""
    data = planted_cold_items
    config = GraphSAGEConfig(data.n_items, data.n_users, **TINY, id_dropout=0.0, cold_item_dropout=0.0,
                             cold_user_share=0.999999, cold_user_history=3)  # fmt: skip
    model = GraphSAGE(config)
    model.attach(build_interaction_graph(data.train, data.n_users, data.n_items), _text(data.n_items).matrix)
    loss, expected, users, positives = loss_as_cold_users(model, data)
    torch.testing.assert_close(loss, expected)
    model.eval()
    known = model.score(history_batch(users, model.first_items[users]))[:, 1:]  # id rows kept
    assert not torch.allclose(loss, F.cross_entropy(without_untrained_items(known, model.item_has_edges), positives - 1))


def test_fit_with_cold_users_keeps_their_first_items_out_of_the_weights(planted_cold_items, tmp_path):
    data = planted_cold_items
    model = GraphSAGE(GraphSAGEConfig(data.n_items, data.n_users, **TINY, cold_user_share=0.3, max_epochs=2))
    report = model.fit(data, CPU, side_inputs={"item_text_embeddings": _text(data.n_items)}, progress=False)
    assert len(report.epochs) == 2
    assert model.first_items.shape == (data.n_users + 1, 5)
    assert "first_items" not in model.state_dict()
    save_model(tmp_path / "m.pt", "graphsage", model)
    _, loaded = load_model(tmp_path / "m.pt")
    batch = history_batch([0, 1], [[1, 2, 3], [21, 22, 23]])
    torch.testing.assert_close(loaded.score(batch), model.score(batch))


def test_one_user_at_a_time_scores_as_the_batch_does(trained):
    """A batch of one (a serving request) takes the dense attention path, a larger batch PyG's
    message passing: the same scores, for histories with repeats, padding, or nothing at all."""
    assert_one_row_scores_as_the_batch(trained[0])


def test_the_short_history_prior_raises_popular_items_for_short_histories_only(trained):
    """short_history_popularity: a new user's history of at most short_history_items items gets
    weight * log(1 + training users) added; a longer one, or a known user's, is scored as before.
    Weights saved before the item counts existed still load."""
    model, _ = trained
    batch = history_batch([0, 0, 3], [[0, 0, 0, 1, 2], [21, 22, 23, 24, 25], [0, 0, 0, 1, 2]])
    plain = model.score(batch)
    prior = score_with(model, batch, short_history_popularity=2.0, short_history_items=2)
    torch.testing.assert_close(prior[0], plain[0] + 2.0 * model.item_log_count)
    torch.testing.assert_close(prior[1:], plain[1:])
    assert model.item_log_count[1:].max() > 0
    old = {k: v for k, v in model.state_dict().items() if k != "item_log_count"}
    again = GraphSAGE(model.config)
    again.load_state_dict(old)
    assert again.item_log_count.abs().sum() == 0
