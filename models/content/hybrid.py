"""Basic hybrid: a collaborative score and a content score, standardised per user and blended.

- collaborative: an item-item embedding model (FISM-style): a user is the mean of their latest
  ``history_length`` history items' input embeddings q, and c(u, i) = profile(u) · p_i + b_i.
  It is trained on the training part's distinct (user, item) pairs: the item is predicted from
  the user's other training items (the same window ``score`` reads, the item itself left out),
  with full-softmax cross-entropy over the catalogue (``loss="softmax"``) or BPR against one
  uniformly drawn item (``loss="bpr"``). A user is embedded from their history, so a cold user
  needs no retraining.
- content: content k-NN's score, cos(recency-weighted mean of the history's text embeddings,
  the item's text embedding) (the ``item_text_embeddings`` side input, ``text_dim`` wide), with
  weight exp(-recency_decay · steps back from the latest item).

Per user, each score is standardised over the items it knows: z(c) over the warm items (those
with training interactions), z(t) over the catalogue. A warm item scores
alpha · z(c) + (1 - alpha) · z(t); a cold item has no collaborative score and scores z(t) alone.

``fit`` trains the collaborative part with the shared loop (``models.training``), choosing its
epoch on validation NDCG@10 of alpha = 1 (collaborative scores, cold items by content); then
alpha and the content profile's recency decay are chosen together on validation NDCG@10 over
``alpha_grid`` × ``recency_decay_grid`` (evaluations only, no training: a few seconds). The
FitReport keeps the training curve; its ``best_valid`` is the blend's at the chosen pair, and
``fitted_by`` records the NDCG@10 of every alpha at the chosen decay. Both chosen values are
buffers of the state_dict (``alpha``, ``recency_decay``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.content.item_text import TEXT_INPUT, checked_text
from models.data import PAD, HistoryBatch, TrainingData, left_pad
from models.interface import EpochLog, FitReport
from models.training import train_loop



@dataclass(frozen=True)
class HybridConfig:
    n_items: int
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); must match
    dim: int = 64  # collaborative item embeddings
    loss: Literal["softmax", "bpr"] = "softmax"
    alpha: float = 0.5  # collaborative share, used when there is no validation case to choose on
    alpha_grid: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # chosen on valid NDCG@10
    history_length: int | None = 50  # latest history items both parts read; None = all
    recency_decay: float = 1.0  # content profile's decay; used when recency_decay_grid is empty
    recency_decay_grid: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)  # chosen with alpha on valid NDCG@10
    lr: float = 5e-3
    weight_decay: float = 0.0
    batch_size: int = 1024  # training (user, item) pairs per step
    max_epochs: int = 50
    patience: int = 5  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if min(self.dim, self.text_dim, self.batch_size) < 1:
            raise ValueError("dim, text_dim and batch_size must be >= 1")
        if not all(0.0 <= a <= 1.0 for a in (self.alpha, *self.alpha_grid)):
            raise ValueError("alpha and alpha_grid values must be in [0, 1]")
        if self.loss not in ("softmax", "bpr"):
            raise ValueError(f"loss must be 'softmax' or 'bpr', got {self.loss!r}")
        if min((self.recency_decay, *self.recency_decay_grid)) < 0:
            raise ValueError("recency_decay and recency_decay_grid values must be >= 0")
        if self.history_length is not None and self.history_length < 1:
            raise ValueError(f"history_length must be >= 1 or None, got {self.history_length}")


def standardise(scores: torch.Tensor, over: torch.Tensor) -> torch.Tensor:
    """Per row, (scores - mean) / std over the columns where ``over`` (BoolTensor[n]) is True
    -> FloatTensor like ``scores``; a row with no spread is all zeros."""
    cols = over.float()
    n = cols.sum().clamp(min=1)
    mean = (scores * cols).sum(1, keepdim=True) / n
    std = (((scores - mean) ** 2 * cols).sum(1, keepdim=True) / n).sqrt()
    return (scores - mean) / std.clamp(min=1e-8) * (std > 1e-8)


class Hybrid(nn.Module):
    def __init__(self, config: HybridConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        n = config.n_items + 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_in = nn.Embedding(n, config.dim, padding_idx=PAD)  # q: history side
            self.item_out = nn.Embedding(n, config.dim)  # p: candidate side
            nn.init.normal_(self.item_in.weight[1:], std=0.1)
            nn.init.normal_(self.item_out.weight, std=0.1)
            self.item_bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("item_text", torch.zeros(n, config.text_dim))  # row-normalised, row 0 zero
        self.register_buffer("item_is_warm", torch.zeros(n, dtype=torch.bool))  # has training interactions
        self.register_buffer("alpha", torch.tensor(float(config.alpha)))  # the collaborative share used
        self.register_buffer("recency_decay", torch.tensor(float(config.recency_decay)))  # as used
        self.register_buffer("user_histories", None, persistent=False)  # attached by fit

    # ----- the two scores --------------------------------------------------------------------

    def _window(self, items: torch.Tensor) -> torch.Tensor:
        return items if self.history_length is None else items[:, -self.history_length :]

    def collaborative_scores(self, items: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """mean(q over the history items, ``leave_out`` [B] excluded) · p + b -> [B, n_items + 1]."""
        present = items != PAD
        if leave_out is not None:
            present &= items != leave_out.unsqueeze(1)
        profile = (self.item_in(items) * present.unsqueeze(2)).sum(1) / present.sum(1, keepdim=True).clamp(min=1)
        return profile @ self.item_out.weight.T + self.item_bias

    def content_scores(self, items: torch.Tensor) -> torch.Tensor:
        """cos(recency-weighted mean of the history's text embeddings, each item's) -> [B, n_items + 1]."""
        present = (items != PAD).float()
        steps_back = present.flip(1).cumsum(1).flip(1) - 1.0  # 0 at the latest item
        weights = present * torch.exp(-self.recency_decay * steps_back)
        item_weights = torch.zeros(items.shape[0], self.config.n_items + 1, device=items.device)
        profile = F.normalize(item_weights.scatter_add_(1, items, weights) @ self.item_text, dim=1)
        return profile @ self.item_text.T

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """alpha · z(collaborative) + (1 - alpha) · z(content) on warm items, z(content) on cold
        ones, z standardised per user -> FloatTensor[B, n_items + 1] (column 0 is 0)."""
        items = self._window(batch.items.to(self.item_text.device))
        candidates = torch.ones_like(self.item_is_warm)
        candidates[PAD] = False
        warm = self.item_is_warm & candidates
        collaborative = standardise(self.collaborative_scores(items), warm)
        content = standardise(self.content_scores(items), candidates)
        blended = torch.where(warm, self.alpha * collaborative + (1 - self.alpha) * content, content)
        return blended * candidates

    # ----- training --------------------------------------------------------------------------

    def loss(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Each pair's item predicted from the user's other training items (one history window)."""
        scores = self.collaborative_scores(self.user_histories[users], leave_out=items)
        if self.config.loss == "softmax":
            return F.cross_entropy(scores[:, 1:], items - 1)
        negatives = torch.randint(1, self.config.n_items + 1, items.shape).to(items.device)
        margin = scores.gather(1, items.unsqueeze(1)) - scores.gather(1, negatives.unsqueeze(1))
        return -F.logsigmoid(margin).mean()

    def _text_from(self, side_inputs: dict[str, Any] | None) -> torch.Tensor:
        embeddings = (side_inputs or {}).get(TEXT_INPUT)
        matrix = F.normalize(checked_text(None if embeddings is None else embeddings.matrix, self.config, "Hybrid"), dim=1)
        matrix[PAD] = 0.0
        return matrix

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> FitReport:
        """Train the collaborative part (epoch chosen at alpha = 1), then choose alpha on the
        validation cases. ``side_inputs``: ``item_text_embeddings`` (required)."""
        from models.metrics import evaluate

        cfg = self.config
        if data.n_items != cfg.n_items:
            raise ValueError(f"data has {data.n_items} items, the config {cfg.n_items}")
        device = torch.device(device)
        self.item_text.copy_(self._text_from(side_inputs))
        pairs = data.train[["user_idx", "item_idx"]].drop_duplicates().to_numpy(np.int64)
        users, items = torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())
        warm = torch.zeros_like(self.item_is_warm)
        warm[items] = True
        self.item_is_warm.copy_(warm)
        sequences = data.train_sequences()
        n_users = max([data.n_users, *sequences]) if sequences else data.n_users
        longest = max((len(s) for s in sequences.values()), default=1)
        histories = [sequences.get(u, []) for u in range(n_users + 1)]
        self.user_histories = left_pad(histories, min(self.history_length or longest, longest) or 1)
        self.to(device)
        self.alpha.fill_(1.0)  # epochs are chosen on the collaborative part
        self.recency_decay.fill_(cfg.recency_decay)

        def epoch_batches(generator: torch.Generator):
            order = torch.randperm(len(users), generator=generator)
            for start in range(0, len(order), cfg.batch_size):
                chunk = order[start : start + cfg.batch_size]
                yield users[chunk], items[chunk]

        report = train_loop(
            self,
            data,
            device,
            name="hybrid",
            epoch_batches=epoch_batches,
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )

        start = time.perf_counter()
        valid_cases = data.valid_cases
        alphas = tuple(cfg.alpha_grid) if len(valid_cases) else ()
        decays = (tuple(cfg.recency_decay_grid) or (cfg.recency_decay,)) if alphas else ()
        best, best_ndcg, curves = (cfg.alpha, cfg.recency_decay), -1.0, {}
        for decay in decays:
            self.recency_decay.fill_(decay)
            for alpha in alphas:
                self.alpha.fill_(alpha)
                result = evaluate(self.score, valid_cases, cfg.n_items, device=device,
                                  batch_size=cfg.eval_batch_size, max_len=self.history_length)  # fmt: skip
                valid = {k: float(v) for k, v in result.metrics["all"].items()}
                curves.setdefault(decay, []).append(f"{alpha:g}: {valid['ndcg@10']:.4f}")
                if valid["ndcg@10"] > best_ndcg:  # ties keep the pair earlier in the grids
                    best, best_ndcg, report.best_valid = (alpha, decay), valid["ndcg@10"], valid
        self.alpha.fill_(best[0])
        self.recency_decay.fill_(best[1])
        report.fitted_by = (
            f"alpha {best[0]:g} and recency_decay {best[1]:g} chosen on validation NDCG@10; "
            f"at that decay, alpha {{{', '.join(curves[best[1]])}}}"
            if alphas else f"alpha {best[0]:g}, recency_decay {best[1]:g} (config: no validation cases)"
        )
        report.wall_seconds += time.perf_counter() - start
        return report
