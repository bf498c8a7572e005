"""Basic hybrid: alpha chosen on validation (planted cases where content or the collaborative
part is what works), cold items by content alone, the per-user standardised blend, saving and
resuming."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.content.hybrid import Hybrid, HybridConfig, standardise
from models.data import HistoryBatch, TrainingData
from models.general.popularity import Popularity, PopularityConfig
from models.metrics import evaluate
from models.registry import load_model, save_model
from models.training import CHECKPOINT_NAME
from tests.models.conftest import CHAIN_LEN, N_CHAINS

CPU = torch.device("cpu")
TEXT_DIM = 8
TINY = dict(text_dim=TEXT_DIM, dim=16, lr=0.02, batch_size=128, max_epochs=20, patience=5, recency_decay_grid=(0.0, 1.0))
COLD_ITEMS = [5, 25, 45]  # one per chain: every training row and validation target with them is removed
N_CLUSTERS, CLUSTER_SIZE = 4, 10


def chain_of(item: int) -> int:
    return (item - 1) // CHAIN_LEN


def batch(histories: list[list[int]]) -> HistoryBatch:
    width = max(map(len, histories))
    items = torch.tensor([[0] * (width - len(h)) + h for h in histories])
    return HistoryBatch(items, torch.zeros_like(items), torch.zeros(len(histories), dtype=torch.long))


def group_text(n_items: int, group_size: int, n_groups: int) -> SimpleNamespace:
    """Each item's text is its group's one-hot plus noise (row 0, padding, is zeros)."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.zeros(n_items + 1, TEXT_DIM)
    for item in range(1, n_items + 1):
        matrix[item, (item - 1) // group_size] = 1.0
    matrix[1:, n_groups:] = 0.3 * torch.randn(n_items, TEXT_DIM - n_groups, generator=generator)
    matrix = F.normalize(matrix, dim=1)
    matrix[0] = 0
    return SimpleNamespace(matrix=matrix)


def random_text(n_items: int) -> SimpleNamespace:
    matrix = F.normalize(torch.randn(n_items + 1, TEXT_DIM, generator=torch.Generator().manual_seed(1)), dim=1)
    matrix[0] = 0
    return SimpleNamespace(matrix=matrix)


def fitted(data: TrainingData, side: SimpleNamespace, **config) -> tuple[Hybrid, object]:
    model = Hybrid(HybridConfig(data.n_items, **{**TINY, **config}))
    report = model.fit(data, CPU, side_inputs={"item_text_embeddings": side}, progress=False)
    return model, report


@pytest.fixture(scope="module")
def chains_with_cold_items(planted_split) -> TrainingData:
    data = planted_split.training_data()
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, data.items, data.users)


@pytest.fixture(scope="module")
def trained(chains_with_cold_items):
    """Chains the collaborative part can learn, and text that says each item's chain."""
    return fitted(chains_with_cold_items, group_text(chains_with_cold_items.n_items, CHAIN_LEN, N_CHAINS))


@pytest.fixture(scope="module")
def content_planted(make_split) -> TrainingData:
    """Where only content works: 40 items in 4 text clusters; each user watched 6 random items,
    then 3 items of one cluster (the last training item, the validation and the test target).
    Co-watching carries no cluster signal; the latest item's text does."""
    rng = np.random.default_rng(0)
    sequences = {}
    for user in range(1, 121):
        cluster = user % N_CLUSTERS
        members = cluster * CLUSTER_SIZE + 1 + rng.permutation(CLUSTER_SIZE)
        others = rng.permutation(np.setdiff1d(np.arange(1, N_CLUSTERS * CLUSTER_SIZE + 1), members))
        sequences[user] = [int(i) for i in others[:6]] + [int(i) for i in members[:3]]
    return make_split(sequences, N_CLUSTERS * CLUSTER_SIZE).training_data()


# ----- alpha chosen on validation -----------------------------------------------------------


