import numpy as np
import pytest
import torch

from models.data import HistoryBatch
from models.general.ease import EASE, EASEConfig, ease_weights, gram_matrix

CPU = torch.device("cpu")


def _numpy_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck (2019), Algorithm 1, in float64."""
    g = x.T @ x + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_match_numpy_closed_form(make_split):
    sequences = {1: [1, 2, 3, 1], 2: [2, 3, 4], 3: [1, 4, 5, 2], 4: [5, 3, 1]}  # user 1 repeats 1
    data = make_split(sequences, 5)
    x = np.zeros((5, 6))
    for user, item in data.train[["user_idx", "item_idx"]].itertuples(index=False):
        x[user, item] = 1.0
    gram = gram_matrix(data, 5, CPU)
    np.testing.assert_allclose(gram.numpy(), x.T @ x)
    np.testing.assert_allclose(ease_weights(gram, 2.0).numpy(), _numpy_ease(x, 2.0), atol=1e-5)


def test_diagonal_is_zero(planted_split):
    model = EASE(EASEConfig(planted_split.n_items, l2_grid=()))
    model.fit(planted_split.training_data(), CPU, progress=False)
    assert model.weights.abs().sum() > 0
    assert torch.all(model.weights.diagonal() == 0)


def test_score_is_multi_hot_history_times_weights(planted_split):
    model = EASE(EASEConfig(planted_split.n_items, l2_grid=()))
    model.fit(planted_split.training_data(), CPU, progress=False)
    # padding and a repeat count once; an empty history scores 0 (rows are kept in place)
    items = torch.tensor([[0, 0, 3, 5], [0, 0, 0, 0], [1, 2, 2, 4], [0, 0, 0, 0]])
    users = torch.zeros(4, dtype=torch.long)
    scores = model.score(HistoryBatch(items, torch.zeros_like(items), users))
    empty = torch.zeros(model.weights.shape[1])
    expected = torch.stack([model.weights[[3, 5]].sum(0), empty, model.weights[[1, 2, 4]].sum(0), empty])
    torch.testing.assert_close(scores, expected)


def test_picks_l2_with_best_valid_ndcg(planted_split):
    grid = (0.5, 50.0, 5000.0)
    model = EASE(EASEConfig(planted_split.n_items, l2_grid=grid))
    report = model.fit(planted_split.training_data(), CPU, progress=False)
    ndcgs = [e.valid["ndcg@10"] for e in report.epochs]
    assert [e.epoch for e in report.epochs] == [0, 1, 2]
    assert len(set(ndcgs)) > 1  # the grid matters on this data
    best = int(np.argmax(ndcgs))
    assert report.best_epoch == best and report.best_valid["ndcg@10"] == max(ndcgs)
    assert model.l2.item() == pytest.approx(grid[best])
    gram = gram_matrix(planted_split, planted_split.n_items, CPU)
    torch.testing.assert_close(model.weights, ease_weights(gram, grid[best]))
