"""Sentence-BERT two-tower: the cross-modal item tower (shapes, normalisation, the skipped id
token), new items scored from their text and metadata alone, cold users, the side-input
contract, save/load and resume."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from models.content.item_text import ItemTextEmbeddings
from models.content.sbert_two_tower import SBERTTwoTower, SBERTTwoTowerConfig
from models.metrics import evaluate
from models.registry import build_model, load_model, save_model, sized_to_side_inputs
from tests.models.conftest import CHAIN_LEN, N_CHAINS
from tests.models.content.test_two_tower import COLD_ITEMS, COLD_USERS, chain_of, history_batch, planted_content

CPU = torch.device("cpu")
TEXT_DIM = 8
TINY = dict(text_dim=TEXT_DIM, dim=16, fusion_heads=2, history_length=20, dropout=0.0, lr=0.01, batch_size=64, num_threads=1)


def text_of(n_items: int) -> torch.Tensor:
    """Item text embeddings: a chain one-hot plus noise, so the text says which chain an item
    belongs to; row 0 (padding) is zeros."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.zeros(n_items + 1, TEXT_DIM)
    for item in range(1, n_items + 1):
        matrix[item, chain_of(item)] = 1.0
    matrix[1:, N_CHAINS:] = 0.3 * torch.randn(n_items, TEXT_DIM - N_CHAINS, generator=generator)
    return F.normalize(matrix, dim=1)


def side(matrix: torch.Tensor) -> dict:
    return {"item_text_embeddings": ItemTextEmbeddings(matrix, "planted", 0.0, 0)}


@pytest.fixture(scope="module")
def planted(planted_split):
    return planted_content(planted_split)


@pytest.fixture(scope="module")
def untrained_and_trained(planted):
    config = SBERTTwoTowerConfig(planted.n_items, planted.n_users, **TINY, max_epochs=30, patience=6)
    untrained = SBERTTwoTower(config)
    untrained.attach(planted, side(text_of(planted.n_items)))
    untrained.eval()
    model = SBERTTwoTower(config)
    report = model.fit(planted, CPU, side_inputs=side(text_of(planted.n_items)), progress=False)
    return untrained, model, report


def valid_ndcg(model, data) -> float:
    return evaluate(model.score, data.valid_cases, data.n_items, max_len=model.history_length).metrics["all"]["ndcg@10"]


def rank_of(scores: torch.Tensor, item: int, history: list[int]) -> int:
    """1 + the items outside the history scoring at least as high (ties count against it)."""
    scores = scores[1:].clone()
    scores[torch.tensor(history) - 1] = float("-inf")
    return int((scores >= scores[item - 1]).sum())


# ----- the item tower ----------------------------------------------------------------------------


