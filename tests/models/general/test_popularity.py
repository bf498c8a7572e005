import numpy as np
import torch

from models.data import HistoryBatch
from models.general.popularity import Popularity, PopularityConfig


def _batch(items: list[list[int]]) -> HistoryBatch:
    tensor = torch.tensor(items)
    return HistoryBatch(tensor, torch.zeros_like(tensor), torch.zeros(len(items), dtype=torch.long))


def test_scores_equal_train_counts(planted_split):
    model = Popularity(PopularityConfig(planted_split.n_items))
    model.fit(planted_split.training_data(), torch.device("cpu"), progress=False)
    counts = np.bincount(planted_split.train["item_idx"], minlength=planted_split.n_items + 1)
    scores = model.score(_batch([[0, 1], [3, 4]]))
    assert scores.shape == (2, planted_split.n_items + 1)
    assert torch.equal(scores[0], torch.as_tensor(counts, dtype=torch.float32))
    assert torch.equal(scores[1], scores[0])


def test_fit_reports_one_epoch_with_valid_metrics(planted_split):
    seen = []
    report = Popularity(PopularityConfig(planted_split.n_items)).fit(
        planted_split.training_data(), torch.device("cpu"), progress=False, on_epoch=seen.append
    )
    assert [e.epoch for e in report.epochs] == [0] and seen == report.epochs
    assert report.epochs[0].train_loss == 0.0
    assert {"ndcg@10", "hr@10", "mrr"} <= set(report.best_valid)
