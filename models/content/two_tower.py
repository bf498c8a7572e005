"""Two-tower retrieval model trained with in-batch sampled softmax and logQ correction
(Covington et al. 2016 for the towers; Yi et al. 2019 for the loss).

**User tower:** a user-id embedding (row 0: the unknown user), the pooled item-tower vectors of
the user's latest ``history_length`` items (``pooling``: a plain mean, or attention whose query is
a learned vector plus the user's id/demographics context and whose keys carry the position from
the latest item), and the user's demographics where the users table has them (``user_features``:
age bucket, gender, occupation, region; a missing column or value is simply absent), concatenated
through a two-layer MLP with a residual sum, L2-normalised.

**Item tower:** an item-id embedding (row 0: the unknown item) and the mean of the item's
categorical features (``item_features``: kind, release decade, genres, network, creator, cast),
each value hashed by a stable crc32 of ``"field=value"`` into ``attribute_buckets`` rows so that a
value first seen at inference still has a row; MLP with a residual sum, L2-normalised.

**Loss:** each training event after a user's first is a (user, history before it, item) example.
For a batch of B examples, logit[i, j] = cos(u_i, v_j) / temperature - log q(j), where q(j) is
item j's share of the training examples (its chance to be a batch positive): the logQ correction
removes the popularity bias of using other rows' positives as negatives. An in-batch item equal
to row i's positive but in another column is not a negative of row i (masked). Cross-entropy
against the diagonal.

**Cold start without retraining:** the user's id is dropped (row 0) for ``unknown_user_prob`` of
the examples and their demographics, independently, as often, so a user unseen in training (or
user 0, as the evaluator sends cold users) is scored from their history (and demographics where
known). Item ids are dropped for ``item_id_dropout`` of the items each step, and an item without
training interactions always uses the unknown row, so it is scored from its metadata.

Scores are cos(user vector, item vector); the item vectors are refreshed into a buffer whenever
the model switches to eval, so ``score`` needs only the state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from models.data import PAD, HistoryBatch, TrainingData
from models.graph.interaction_graph import check_split_size, known_user_rows
from models.hashing import stable_row
from models.interface import EpochLog, FitReport
from models.training import train_loop

ITEM_FEATURES = ("kind", "year", "genres", "network", "creator", "cast")
USER_FEATURES = ("age", "gender", "occupation", "region")
AGE_BINS = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups; years elsewhere fall in the same bins
VALUE_SEPARATOR = "|"


@dataclass(frozen=True)
class TwoTowerConfig:
    n_items: int
    n_users: int = 0
    dim: int = 64
    history_length: int = 50  # latest history items the user tower pools
    pooling: Literal["mean", "attention"] = "attention"
    temperature: float = 0.05  # of the cosine logits in the in-batch softmax
    dropout: float = 0.1  # inside the towers' MLPs
    unknown_user_prob: float = 0.2  # share of examples trained without the user id (and, apart, without demographics)
    item_id_dropout: float = 0.1  # share of items trained without their id each step (cold items)
    attribute_buckets: int = 4096  # hashed rows for item feature values and user demographics
    max_item_attributes: int = 16  # feature values kept per item, in item_features order
    item_features: tuple[str, ...] = ITEM_FEATURES
    user_features: tuple[str, ...] = ("age", "gender", "occupation")
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 1024  # examples per step = in-batch negatives per row + 1
    max_epochs: int = 100
    patience: int = 10
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"  # read by the shared loop (bf16 on CUDA)
    compile: bool = False  # read by the shared loop

    def __post_init__(self) -> None:
        check_tower_config(self)


def check_tower_config(config: Any) -> None:
    """The checks both two-tower configs share (ValueError naming the field)."""
    if min(config.dim, config.history_length, config.max_item_attributes, config.batch_size) < 1:
        raise ValueError("dim, history_length, max_item_attributes and batch_size must be >= 1")
    if config.pooling not in ("mean", "attention"):
        raise ValueError(f"pooling must be 'mean' or 'attention', got {config.pooling!r}")
    if config.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {config.temperature}")
    for name in ("dropout", "unknown_user_prob", "item_id_dropout"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.attribute_buckets < 2:
        raise ValueError(f"attribute_buckets must be >= 2 (row 0 is padding), got {config.attribute_buckets}")
    for name, known in (("item_features", ITEM_FEATURES), ("user_features", USER_FEATURES)):
        unknown = sorted(set(getattr(config, name)) - set(known))
        if unknown:
            raise ValueError(f"{name}: unknown {unknown}; known: {', '.join(known)}")
    if config.mixed_precision not in ("none", "bf16"):
        raise ValueError(f"mixed_precision must be 'none' or 'bf16', got {config.mixed_precision!r}")


# ----- features ----------------------------------------------------------------------------------


def _strings(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table.columns:
        return [""] * len(table)
    return [s.strip() for s in table[column].astype("string").fillna("").tolist()]


def item_attribute_rows(items: pd.DataFrame, n_items: int, features: tuple[str, ...], buckets: int,
                        width: int) -> torch.Tensor:  # fmt: skip
    """LongTensor[n_items + 1, width]: each item's hashed feature values in ``features`` order,
    the first ``width`` of them, 0-padded. "year" is the release decade from ``release_date``;
    "|"-separated columns give one value each; absent columns and empty values give none."""
    out = torch.zeros(n_items + 1, width, dtype=torch.long)
    if "item_idx" not in items.columns:
        return out
    index = items["item_idx"].to_numpy(np.int64)
    columns = {f: _strings(items, "release_date" if f == "year" else f) for f in features}
    for row, item in enumerate(index.tolist()):
        if not 1 <= item <= n_items:
            continue
        values = []
        for field, column in columns.items():
            text = column[row]
            if field == "year":
                values += [(field, f"{text[:3]}0s")] if text[:4].isdigit() else []
            else:
                values += [(field, v.strip()) for v in text.split(VALUE_SEPARATOR) if v.strip()]
        values = values[:width]
        out[item, : len(values)] = torch.tensor([stable_row(f"{f}={v}", buckets) for f, v in values], dtype=torch.long)
    return out


def user_demographic_rows(users: pd.DataFrame, n_users: int, features: tuple[str, ...], buckets: int) -> torch.Tensor:
    """LongTensor[n_users + 1, len(features)]: each user's hashed demographics, 0 where the users
    table lacks the column or the value (row 0, the unknown user, has none). Age goes into the
    MovieLens-1M groups (AGE_BINS)."""
    out = torch.zeros(n_users + 1, len(features), dtype=torch.long)
    if "user_idx" not in users.columns or not len(users):
        return out
    index = users["user_idx"].to_numpy(np.int64)
    inside = (index >= 1) & (index <= n_users)
    for column, field in enumerate(features):
        if field not in users.columns:
            continue
        if field == "age":
            age = pd.to_numeric(users["age"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            values = [str(int(np.digitize(a, AGE_BINS))) if np.isfinite(a) else "" for a in age]
        else:
            values = _strings(users, field)
        rows = [stable_row(f"{field}={v}", buckets) if v else 0 for v in values]
        out[torch.as_tensor(index[inside]), column] = torch.as_tensor(np.asarray(rows, dtype=np.int64)[inside])
    return out


def masked_mean(vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """vectors [..., K, D], present BoolTensor[..., K] -> [..., D]; zeros where nothing is present."""
    weights = present.to(vectors.dtype).unsqueeze(-1)
    return (vectors * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)


# ----- towers and loss ---------------------------------------------------------------------------


class ItemTower(nn.Module):
    """v = normalise(id + categories + MLP([id, categories])) -> FloatTensor[N, D]."""

    def __init__(self, n_items: int, dim: int, attribute_buckets: int, dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim)  # row 0: the unknown item
        self.attribute_emb = nn.Embedding(attribute_buckets, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.attribute_emb.weight, std=0.1)
        with torch.no_grad():
            self.attribute_emb.weight[0].zero_()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, id_rows: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """id_rows: LongTensor[N] (0: no id); attributes: LongTensor[N, K] (0: padding)."""
        ids = self.item_emb(id_rows)
        categories = masked_mean(self.attribute_emb(attributes), attributes != 0)
        return F.normalize(ids + categories + self.mlp(torch.cat([ids, categories], -1)), dim=-1)


class UserTower(nn.Module):
    """u = normalise(id + history + demographics + MLP([id, history, demographics])), where history
    pools the item-tower vectors of the user's latest items -> FloatTensor[B, D]."""

    def __init__(self, n_users: int, dim: int, history_length: int, attribute_buckets: int,
                 pooling: str, dropout: float):  # fmt: skip
        super().__init__()
        self.pooling = pooling
        self.user_emb = nn.Embedding(n_users + 1, dim)  # row 0: the unknown user
        self.demographic_emb = nn.Embedding(attribute_buckets, dim, padding_idx=0)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.demographic_emb.weight, std=0.1)
        with torch.no_grad():
            self.demographic_emb.weight[0].zero_()
        if pooling == "attention":
            self.position_emb = nn.Embedding(history_length, dim)  # steps back from the latest item
            nn.init.normal_(self.position_emb.weight, std=0.1)
            self.query = nn.Parameter(torch.zeros(dim))
            self.context_query = nn.Linear(dim, dim)
            self.key = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def pool(self, history: torch.Tensor, present: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """history [B, L, D] (latest item last), present BoolTensor[B, L], context [B, D] -> [B, D].
        An empty history pools to zeros."""
        if self.pooling == "mean":
            return masked_mean(history, present)
        steps_back = torch.arange(history.shape[1] - 1, -1, -1, device=history.device)
        keys = self.key(history + self.position_emb(steps_back))
        query = self.query + self.context_query(context)
        logits = (keys @ query.unsqueeze(-1)).squeeze(-1) / keys.shape[-1] ** 0.5
        weights = torch.softmax(logits.masked_fill(~present, float("-inf")), -1)
        return (torch.nan_to_num(weights, nan=0.0).unsqueeze(-1) * history).sum(1)  # all -inf rows: NaN -> 0

    def forward(self, id_rows: torch.Tensor, demographics: torch.Tensor, history: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """id_rows: LongTensor[B] (0: unknown user); demographics: LongTensor[B, F] (0: absent);
        history: item vectors [B, L, D]; present: BoolTensor[B, L]."""
        ids = self.user_emb(id_rows)
        demo = masked_mean(self.demographic_emb(demographics), demographics != 0)
        pooled = self.pool(history, present, ids + demo)
        return F.normalize(ids + pooled + demo + self.mlp(torch.cat([ids, pooled, demo], -1)), dim=-1)


def in_batch_softmax_loss(user_vectors: torch.Tensor, item_vectors: torch.Tensor, positives: torch.Tensor,
                          log_q: torch.Tensor, temperature: float) -> torch.Tensor:  # fmt: skip
    """Sampled softmax over the batch's positives with logQ correction (Yi et al. 2019).

    user_vectors, item_vectors: [B, D] (row i's positive is item_vectors[i]); positives:
    LongTensor[B] item ids; log_q: [B], log of each positive's sampling probability.
    logit[i, j] = <u_i, v_j> / temperature - log_q[j]; column j != i holding row i's own
    positive item is masked (it is no negative of row i). Mean cross-entropy on the diagonal.
    """
    logits = user_vectors @ item_vectors.T / temperature - log_q.unsqueeze(0)
    same_item = positives.unsqueeze(1) == positives.unsqueeze(0)
    same_item.fill_diagonal_(False)
    logits = logits.masked_fill(same_item, float("-inf"))
    return F.cross_entropy(logits.float(), torch.arange(len(positives), device=logits.device))


class NextItemExamples:
    """Every training event after a user's first, as (user, the up to ``width`` events before it,
    the event's item), in shuffled batches."""

    def __init__(self, train: pd.DataFrame, width: int):
        users = train["user_idx"].to_numpy(np.int64)
        order = np.argsort(users, kind="stable")  # train is user-ordered; stable keeps time order
        users = users[order]
        self.items = torch.as_tensor(train["item_idx"].to_numpy(np.int64)[order])
        self.users = torch.as_tensor(users)
        first = np.r_[True, users[1:] != users[:-1]] if len(users) else np.zeros(0, bool)
        self.start = torch.as_tensor(np.maximum.accumulate(np.where(first, np.arange(len(users)), 0)))
        self.rows = torch.as_tensor(np.flatnonzero(~first))
        self.width = width

    def __len__(self) -> int:
        return len(self.rows)

    def item_counts(self, n_items: int) -> torch.Tensor:
        """FloatTensor[n_items + 1]: how often each item is an example's positive."""
        return torch.bincount(self.items[self.rows], minlength=n_items + 1).float()

    def epoch_batches(self, batch_size: int, unknown_user_prob: float,
                      generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:  # fmt: skip
        """Yield (user id rows, demographic rows, histories, positives): LongTensor[b] x2,
        LongTensor[b, w] left-padded (latest item last), LongTensor[b]. Both rows are the user's
        index, each replaced by 0 (unknown) for ``unknown_user_prob`` of the examples, independently."""
        order = self.rows[torch.randperm(len(self.rows), generator=generator)]
        steps = torch.arange(self.width, 0, -1)
        for rows in order.split(batch_size):
            index = rows.unsqueeze(1) - steps  # [b, width], the events before each row
            real = index >= self.start[rows].unsqueeze(1)
            history = torch.where(real, self.items[index.clamp(min=0)], PAD)
            history = history[:, -int(real.sum(1).max()):]  # columns that are padding everywhere go
            users = self.users[rows]
            id_rows = users.masked_fill(torch.rand(len(rows), generator=generator) < unknown_user_prob, 0)
            demo_rows = users.masked_fill(torch.rand(len(rows), generator=generator) < unknown_user_prob, 0)
            yield id_rows, demo_rows, history, self.items[rows]


# ----- the model ---------------------------------------------------------------------------------


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.user_tower = UserTower(config.n_users, config.dim, config.history_length,
                                        config.attribute_buckets, config.pooling, config.dropout)  # fmt: skip
            self.item_tower = ItemTower(config.n_items, config.dim, config.attribute_buckets, config.dropout)
        n_users, n_items = config.n_users, config.n_items
        # Filled by attach (from the split's tables), saved with the weights.
        self.register_buffer("item_attributes", torch.zeros(n_items + 1, config.max_item_attributes, dtype=torch.long))
        self.register_buffer("user_demographics", torch.zeros(n_users + 1, len(config.user_features), dtype=torch.long))
        self.register_buffer("item_trained", torch.zeros(n_items + 1, dtype=torch.bool))
        self.register_buffer("user_trained", torch.zeros(n_users + 1, dtype=torch.bool))
        self.register_buffer("log_q", torch.zeros(n_items + 1))
        # What score reads, refreshed whenever the model switches to eval (row 0 stays zero).
        self.register_buffer("item_vectors", torch.zeros(n_items + 1, config.dim))
        self._attached = False

    def attach(self, data: TrainingData) -> NextItemExamples:
        """Fill the feature buffers from ``data``'s tables and the training flags and item
        sampling probabilities from its training part -> the training examples."""
        cfg = self.config
        check_split_size(data, cfg)
        device = self.item_vectors.device
        self.item_attributes.copy_(item_attribute_rows(data.items, cfg.n_items, cfg.item_features,
                                                       cfg.attribute_buckets, cfg.max_item_attributes))  # fmt: skip
        self.user_demographics.copy_(user_demographic_rows(data.users, cfg.n_users, cfg.user_features, cfg.attribute_buckets))
        examples = NextItemExamples(data.train, cfg.history_length)
        self.item_trained.zero_()
        self.item_trained[torch.as_tensor(data.train["item_idx"].to_numpy(np.int64, copy=True), device=device)] = True
        self.user_trained.zero_()
        self.user_trained[torch.as_tensor(data.train["user_idx"].to_numpy(np.int64, copy=True), device=device)] = True
        counts = examples.item_counts(cfg.n_items)
        self.log_q.copy_((counts / counts.sum().clamp_min(1.0)).clamp_min(1e-12).log())
        self._attached = True
        return examples

    # ----- towers --------------------------------------------------------------------------

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """Item vectors of LongTensor[N] -> [N, D]: the id row only for items with training
        interactions, less ``item_id_dropout`` of them while training."""
        keep = self.item_trained[items]
        if self.training and self.config.item_id_dropout > 0:
            keep = keep & (torch.rand(items.shape, device=items.device) >= self.config.item_id_dropout)
        return self.item_tower(torch.where(keep, items, 0), self.item_attributes[items])

    def embed_users(self, id_rows: torch.Tensor, demo_rows: torch.Tensor, history: torch.Tensor,
                    history_vectors: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """[B, D] from user id rows and demographic rows (LongTensor[B], 0: unknown), the history
        LongTensor[B, L] and its item vectors [B, L, D]."""
        return self.user_tower(id_rows, self.user_demographics[demo_rows], history_vectors, history != PAD)

    @torch.no_grad()
    def refresh_items(self) -> None:
        vectors = self.embed_items(torch.arange(self.config.n_items + 1, device=self.item_vectors.device))
        vectors[PAD] = 0.0
        self.item_vectors.copy_(vectors)

    def train(self, mode: bool = True) -> "TwoTower":
        # switching to eval (each validation, and after fit) stores the item vectors score reads
        super().train(mode)
        if not mode and self._attached:
            self.refresh_items()
        return self

    # ----- loss and scores -----------------------------------------------------------------

    def loss(self, id_rows: torch.Tensor, demo_rows: torch.Tensor, history: torch.Tensor,
             positives: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """In-batch softmax with logQ correction; each distinct item of the batch (history and
        positives) goes through the item tower once, with one id-dropout draw."""
        distinct, inverse = torch.unique(torch.cat([history.flatten(), positives]), return_inverse=True)
        vectors = self.embed_items(distinct)[inverse]
        history_vectors = vectors[: history.numel()].view(*history.shape, -1)
        user_vectors = self.embed_users(id_rows, demo_rows, history, history_vectors)
        return in_batch_softmax_loss(user_vectors, vectors[history.numel():], positives,
                                     self.log_q[positives], self.config.temperature)  # fmt: skip

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """cos(user vector, item vector) -> FloatTensor[B, n_items + 1]. A user without training
        interactions (or user 0) gets the unknown-user id row: scored from history and
        demographics."""
        device = self.item_vectors.device
        history = batch.items.to(device)[:, -self.history_length :]
        users = batch.users.to(device)
        id_rows = known_user_rows(users, self.user_trained)
        demo_rows = known_user_rows(users, torch.ones_like(self.user_trained))
        user_vectors = self.embed_users(id_rows, demo_rows, history, self.item_vectors[history])
        return user_vectors @ self.item_vectors.T

    # ----- training ------------------------------------------------------------------------

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
        """In-batch softmax on every training event after a user's first, from the events before it."""
        self.to(device)
        examples = self.attach(data)
        cfg = self.config
        return train_loop(
            self,
            data,
            device,
            name="two_tower",
            epoch_batches=lambda generator: examples.epoch_batches(cfg.batch_size, cfg.unknown_user_prob, generator),
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