def test_fused_item_and_user_vectors_are_unit_vectors_of_the_model_width(planted):
    model = SBERTTwoTower(SBERTTwoTowerConfig(planted.n_items, planted.n_users, **{**TINY, "dropout": 0.1}))
    model.attach(planted, side(text_of(planted.n_items)))
    model.train()
    item_vectors = model.embed_items(torch.tensor([1, 5, 33, 60]))
    history = torch.tensor([[0, 1, 2], [3, 4, 6]])
    user_vectors = model.embed_users(torch.tensor([1, 0]), torch.tensor([1, 0]), history, model.embed_items(history.flatten()).view(2, 3, -1))
    assert item_vectors.shape == (4, 16) and user_vectors.shape == (2, 16)
    torch.testing.assert_close(item_vectors.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(user_vectors.norm(dim=1), torch.ones(2))
    model.eval()
    assert model.score(history_batch([1, 0], history)).shape == (2, planted.n_items + 1)
    assert torch.all(model.item_vectors[0] == 0)


def test_a_skipped_id_token_changes_nothing_and_a_present_one_is_read(untrained_and_trained):
    """Items without training interactions never read their id embedding (attention and pooling
    skip the token); trained items do."""
    _, model, _ = untrained_and_trained
    items = torch.tensor([COLD_ITEMS[0], 1])
    before = model.embed_items(items)
    with torch.no_grad():
        model.item_tower.item_emb.weight[items] += 3.0
        after = model.embed_items(items)
        model.item_tower.item_emb.weight[items] -= 3.0
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_items_trained_without_their_id_are_computed_as_new_items(planted):
    """item_id_dropout: an item drawn each step is computed exactly as an item without training
    interactions is; with (almost) every item drawn, every id token is skipped."""
    config = SBERTTwoTowerConfig(planted.n_items, planted.n_users, **TINY, item_id_dropout=0.999999)
    model = SBERTTwoTower(config)
    model.attach(planted, side(text_of(planted.n_items)))
    model.train()
    items = torch.arange(1, planted.n_items + 1)
    dropped = model.embed_items(items)
    model.item_trained.zero_()  # no item has interactions: every id token is skipped
    torch.testing.assert_close(dropped, model.embed_items(items))


# ----- new items from their text -----------------------------------------------------------------


def test_fit_improves_validation_ndcg_over_the_untrained_model(untrained_and_trained, planted):
    untrained, model, report = untrained_and_trained
    before, after = valid_ndcg(untrained, planted), valid_ndcg(model, planted)
    assert after > before + 0.3, (before, after)
    assert report.best_valid["ndcg@10"] == pytest.approx(after)


def test_cold_items_are_ranked_from_their_text(untrained_and_trained, planted):
    """Items without training interactions: each sits with its own chain's items, and a chain c
    validation history ranks chain c's cold item above the other chains' cold items."""
    _, model, _ = untrained_and_trained
    vectors = model.item_vectors
    for chain, cold in enumerate(COLD_ITEMS):
        closeness = [float((vectors[cold] @ vectors[c * CHAIN_LEN + 1 : (c + 1) * CHAIN_LEN + 1].T).mean()) for c in range(N_CHAINS)]
        assert max(range(N_CHAINS), key=closeness.__getitem__) == chain, (cold, closeness)
    wins = 0
    for history, target in zip(planted.valid_cases["history"], planted.valid_cases["target_item"]):
        scores = model.score(history_batch([0], [history[-20:]]))[0]
        own = COLD_ITEMS[chain_of(target)]
        wins += bool(scores[own] > max(scores[i] for i in COLD_ITEMS if i != own))
    assert wins >= 0.85 * len(planted.valid_cases), (wins, len(planted.valid_cases))


def test_a_cold_items_score_follows_its_text_and_nothing_else_moves(untrained_and_trained, planted):
    """Editing the cold item's text changes its score (and only its score); giving it another
    chain's text moves it to that chain's users."""
    _, model, _ = untrained_and_trained
    text = text_of(planted.n_items)
    cold = COLD_ITEMS[0]  # chain 0
    chain1_history = [CHAIN_LEN + k for k in (10, 11, 12, 13)]
    batch = history_batch([0, 0], [[k for k in (10, 11, 12, 13)], chain1_history])
    before = model.score(batch)
    edited = text.clone()
    edited[cold] = text[CHAIN_LEN + 7]  # a chain-1 item's text
    try:
        model.attach_text(edited)
        after = model.score(batch)
    finally:
        model.attach_text(text)
    others = [i for i in range(1, planted.n_items + 1) if i != cold]
    torch.testing.assert_close(after[:, others], before[:, others])
    assert (after[:, cold] - before[:, cold]).abs().min() > 1e-3
    assert after[1, cold] > before[1, cold]  # the chain-1 user now likes it better
    torch.testing.assert_close(model.score(batch), before)  # the original text gives the original scores


def test_a_new_item_described_like_a_popular_one_ranks_high(untrained_and_trained, planted):
    """Plant the most frequent training item's text and metadata on a cold item of another
    chain: for the history that leads to the popular item, the new item ranks next to it."""
    _, model, _ = untrained_and_trained
    popular = int(planted.train["item_idx"].value_counts().index[0])
    chain = chain_of(popular)
    start = chain * CHAIN_LEN
    history = [start + (popular - start - 1 - back) % CHAIN_LEN + 1 for back in (4, 3, 2, 1)]  # the 4 items before it
    cold = COLD_ITEMS[(chain + 1) % N_CHAINS]  # another chain's cold item: only what it is described as can place it
    text = text_of(planted.n_items)
    planted_text = text.clone()
    planted_text[cold] = text[popular]
    before = rank_of(model.score(history_batch([0], [history]))[0], cold, history)
    attributes = model.item_attributes[cold].clone()
    try:
        model.item_attributes[cold] = model.item_attributes[popular]
        model.attach_text(planted_text)
        scores = model.score(history_batch([0], [history]))[0]
    finally:
        model.item_attributes[cold] = attributes
        model.attach_text(text)
    assert rank_of(scores, popular, history) <= 2  # the history does lead to the popular item
    assert rank_of(scores, cold, history) <= 5 and before > 10, (rank_of(scores, cold, history), before)


def test_unknown_user_is_scored_from_their_history(untrained_and_trained):
    _, model, _ = untrained_and_trained
    for user, chain in zip(COLD_USERS, (0, 1, 2)):
        history = [[chain * CHAIN_LEN + k for k in (2, 3, 4, 6)]]
        scores = model.score(history_batch([user], history))
        torch.testing.assert_close(scores, model.score(history_batch([0], history)))
        scores = scores[0, 1:].clone()
        scores[torch.tensor(history[0]) - 1] = float("-inf")
        top = (scores.topk(10).indices + 1).tolist()
        assert sum(chain_of(i) == chain for i in top) >= 8, (chain, top)


# ----- contract, persistence ---------------------------------------------------------------------


def test_missing_or_mismatched_text_names_the_side_input(planted):
    model = SBERTTwoTower(SBERTTwoTowerConfig(planted.n_items, planted.n_users, **TINY, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(planted, CPU, progress=False)
    wrong = SimpleNamespace(matrix=torch.zeros(planted.n_items + 1, TEXT_DIM + 1))
    with pytest.raises(ValueError, match=r"\(61, 8\).*got \(61, 9\)"):
        model.fit(planted, CPU, side_inputs={"item_text_embeddings": wrong}, progress=False)


def test_the_registry_sizes_text_dim_to_the_side_input():
    text = {"item_text_embeddings": ItemTextEmbeddings(torch.zeros(5, 24), "x", 0.0, 0)}
    assert sized_to_side_inputs("sbert_two_tower", {"lr": 0.1}, text) == {"text_dim": 24, "lr": 0.1}
    assert build_model("sbert_two_tower", 4, sized_to_side_inputs("sbert_two_tower", {}, text), n_users=3).config.text_dim == 24


def test_save_load_round_trip_gives_identical_scores(untrained_and_trained, planted, tmp_path):
    """The text is not saved: the loaded model scores from its stored item vectors, and the
    same text attached again gives the same scores."""
    _, model, _ = untrained_and_trained
    save_model(tmp_path / "m.pt", "sbert_two_tower", model)
    family, loaded = load_model(tmp_path / "m.pt")
    batch = history_batch([1, 0, COLD_USERS[0]], [[0, 1, 2], [3, 4, 5], [21, 22, 23]])
    assert family == "sbert_two_tower" and loaded.config == model.config
    assert torch.equal(loaded.score(batch), model.score(batch))
    loaded.attach_text(text_of(planted.n_items))
    torch.testing.assert_close(loaded.score(batch), model.score(batch))


def test_resumed_fit_matches_an_uninterrupted_one(planted, tmp_path):
    def fit(max_epochs, checkpoint_dir=None):
        model = build_model("sbert_two_tower", planted.n_items, {**TINY, "max_epochs": max_epochs, "patience": 99}, n_users=planted.n_users)
        return model, model.fit(planted, CPU, side_inputs=side(text_of(planted.n_items)), progress=False, checkpoint_dir=checkpoint_dir)

    fit(2, tmp_path)  # "killed" after 2 epochs
    resumed, report = fit(4, tmp_path)
    whole, whole_report = fit(4)
    batch = history_batch([1, 2, 0], [[1, 2, 3], [21, 22, 23], [41, 42, 43]])
    assert [e.epoch for e in report.epochs] == [0, 1, 2, 3]
    assert [e.train_loss for e in report.epochs] == [e.train_loss for e in whole_report.epochs]
    torch.testing.assert_close(resumed.score(batch), whole.score(batch), rtol=0, atol=0)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="text_dim"):
        SBERTTwoTowerConfig(10, 5, text_dim=0)
    with pytest.raises(ValueError, match="fusion_heads"):
        SBERTTwoTowerConfig(10, 5, dim=10, fusion_heads=3)
    with pytest.raises(ValueError, match="item_id_dropout"):
        SBERTTwoTowerConfig(10, 5, item_id_dropout=-0.1)
