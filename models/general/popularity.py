"""Most-popular baseline: every user gets the catalogue ranked by training-part counts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from models.data import HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport


@dataclass(frozen=True)
class PopularityConfig:
    n_items: int


class Popularity(nn.Module):
    """score(batch)[b, i] = number of interactions with item i in the training part."""

    def __init__(self, config: PopularityConfig):
        super().__init__()
        self.config = config
        self.register_buffer("counts", torch.zeros(config.n_items + 1))

    history_length = 1  # score reads no history; the evaluator still needs a column

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,  # nothing to resume: fitting is one count
    ) -> FitReport:
        from models.metrics import evaluate

        start = time.perf_counter()
        device = torch.device(device)
        counts = np.bincount(
            data.train["item_idx"].to_numpy(np.int64), minlength=self.config.n_items + 1
        )[: self.config.n_items + 1]
        self.to(device)
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        self.counts[0] = 0.0
        self.eval()

        valid_cases = data.valid_cases
        valid: dict[str, float] = {}
        if len(valid_cases):
            result = evaluate(self.score, valid_cases, self.config.n_items, device=device, max_len=self.history_length)
            valid = {k: float(v) for k, v in result.metrics["all"].items()}
        log = EpochLog(epoch=0, train_loss=0.0, valid=valid, seconds=time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(log)
        return FitReport(
            epochs=[log], best_epoch=0, best_valid=valid, wall_seconds=log.seconds, curve="", fitted_by="counts"
        )

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """-> FloatTensor[B, n_items + 1], the same counts in every row (a fresh tensor)."""
        return self.counts.unsqueeze(0).repeat(batch.items.shape[0], 1)
