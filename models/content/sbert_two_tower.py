"""Sentence-BERT two-tower: the two-tower of ``two_tower.py`` whose item tower also reads the
item's text embedding, fusing it with the collaborative and categorical features by attention
over the three modality tokens (the seed's "cross-modal attention").

**Item tower:** three tokens per item, each plus a learned modality embedding:

- collaborative: the item-id embedding; *skipped* (masked out of the attention and the pooling)
  for an item without training interactions, and for ``item_id_dropout`` of the items each
  training step, so a new item is scored from its text and metadata alone and that path is
  trained against the items that have all three;
- categorical: the mean of the item's hashed feature values (kind, decade, genres, network,
  creator, cast; as in ``two_tower.py``);
- text: the ``item_text_embeddings`` side input (Sentence-BERT, ``text_dim`` wide) through a
  linear map.

One post-norm transformer block (multi-head self-attention over the present tokens, then a
feed-forward layer, each with a residual and LayerNorm), the mean of the present tokens, a
linear output, L2-normalised.

**User tower, loss, cold users:** those of ``two_tower.py`` (imported): id + pooled history
(of these fused item vectors, so the text reaches the user side too) + demographics; in-batch
softmax with logQ correction and same-item masking; the unknown-user row for users without
training interactions.

The text is a side input and not part of the weights: the fused item vectors are refreshed into
a buffer whenever the model switches to eval with the text attached, so ``score`` needs only the
state_dict. ``attach_text`` swaps the text (a new item's, or an edited description) and, in eval
mode, re-embeds every item with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.content.two_tower import (
    ITEM_FEATURES,
    NextItemExamples,
    UserTower,
    check_tower_config,
    in_batch_softmax_loss,
    item_attribute_rows,
    masked_mean,
    user_demographic_rows,
)
from models.content.item_text import TEXT_INPUT, checked_text
from models.graph.interaction_graph import check_split_size, known_user_rows
from models.data import PAD, HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport
from models.training import train_loop

ID, CATEGORIES, TEXT = range(3)  # the modality tokens, in this order


@dataclass(frozen=True)
class SBERTTwoTowerConfig:
    n_items: int
    n_users: int = 0
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); must match
    dim: int = 64
    fusion_heads: int = 2  # attention heads of the cross-modal fusion
    history_length: int = 50
    pooling: Literal["mean", "attention"] = "attention"
    temperature: float = 0.05
    dropout: float = 0.1
    unknown_user_prob: float = 0.2  # share of examples trained without the user id (and, apart, without demographics)
    item_id_dropout: float = 0.3  # share of items trained without their id token each step (new items)
    attribute_buckets: int = 4096
    max_item_attributes: int = 16
    item_features: tuple[str, ...] = ITEM_FEATURES
    user_features: tuple[str, ...] = ("age", "gender", "occupation")
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 1024
    max_epochs: int = 100
    patience: int = 10
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"
    compile: bool = False

    def __post_init__(self) -> None:
        check_tower_config(self)
        if self.text_dim < 1:
            raise ValueError(f"text_dim must be >= 1 (the text embeddings' width), got {self.text_dim}")
        if self.fusion_heads < 1 or self.dim % self.fusion_heads:
            raise ValueError(f"dim {self.dim} must be a multiple of fusion_heads {self.fusion_heads} >= 1")


class CrossModalItemTower(nn.Module):
    """Attention over the (id, categories, text) tokens of each item -> FloatTensor[N, D], L2-normalised."""

    def __init__(self, n_items: int, text_dim: int, dim: int, attribute_buckets: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.item_emb = nn.Embedding(n_items + 1, dim)
        self.attribute_emb = nn.Embedding(attribute_buckets, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.attribute_emb.weight, std=0.1)
        with torch.no_grad():
            self.attribute_emb.weight[0].zero_()
        self.text_proj = nn.Linear(text_dim, dim)
        self.modality = nn.Parameter(0.1 * torch.randn(3, dim))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attention_out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, use_id: torch.Tensor, attributes: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """ids: LongTensor[N]; use_id: BoolTensor[N] (False: the id token is skipped);
        attributes: LongTensor[N, K] (0: padding); text: FloatTensor[N, text_dim]."""
        categories = masked_mean(self.attribute_emb(attributes), attributes != 0)
        tokens = torch.stack([self.item_emb(ids), categories, self.text_proj(text)], 1) + self.modality  # [N, 3, D]
        present = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        present[:, ID] = use_id
        n, t, d = tokens.shape
        q, k, v = self.qkv(tokens).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # keys: only the present tokens; a skipped id token is read by no one and pooled by no one
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=present[:, None, None, :])
        h = self.norm1(tokens + self.dropout(self.attention_out(mixed.transpose(1, 2).reshape(n, t, d))))
        h = self.norm2(h + self.dropout(self.ffn(h)))
        return F.normalize(self.out(masked_mean(h, present)), dim=-1)


class SBERTTwoTower(nn.Module):
    def __init__(self, config: SBERTTwoTowerConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.user_tower = UserTower(config.n_users, config.dim, config.history_length,
                                        config.attribute_buckets, config.pooling, config.dropout)  # fmt: skip
            self.item_tower = CrossModalItemTower(config.n_items, config.text_dim, config.dim,
                                                  config.attribute_buckets, config.fusion_heads, config.dropout)  # fmt: skip
        n_users, n_items = config.n_users, config.n_items
        self.register_buffer("item_attributes", torch.zeros(n_items + 1, config.max_item_attributes, dtype=torch.long))
        self.register_buffer("user_demographics", torch.zeros(n_users + 1, len(config.user_features), dtype=torch.long))
        self.register_buffer("item_trained", torch.zeros(n_items + 1, dtype=torch.bool))
        self.register_buffer("user_trained", torch.zeros(n_users + 1, dtype=torch.bool))
        self.register_buffer("log_q", torch.zeros(n_items + 1))
        self.register_buffer("item_vectors", torch.zeros(n_items + 1, config.dim))  # what score reads
        self.register_buffer("item_text", None, persistent=False)  # the side input, never saved

    # ----- inputs --------------------------------------------------------------------------

    def attach_text(self, matrix: torch.Tensor) -> None:
        """Use ``matrix`` (FloatTensor[n_items + 1, text_dim]) as the items' text; in eval mode
        the item vectors are re-embedded with it at once."""
        self.item_text = checked_text(matrix, self.config, "SBERTTwoTower").to(self.item_vectors.device)
        if not self.training:
            self.refresh_items()

    def attach(self, data: TrainingData, side_inputs: dict[str, Any] | None) -> NextItemExamples:
        """The text from ``side_inputs``, the feature buffers from ``data``'s tables, the
        training flags and sampling probabilities from its training part -> training examples."""
        cfg = self.config
        check_split_size(data, cfg)
        text = (side_inputs or {}).get(TEXT_INPUT)
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
        self.attach_text(None if text is None else torch.as_tensor(text.matrix))
        return examples

    # ----- towers --------------------------------------------------------------------------

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """Fused item vectors of LongTensor[N] -> [N, D]: the id token only for items with
        training interactions, less ``item_id_dropout`` of them while training."""
        if self.item_text is None:
            raise RuntimeError("SBERTTwoTower needs the item text: call fit or attach_text first")
        use_id = self.item_trained[items]
        if self.training and self.config.item_id_dropout > 0:
            use_id = use_id & (torch.rand(items.shape, device=items.device) >= self.config.item_id_dropout)
        return self.item_tower(items, use_id, self.item_attributes[items], self.item_text[items])

    def embed_users(self, id_rows: torch.Tensor, demo_rows: torch.Tensor, history: torch.Tensor,
                    history_vectors: torch.Tensor) -> torch.Tensor:  # fmt: skip
        return self.user_tower(id_rows, self.user_demographics[demo_rows], history_vectors, history != PAD)

    @torch.no_grad()
    def refresh_items(self) -> None:
        vectors = self.embed_items(torch.arange(self.config.n_items + 1, device=self.item_vectors.device))
        vectors[PAD] = 0.0
        self.item_vectors.copy_(vectors)

    def train(self, mode: bool = True) -> "SBERTTwoTower":
        # switching to eval with the text attached stores the item vectors score reads
        super().train(mode)
        if not mode and self.item_text is not None:
            self.refresh_items()
        return self

    # ----- loss and scores -----------------------------------------------------------------

    def loss(self, id_rows: torch.Tensor, demo_rows: torch.Tensor, history: torch.Tensor,
             positives: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """In-batch softmax with logQ correction, as ``TwoTower.loss``."""
        distinct, inverse = torch.unique(torch.cat([history.flatten(), positives]), return_inverse=True)
        vectors = self.embed_items(distinct)[inverse]
        history_vectors = vectors[: history.numel()].view(*history.shape, -1)
        user_vectors = self.embed_users(id_rows, demo_rows, history, history_vectors)
        return in_batch_softmax_loss(user_vectors, vectors[history.numel():], positives,
                                     self.log_q[positives], self.config.temperature)  # fmt: skip

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """cos(user vector, fused item vector) -> FloatTensor[B, n_items + 1]."""
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
        """In-batch softmax on every training event after a user's first. ``side_inputs`` must
        hold ``item_text_embeddings`` (an ItemTextEmbeddings, ``text_dim`` wide)."""
        self.to(device)
        examples = self.attach(data, side_inputs)
        cfg = self.config
        return train_loop(
            self,
            data,
            device,
            name="sbert_two_tower",
            epoch_batches=lambda generator: examples.epoch_batches(cfg.batch_size, cfg.unknown_user_prob, generator),
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
