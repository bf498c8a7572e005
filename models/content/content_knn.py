"""Content k-NN: a user is the mean text embedding of their latest items; items rank by cosine.

profile(u) = Σ_k w_k e(h_k) over the last ``history_length`` history items, with
w_k = exp(-recency_decay · k) and k = 0 for the latest item (recency_decay = 0: a plain mean);
score(u, i) = cos(profile(u), e(i)). The item embeddings ``e`` come from the
``item_text_embeddings`` side input, so an item nobody interacted with is ranked from its text
like any other: the family's point is the cold-item slice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.data import PAD, HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport

SIDE_INPUT = "item_text_embeddings"


@dataclass(frozen=True)
class ContentKNNConfig:
    n_items: int
    dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); must match
    history_length: int | None = 50  # latest history items that form the profile; None = all
    recency_decay: float = 0.0  # per step back from the latest item; used when the grid is empty
    recency_decay_grid: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0)  # chosen on valid NDCG@10
    seed: int = 0  # nothing here is random; kept so that every family's config has one
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.history_length is not None and self.history_length < 1:
            raise ValueError(f"history_length must be >= 1 or None, got {self.history_length}")
        if min((self.recency_decay, *self.recency_decay_grid)) < 0:
            raise ValueError("recency_decay and recency_decay_grid values must be >= 0")


class ContentKNN(nn.Module):
    """Scores every item by the cosine of its text embedding with the history's weighted mean."""

    def __init__(self, config: ContentKNNConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        self.register_buffer("item_embeddings", torch.zeros(config.n_items + 1, config.dim))
        self.register_buffer("recency_decay", torch.tensor(float(config.recency_decay)))  # as used

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,  # nothing to resume: fitting is a copy and a search
    ) -> FitReport:
        """Stores the item text embeddings, then one EpochLog per recency_decay tried (epoch =
        its index in recency_decay_grid); keeps the decay with the best validation NDCG@10."""
        from models.metrics import evaluate

        start = time.perf_counter()
        device = torch.device(device)
        self.item_embeddings.copy_(self._embeddings_from(side_inputs))
        self.to(device)
        self.eval()

        valid_cases = data.valid_cases
        grid = tuple(self.config.recency_decay_grid) if len(valid_cases) else ()
        grid = grid or (self.config.recency_decay,)
        histories = valid_cases["history"] if len(valid_cases) else ()
        longest = max((len(h) for h in histories), default=0)
        max_len = self.history_length or max(longest, 1)  # what score would keep anyway

        report = FitReport(curve="recency_decay", grid=[float(d) for d in grid])
        best_ndcg, best_decay = -1.0, grid[0]
        for index, decay in enumerate(grid):
            tick = time.perf_counter()
            self.recency_decay.fill_(decay)
            valid: dict[str, float] = {}
            if len(valid_cases):
                result = evaluate(
                    self.score,
                    valid_cases,
                    self.config.n_items,
                    device=device,
                    batch_size=self.config.eval_batch_size,
                    max_len=max_len,
                )
                valid = {k: float(v) for k, v in result.metrics["all"].items()}
            log = EpochLog(index, 0.0, valid, time.perf_counter() - tick)
            report.epochs.append(log)
            if on_epoch is not None:
                on_epoch(log)
            ndcg = valid.get("ndcg@10", 0.0)
            if index == 0 or ndcg > best_ndcg:
                best_ndcg, best_decay = ndcg, decay
                report.best_epoch, report.best_valid = index, valid
        self.recency_decay.fill_(best_decay)
        report.wall_seconds = time.perf_counter() - start
        return report

    def _embeddings_from(self, side_inputs: dict[str, Any] | None) -> torch.Tensor:
        """The side input's matrix, checked against the config and row-normalised (row 0 zero)."""
        embeddings = (side_inputs or {}).get(SIDE_INPUT)
        if embeddings is None:
            raise ValueError(
                f"ContentKNN needs the side input {SIDE_INPUT!r} (an ItemTextEmbeddings from "
                f"models.content.item_text.encode_item_text); got side inputs "
                f"{sorted(side_inputs or {})}"
            )
        matrix = torch.as_tensor(embeddings.matrix, dtype=torch.float32)
        expected = (self.config.n_items + 1, self.config.dim)
        if tuple(matrix.shape) != expected:
            raise ValueError(
                f"{SIDE_INPUT} has shape {tuple(matrix.shape)}, expected {expected} "
                "(n_items + 1, dim): set ContentKNNConfig.dim to the encoder's width"
            )
        matrix = F.normalize(matrix, dim=1)  # zero rows stay zero
        matrix[PAD] = 0.0
        return matrix

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """cos(weighted mean of the history's item embeddings, each item) -> Tensor[B, n_items + 1].

        The weights go through a [B, n_items + 1] matrix (repeats add up), so memory follows the
        catalogue, not the history length. An empty history scores every item 0.
        """
        items = batch.items.to(self.item_embeddings.device)
        if self.history_length is not None:
            items = items[:, -self.history_length :]
        present = (items != PAD).float()
        steps_back = present.flip(1).cumsum(1).flip(1) - 1.0  # 0 at the latest item
        weights = present * torch.exp(-self.recency_decay * steps_back)
        item_weights = torch.zeros(
            items.shape[0], self.config.n_items + 1, device=items.device
        ).scatter_add_(1, items, weights)
        profile = F.normalize(item_weights @ self.item_embeddings, dim=1)
        return profile @ self.item_embeddings.T