def test_alpha_is_high_where_the_collaborative_score_works(planted_split):
    """Chains: co-watching predicts the next item, the (random) text does not."""
    data = planted_split.training_data()
    model, report = fitted(data, random_text(data.n_items))
    assert model.alpha.item() >= 0.8
    assert report.fitted_by.startswith(f"alpha {model.alpha.item():g} and recency_decay {model.recency_decay.item():g} chosen")
    result = evaluate(model.score, data.valid_cases, data.n_items, max_len=model.history_length)
    assert report.best_valid == {k: float(v) for k, v in result.metrics["all"].items()}
    model.alpha.fill_(0.0)  # content alone is far worse here
    assert evaluate(model.score, data.valid_cases, data.n_items).metrics["all"]["ndcg@10"] < report.best_valid["ndcg@10"] - 0.2


def test_alpha_is_low_where_the_content_score_works(content_planted):
    """The target shares the latest item's cluster: the decay that follows the latest item wins too."""
    side = group_text(content_planted.n_items, CLUSTER_SIZE, N_CLUSTERS)
    model, report = fitted(content_planted, side, recency_decay_grid=(0.0, 5.0))
    assert model.alpha.item() < 0.25 and model.recency_decay.item() == 5.0, report.fitted_by
    model.alpha.fill_(1.0)  # the collaborative part alone is far worse here
    collaborative = evaluate(model.score, content_planted.valid_cases, content_planted.n_items).metrics["all"]["ndcg@10"]
    assert collaborative < report.best_valid["ndcg@10"] - 0.1


def test_without_validation_cases_the_config_alpha_is_kept(planted_split):
    data = planted_split.training_data()
    empty = TrainingData(data.n_users, data.n_items, data.train, data.valid_cases.iloc[:0], data.items, data.users)
    model, report = fitted(empty, random_text(data.n_items), alpha=0.3, recency_decay=0.7, max_epochs=2)
    assert model.alpha.item() == pytest.approx(0.3) and model.recency_decay.item() == pytest.approx(0.7)
    assert "no validation cases" in report.fitted_by


# ----- the blend ----------------------------------------------------------------------------


def test_a_cold_item_is_scored_by_its_content_alone(trained):
    model, _ = trained
    assert not model.item_is_warm[COLD_ITEMS].any() and model.item_is_warm[[1, 2, 3]].all()
    histories = batch([[1, 2, 3, 4], [41, 42, 43, 44], [21, 22]])
    content = standardise(model.content_scores(histories.items), torch.arange(61) > 0)
    saved = model.alpha.item()
    try:
        model.alpha.fill_(1.0)
        only_collaborative = model.score(histories)
        model.alpha.fill_(0.0)
        only_content = model.score(histories)
    finally:
        model.alpha.fill_(saved)
    torch.testing.assert_close(only_collaborative[:, COLD_ITEMS], content[:, COLD_ITEMS])
    torch.testing.assert_close(only_content[:, COLD_ITEMS], content[:, COLD_ITEMS])
    warm = [1, 30, 50]
    assert not torch.allclose(only_collaborative[:, warm], only_content[:, warm])
    # a user of chain c ranks chain c's cold item above the other chains' cold items
    scores = model.score(histories)
    for row, chain in enumerate((0, 2, 1)):
        cold = COLD_ITEMS[chain]
        assert scores[row, cold] > scores[row, [i for i in COLD_ITEMS if i != cold]].max()


def test_score_blends_the_per_user_standardised_scores(trained):
    model, _ = trained
    histories = batch([[1, 2, 3], [30, 31, 32, 33, 34], [50]])
    collaborative = model.collaborative_scores(histories.items).detach()
    content = model.content_scores(histories.items)
    warm = model.item_is_warm.clone()

    def z(scores, columns):
        part = scores[:, columns]
        return (scores - part.mean(1, keepdim=True)) / part.std(1, unbiased=False, keepdim=True)

    alpha = model.alpha.item()
    expected = alpha * z(collaborative, warm) + (1 - alpha) * z(content, torch.arange(61) > 0)
    expected[:, ~warm] = z(content, torch.arange(61) > 0)[:, ~warm]
    expected[:, 0] = 0
    torch.testing.assert_close(model.score(histories), expected, rtol=1e-4, atol=1e-5)


