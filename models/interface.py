"""The surface every model family implements (DESIGN.md, "The recommender interface").

A family is one file in ``models/`` with a frozen config dataclass and an ``nn.Module`` that has:

- ``__init__(config)``: builds the module from the config alone (so weights reload anywhere);
- ``fit(data: TrainingData, device, *, side_inputs=None, progress=True, on_epoch=None,
  checkpoint_dir=None) -> FitReport``: trains on ``data.train``, picks the best epoch on
  validation NDCG@10 of ``data.valid_cases``, leaves the best weights loaded, and resumes from
  ``checkpoint_dir`` when a checkpoint is there. ``TrainingData`` holds no test case at all;
  ``side_inputs`` holds what the family's spec asks for (``models.registry.FamilySpec``), e.g.
  ``{"interaction_graph": InteractionGraph}``;
- ``score(batch: HistoryBatch) -> Tensor[B, n_items + 1]``: scores of every item for each
  history (column 0 is padding and is never ranked); batched, no Python loop over users;
- ``history_length``: how many of the latest history items ``score`` reads (None: all of them);
  the evaluator and the served model cut histories to it;
- optionally ``validation_score(batch)``: what ``models.training.train_loop`` ranks the
  validation cases by instead of ``score`` (GraphSAGE and GNN-TV leave out the items without
  training edges there: see ``GraphSAGE.validation_score``);
- ``state_dict()`` / ``load_state_dict()`` from ``nn.Module``.

A config field declared with ``score_time_field(default)`` changes only how a trained model
scores, never its training (GraphSAGE's ``new_item_offset``): it may be set on a trained model
(``dataclasses.replace`` of its config), and benchmark checkpoints leave it out of their key.

There is no base class to inherit from: this Protocol only documents and type-checks the shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from models.data import HistoryBatch, TrainingData


SCORE_TIME = "score_time"  # dataclass field metadata key: see score_time_field


def score_time_field(default: Any) -> Any:
    """A config field that only ``score`` reads (set after training, outside checkpoint keys)."""
    return field(default=default, metadata={SCORE_TIME: True})


def training_config(config: Any) -> dict[str, Any]:
    """``asdict(config)`` without its score-time fields: what determines the training."""
    skip = {f.name for f in fields(config) if f.metadata.get(SCORE_TIME)}
    return {k: v for k, v in asdict(config).items() if k not in skip}


@dataclass
class EpochLog:
    """One epoch of training: what MLflow plots as curves."""

    epoch: int
    train_loss: float
    valid: dict[str, float]  # e.g. {"ndcg@10": 0.12, "hr@10": 0.2, "mrr": 0.05}
    seconds: float


@dataclass
class FitReport:
    """What ``fit`` returns: the epoch curve and where it peaked."""

    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    stopped_early: bool = False
    # What ``epochs`` are: "epoch" (trained epochs, with a training loss), or the name of a
    # hyper-parameter chosen on validation NDCG@10 whose tried values, one per EpochLog, are
    # ``grid`` (EASE: "l2"; no training loss), or "" when the fit has no curve at all and
    # ``fitted_by`` says what it did instead ("counts").
    curve: str = "epoch"
    grid: list[float] = field(default_factory=list)
    fitted_by: str = ""
    # validation NDCG@10 of popularity on the same cases, below which patience does not stop
    # training (``models.training.train_loop``); None where the fit has no such rule
    popularity_floor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recommender(Protocol):
    config: Any
    history_length: int | None

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> FitReport: ...

    def score(self, batch: HistoryBatch) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any: ...
