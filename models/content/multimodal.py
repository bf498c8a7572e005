"""MTTV, a multimodal transformer: each item is fused from its text and metadata by
cross-attention, and a causal transformer over the history's fused items predicts the next one.

**Item encoder.** Per item, ``1 + len(FIELDS)`` modality tokens, each plus a learned modality
embedding: the item's sentence embedding (the ``item_text_embeddings`` side input, ``text_dim``
wide) through a linear map, then one token per metadata field of the items table — genres (mean
of the genre embeddings), cast (mean of the first ``max_field_values`` actors), network, year
(``release_date`` cut to ``year_span``-year buckets) and creator. Metadata values are looked up
by a stable hash of "field:value" into ``attribute_buckets`` rows (row 0: padding), so the
weights' shapes do not depend on the catalogue and a value first seen at inference still has a
row. The item-id embedding is the *query* that cross-attends over the tokens present (an absent
field is masked out; the text token is always there), followed by a feed-forward layer
(post-LN, as a transformer decoder layer without self-attention). Items without training
interactions query with the "unknown id" row 0, and so does a share ``id_dropout`` of the other
items each training step, so a new item is scored from its text and metadata alone, through the
same path the training calibrated.

**User encoder and loss.** SASRec's pre-LN causal blocks (``models.sequential.sasrec.Block``)
over the history's fused item vectors (through a linear map of its own, so that a position's
state does not start as its own item's output vector) plus position embeddings; the last
position is the user.
Full-softmax cross-entropy on the next item at every position over every fused item vector
(logits over sqrt(dim): both sides leave a LayerNorm, so raw dot products would start far above
the uniform guess). The fused table is recomputed each step, so the item encoder learns from the
recommendation loss; in eval it is computed once and kept as the ``item_vectors`` buffer, which
is all ``score`` reads besides the user encoder.

**Contrastive objective.** InfoNCE (symmetric, temperature ``temperature``) between two views of
the same items, both queried with the unknown id: the text token alone and the metadata tokens
alone. ``contrastive_items`` items are drawn from the whole catalogue each step (new items
included: the objective needs no interactions); it is added to the recommendation loss times
``contrastive_weight`` (0: off, and nothing of it is computed).

**Gradient checkpointing** (``gradient_checkpointing``): the item fusion and every user block
recompute their activations in backward (``torch.utils.checkpoint``, non-reentrant; the RNG is
replayed, so dropout gives the same loss and gradients as without).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.content.item_text import TEXT_INPUT, checked_text
from models.data import PAD, HistoryBatch, TrainingData
from models.hashing import stable_rows
from models.interface import EpochLog, FitReport
from models.sequential.sasrec import Block
from models.sequential.windows import SequenceWindows
from models.training import train_loop

FIELDS = ("genres", "cast", "network", "year", "creator")  # metadata tokens, after the text token
TEXT = 0  # the text token's position among an item's modality tokens
LIST_SEPARATOR = "|"  # genres and cast (and any multi-valued field) are "|"-joined


@dataclass(frozen=True)
class MultimodalConfig:
    n_items: int
    dim: int = 64
    n_layers: int = 2  # causal blocks of the user encoder
    n_heads: int = 2  # of the user blocks and of the item cross-attention
    max_len: int = 50  # latest history items the user encoder reads
    dropout: float = 0.1
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); must match
    attribute_buckets: int = 4096  # hashed metadata rows, shared by the fields (row 0: padding)
    max_field_values: int = 8  # values per field read (the first 8 genres, the first 8 actors)
    year_span: int = 5  # years per release-year bucket
    id_dropout: float = 0.2  # share of items trained with the unknown id each step (new items)
    contrastive_weight: float = 0.1  # InfoNCE (text view vs metadata view) weight; 0: off
    temperature: float = 0.1  # of the InfoNCE
    contrastive_items: int = 256  # catalogue items drawn per step for the InfoNCE
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"  # bf16 autocast on CUDA
    gradient_checkpointing: bool = False  # recompute item fusion and block activations in backward

    def __post_init__(self) -> None:
        if min(self.dim, self.n_layers, self.n_heads, self.max_len, self.text_dim, self.max_field_values, self.year_span) < 1:
            raise ValueError("dim, n_layers, n_heads, max_len, text_dim, max_field_values and year_span must be >= 1")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.attribute_buckets < 2:
            raise ValueError(f"attribute_buckets must be >= 2 (row 0 is padding), got {self.attribute_buckets}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.contrastive_weight < 0 or self.temperature <= 0 or self.contrastive_items < 2:
            raise ValueError("contrastive_weight must be >= 0, temperature > 0 and contrastive_items >= 2")


def field_values(items: pd.DataFrame, field: str, year_span: int) -> list[list[str]]:
    """Each row's values of ``field`` ("|"-split, stripped, empty dropped); "year" is the
    ``release_date`` year cut to ``year_span``-year buckets. [] where absent, NA or blank."""
    column = "release_date" if field == "year" else field
    if column not in items.columns:
        return [[] for _ in range(len(items))]
    strings = items[column].astype("string").fillna("").tolist()
    if field == "year":
        years = [s.strip()[:4] for s in strings]
        return [[str(int(y) // year_span * year_span)] if y.isdigit() else [] for y in years]
    return [[v.strip() for v in s.split(LIST_SEPARATOR) if v.strip()] for s in strings]


def item_field_rows(items: pd.DataFrame, n_items: int, buckets: int, max_values: int, year_span: int) -> torch.Tensor:
    """The hashed metadata rows of every item: LongTensor[n_items + 1, len(FIELDS), max_values],
    0 where a field has fewer values (row 0, padding, and items missing from ``items`` are all 0)."""
    out = torch.zeros(n_items + 1, len(FIELDS), max_values, dtype=torch.long)
    index = items["item_idx"].to_numpy(np.int64)
    keep = (index >= 1) & (index <= n_items)
    items, index = items[keep], index[keep]
    for f, field in enumerate(FIELDS):
        for item, values in zip(index.tolist(), field_values(items, field, year_span)):
            if values:
                values = values[:max_values]
                out[item, f, : len(values)] = stable_rows([f"{field}:{v}" for v in values], buckets)
    return out


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of two views, FloatTensor[N, D] each, row i of ``a`` and of ``b`` being
    the same item: the mean of CE(cos(a_i, b_j) / t over j, target i) and the same from b to a."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ModalityFusion(nn.Module):
    """query' = LN(h + FFN(h)), h = LN(query + cross-attention(query -> present tokens))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_attn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm_ffn = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """query: [N, D]; tokens: [N, T, D]; present: BoolTensor[N, T] (at least one True per row)
        -> (fused [N, D], attention weights [N, T] averaged over heads, or None)."""
        mixed, weights = self.attn(query.unsqueeze(1), tokens, tokens, key_padding_mask=~present,
                                   need_weights=need_weights)  # fmt: skip
        h = self.norm_attn(query + self.dropout(mixed.squeeze(1)))
        h = self.norm_ffn(h + self.dropout(self.ffn(h)))
        return h, (weights.squeeze(1) if need_weights else None)


class Multimodal(nn.Module):
    def __init__(self, config: MultimodalConfig):
        super().__init__()
        self.config = config
        self.history_length = config.max_len
        self.logit_scale = config.dim**-0.5
        d = config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.id_emb = nn.Embedding(config.n_items + 1, d)  # the query; row 0: the unknown id
            self.text_proj = nn.Linear(config.text_dim, d)
            self.attribute_emb = nn.Embedding(config.attribute_buckets, d, padding_idx=0)
            self.modality_emb = nn.Parameter(0.1 * torch.randn(1 + len(FIELDS), d))
            self.fusion = ModalityFusion(d, config.n_heads, config.dropout)
            # the history reads items through its own map: tied raw, each position's state would
            # start as its own item's vector, whose logit is sqrt(dim) above the rest
            self.history_proj = nn.Linear(d, d)
            self.pos_emb = nn.Embedding(config.max_len, d)
            self.emb_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(Block(d, config.n_heads, config.dropout, d) for _ in range(config.n_layers))
            self.ln_out = nn.LayerNorm(d)
            nn.init.normal_(self.id_emb.weight, std=0.1)
            nn.init.normal_(self.attribute_emb.weight, std=0.1)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            with torch.no_grad():
                self.attribute_emb.weight[0].zero_()
        n = config.n_items + 1
        self.register_buffer("item_fields", torch.zeros(n, len(FIELDS), config.max_field_values, dtype=torch.long))
        self.register_buffer("item_trained", torch.zeros(n, dtype=torch.bool))  # has training interactions
        self.register_buffer("item_vectors", torch.zeros(n, d))  # the fused table score reads
        self.register_buffer("item_text", None, persistent=False)  # the side input, never saved

    # ----- inputs --------------------------------------------------------------------------

    def attach_text(self, matrix: torch.Tensor | None) -> None:
        """Use ``matrix`` (FloatTensor[n_items + 1, text_dim]) as the items' text; in eval mode
        the item vectors are re-fused with it at once."""
        self.item_text = checked_text(matrix, self.config, "Multimodal").to(self.item_vectors.device)
        if not self.training:
            self.refresh_items()

    def attach(self, data: TrainingData, side_inputs: dict[str, Any] | None) -> None:
        """The metadata rows from ``data.items``, which items have training interactions, and the
        text from ``side_inputs``."""
        cfg = self.config
        if data.n_items != cfg.n_items:
            raise ValueError(f"data has {data.n_items} items, the config {cfg.n_items}")
        device = self.item_vectors.device
        self.item_fields.copy_(item_field_rows(data.items, cfg.n_items, cfg.attribute_buckets,
                                               cfg.max_field_values, cfg.year_span))  # fmt: skip
        trained = torch.zeros_like(self.item_trained)
        trained[torch.as_tensor(data.train["item_idx"].to_numpy(np.int64, copy=True), device=device)] = True
        self.item_trained.copy_(trained)
        text = (side_inputs or {}).get(TEXT_INPUT)
        self.attach_text(None if text is None else torch.as_tensor(text.matrix))

    # ----- item encoder --------------------------------------------------------------------

    def modality_tokens(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """items: LongTensor[N] -> (tokens [N, 1 + len(FIELDS), D], present BoolTensor[N, 1 + len(FIELDS)]):
        the projected text, then each field's mean value embedding; the text token is always present."""
        if self.item_text is None:
            raise RuntimeError(f"Multimodal needs the side input {TEXT_INPUT!r}: call fit or attach_text first")
        rows = self.item_fields[items]  # [N, F, K]
        real = rows != 0
        fields = (self.attribute_emb(rows) * real.unsqueeze(-1)).sum(2) / real.sum(2, keepdim=True).clamp_min(1)
        tokens = torch.cat([self.text_proj(self.item_text[items]).unsqueeze(1), fields], 1) + self.modality_emb
        present = torch.cat([torch.ones_like(real[:, :1, 0]), real.any(2)], 1)
        return tokens, present

    def fuse(self, query: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.config.gradient_checkpointing and self.training:
            return checkpoint(lambda q, t, p: self.fusion(q, t, p)[0], query, tokens, present, use_reentrant=False)
        return self.fusion(query, tokens, present)[0]

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """Fused item vectors of LongTensor[N] -> [N, D]: the id query only for items with
        training interactions, less ``id_dropout`` of them while training; the others query
        with the unknown id (row 0)."""
        use_id = self.item_trained[items]
        if self.training and self.config.id_dropout > 0:
            use_id = use_id & (torch.rand(items.shape, device=items.device) >= self.config.id_dropout)
        tokens, present = self.modality_tokens(items)
        return self.fuse(self.id_emb(torch.where(use_id, items, 0)), tokens, present)

    def item_table(self) -> torch.Tensor:
        """Every item's fused vector, FloatTensor[n_items + 1, D]; row 0 (padding) is zeros."""
        vectors = self.embed_items(torch.arange(1, self.config.n_items + 1, device=self.item_vectors.device))
        return torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])

    @torch.no_grad()
    def refresh_items(self) -> None:
        self.item_vectors.copy_(self.item_table())

    def train(self, mode: bool = True) -> "Multimodal":
        # Switching to eval (before each validation, after fit loads the best weights) re-fuses
        # the table once, so score reads vectors of the current weights.
        super().train(mode)
        if not mode and self.item_text is not None:
            self.refresh_items()
        return self

    # ----- user encoder --------------------------------------------------------------------

    def encode(self, table: torch.Tensor, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """table: [n_items + 1, D] fused items; items: LongTensor[B, L] left-padded, L <= max_len
        -> hidden [B, L, D], or [B, 1, D] for the latest position with ``last_only``."""
        _, l = items.shape
        real = items != PAD
        positions = torch.arange(self.config.max_len - l, self.config.max_len, device=items.device)
        x = self.emb_dropout(self.history_proj(table[items]) + self.pos_emb(positions)) * real.unsqueeze(-1)
        attend = None  # no padding: plain causal attention
        if not bool(real.all()):
            # causal, keys real; every query reads itself, so no all-masked (NaN) softmax row
            causal = torch.ones(l, l, dtype=torch.bool, device=items.device).tril()
            eye = torch.eye(l, dtype=torch.bool, device=items.device)
            attend = ((causal & real.unsqueeze(1)) | eye).unsqueeze(1)
        for number, block in enumerate(self.blocks, 1):
            if last_only and number == len(self.blocks):
                x = block(x, attend, last_only=True) * real[:, -1:].unsqueeze(-1)
            elif self.config.gradient_checkpointing and self.training:
                x = checkpoint(block, x, attend, use_reentrant=False) * real.unsqueeze(-1)
            else:
                x = block(x, attend) * real.unsqueeze(-1)
        return self.ln_out(x)

    # ----- losses and scores ---------------------------------------------------------------

    def recommendation_loss(self, table: torch.Tensor, batch_items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of the next item at every position whose label is not PAD,
        over items 1..n_items of ``table`` (item i is column i - 1)."""
        hidden = self.encode(table, batch_items)
        target = labels != PAD
        logits = hidden[target] @ table[1:].T * self.logit_scale
        return F.cross_entropy(logits, labels[target] - 1)

    def contrastive_loss(self, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between the text view and the metadata view of ``items`` (LongTensor[N]),
        both queried with the unknown id; items without any metadata are left out."""
        tokens, present = self.modality_tokens(items)
        has_metadata = present[:, 1:].any(1)
        tokens, present = tokens[has_metadata], present[has_metadata]
        if len(tokens) < 2:  # nothing to contrast
            return tokens.sum() * 0.0
        query = self.id_emb(torch.zeros(len(tokens), dtype=torch.long, device=tokens.device))
        text_only = torch.zeros_like(present)
        text_only[:, TEXT] = True
        text_view = self.fuse(query, tokens, text_only)
        metadata_view = self.fuse(query, tokens, present & ~text_only)
        return info_nce(text_view, metadata_view, self.config.temperature)

    def contrastive_sample(self) -> torch.Tensor:
        """``contrastive_items`` distinct catalogue items, uniformly (all of them if fewer)."""
        n = self.config.n_items
        return (torch.randperm(n)[: self.config.contrastive_items] + 1).to(self.item_vectors.device)

    def loss(self, window: torch.Tensor) -> torch.Tensor:
        """window: LongTensor[B, w] left-padded training items -> recommendation loss (+
        contrastive_weight x InfoNCE)."""
        loss = self.recommendation_loss(self.item_table(), window[:, :-1], window[:, 1:])
        if self.config.contrastive_weight > 0:
            loss = loss + self.config.contrastive_weight * self.contrastive_loss(self.contrastive_sample())
        return loss

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """Latest hidden state · fused item vectors / sqrt(dim) -> FloatTensor[B, n_items + 1]."""
        items = batch.items.to(self.item_vectors.device)[:, -self.config.max_len :]
        return self.encode(self.item_vectors, items, last_only=True)[:, -1] @ self.item_vectors.T * self.logit_scale

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
        """Next-item training on every position of each user's (cropped) training sequence.
        ``side_inputs`` must hold ``item_text_embeddings`` (``text_dim`` wide); the metadata
        comes from ``data.items``."""
        self.to(device)
        self.attach(data, side_inputs)
        windows = SequenceWindows(data.train, self.config.max_len + 1)
        items = windows.column("item_idx")
        return train_loop(
            self,
            data,
            device,
            name="multimodal",
            epoch_batches=lambda generator: (items[rows] for rows in windows.epoch_batches(self.config.batch_size, generator)),
            batch_loss=self.loss,
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