def test_standardise_gives_zero_mean_unit_spread_and_zeros_without_spread():
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 100.0], [0.0, 5.0, 5.0, 5.0, 5.0]])
    over = torch.tensor([False, True, True, True, False])
    z = standardise(scores, over)
    torch.testing.assert_close(z[0, 1:4].mean(), torch.tensor(0.0))
    torch.testing.assert_close(z[0, 1:4].std(unbiased=False), torch.tensor(1.0))
    assert torch.all(z[1] == 0)


def test_both_losses_beat_popularity_on_the_chains(planted_split):
    data = planted_split.training_data()
    popularity = Popularity(PopularityConfig(data.n_items))
    popularity.fit(data, CPU, progress=False)
    theirs = evaluate(popularity.score, data.valid_cases, data.n_items).metrics["all"]["ndcg@10"]
    for loss in ("softmax", "bpr"):
        _, report = fitted(data, random_text(data.n_items), loss=loss)
        assert report.best_valid["ndcg@10"] > theirs + 0.3, loss


def test_the_training_target_is_left_out_of_its_own_history(trained):
    model, _ = trained
    items = torch.tensor([[1, 2, 3]])
    left_out = model.collaborative_scores(items, leave_out=torch.tensor([3]))
    torch.testing.assert_close(left_out, model.collaborative_scores(torch.tensor([[0, 1, 2]])))


# ----- contract, saving, resuming -----------------------------------------------------------


def test_missing_or_mismatched_text_names_the_side_input(planted_split):
    data = planted_split.training_data()
    model = Hybrid(HybridConfig(data.n_items, **TINY))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(data, CPU, progress=False)
    wrong = SimpleNamespace(matrix=torch.zeros(data.n_items + 1, TEXT_DIM + 1))
    with pytest.raises(ValueError, match=r"\(61, 8\).*got \(61, 9\)"):
        model.fit(data, CPU, side_inputs={"item_text_embeddings": wrong}, progress=False)


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    model, _ = trained
    save_model(tmp_path / "m.pt", "hybrid", model)
    family, loaded = load_model(tmp_path / "m.pt")
    histories = batch([[1, 2, 3], [44, 45], [60], [0]])
    assert family == "hybrid" and loaded.config == model.config
    assert loaded.alpha.item() == model.alpha.item()
    assert torch.equal(loaded.score(histories), model.score(histories))


def test_resume_from_checkpoint_continues_at_next_epoch(planted_split, tmp_path):
    data = planted_split.training_data()
    side = {"item_text_embeddings": group_text(data.n_items, CHAIN_LEN, N_CHAINS)}
    config = dict(TINY, patience=100, loss="bpr")
    del config["max_epochs"]
    straight = Hybrid(HybridConfig(data.n_items, **config, max_epochs=3))
    straight.fit(data, CPU, side_inputs=side, progress=False)

    interrupted = Hybrid(HybridConfig(data.n_items, **config, max_epochs=2))
    interrupted.fit(data, CPU, side_inputs=side, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed, seen = Hybrid(HybridConfig(data.n_items, **config, max_epochs=3)), []
    report = resumed.fit(data, CPU, side_inputs=side, progress=False, on_epoch=seen.append, checkpoint_dir=tmp_path)

    assert [e.epoch for e in seen] == [2]
    assert [e.epoch for e in report.epochs] == [0, 1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="alpha"):
        HybridConfig(10, alpha_grid=(0.5, 1.5))
    with pytest.raises(ValueError, match="loss"):
        HybridConfig(10, loss="hinge")
