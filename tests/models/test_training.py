"""The shared epoch loop: what validation ranks by."""

from dataclasses import dataclass

import torch
from torch import nn

from models.data import HistoryBatch
from models.training import train_loop


@dataclass(frozen=True)
class ToyConfig:
    n_items: int
    lr: float = 0.01
    weight_decay: float = 0.0
    max_epochs: int = 1
    patience: int = 1
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512


class ScoreOnly(nn.Module):
    """``score`` ranks each validation case's target last."""

    def __init__(self, config: ToyConfig, targets: dict[int, int]):
        super().__init__()
        self.config, self.targets, self.history_length = config, targets, None
        self.weight = nn.Parameter(torch.zeros(1))

    def target_column(self, batch: HistoryBatch) -> torch.Tensor:
        scores = torch.zeros(len(batch.users), self.config.n_items + 1)
        scores[torch.arange(len(batch.users)), [self.targets[int(u)] for u in batch.users]] = 1.0
        return scores

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return -self.target_column(batch)


class WithValidationScore(ScoreOnly):
    """... and ``validation_score`` ranks it first."""

    def validation_score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.target_column(batch)


def _validated(model_class, data) -> float:
    targets = dict(zip(data.valid_cases["user_idx"], data.valid_cases["target_item"]))
    model = model_class(ToyConfig(data.n_items), targets)
    report = train_loop(
        model, data, "cpu", name="toy",
        epoch_batches=lambda generator: [torch.zeros(1)],
        batch_loss=lambda batch: (model.weight**2).sum() + batch.sum(),
        progress=False,
    )  # fmt: skip
    return report.best_valid["ndcg@10"]


def test_validation_ranks_by_validation_score_where_the_model_has_one(planted_split):
    data = planted_split.training_data()
    assert _validated(WithValidationScore, data) == 1.0
    assert _validated(ScoreOnly, data) == 0.0


def _fit(model_class, data, **config):
    targets = dict(zip(data.valid_cases["user_idx"], data.valid_cases["target_item"]))
    model = model_class(ToyConfig(data.n_items, **config), targets)
    return train_loop(
        model, data, "cpu", name="toy",
        epoch_batches=lambda generator: [torch.zeros(1)],
        batch_loss=lambda batch: (model.weight**2).sum() + batch.sum(),
        progress=False,
    )  # fmt: skip


def test_patience_does_not_stop_a_model_below_the_popularity_floor(planted_split, capsys):
    from models.training import popularity_floor

    data = planted_split.training_data()
    floor = popularity_floor(data, data.n_items)
    assert floor > 0.0  # popularity finds some targets on the planted split
    below = _fit(ScoreOnly, data, max_epochs=4, patience=1)  # validation NDCG@10 0, never better
    assert len(below.epochs) == 4 and not below.stopped_early and below.popularity_floor == floor
    assert "below popularity's" in capsys.readouterr().out
    above = _fit(WithValidationScore, data, max_epochs=4, patience=1)  # 1.0 from the first epoch
    assert len(above.epochs) == 2 and above.stopped_early
