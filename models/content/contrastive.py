"""CL-TV: a SimCLR-style contrastive item encoder over item metadata and text (Chen et al. 2020).

An item is its fields, read from the items table (whichever columns exist):

- identity fields, which every view keeps untouched: the title's words and the release year;
- content fields, which the augmentations act on: kind, genres, cast, creator, network (each a
  bag of values, "|"-separated) and the item's text embedding (the ``item_text_embeddings``
  side input, ``text_dim`` wide; 0: none).

Each categorical value is hashed (crc32) into ``attribute_buckets`` rows of its field's table, as
GNN-TV does, so the weights' shapes do not depend on the catalogue and a value first seen later
(a new actor) still has a row. There is no item-id embedding: with one, two views of an item
would match by id alone, and a new item is encoded exactly like a known one.

**Encoder.** Per field the mean of its values' rows (zeros when empty), the text through a linear
map without bias (a dropped text is zeros); concatenated, an MLP gives ``h`` (``dim``), L2-normalised:
the item embedding that scoring, ``similar_items`` and ``item_embeddings`` read. A projection
head ``g`` (SimCLR's) maps ``h`` to ``z`` for the contrastive loss only.

**Two views per item**, each drawn independently (``augment``):

- field dropout: each content field is dropped whole (every value, or the text vector) with
  probability ``field_dropout``;
- token / feature masking: each remaining value of a content field, and each text dimension, is
  masked with probability ``mask_rate``;
- cast/genre subsampling: genres and cast keep a random non-empty subset of ceil(r·n) of their n
  values, r ~ U[``subsample``, 1].

**Loss.** NT-Xent (temperature-scaled InfoNCE) over the 2N views of a batch of N items: each view's
positive is the other view of its item, its negatives the other 2N - 2 views, plus **genre-aware
hard negatives**: for each item, ``hard_negatives`` items sampled from those sharing one of its
genres (a genre drawn among the item's own, then an item of that genre uniformly) are encoded
(one augmented view each) and added as negatives to both of the item's views; a draw that hits
the item itself is masked out. Sampling was chosen over up-weighting same-genre in-batch
negatives because a batch holds few same-genre pairs of a rare genre, while sampled ones always
exist. "Sharing a genre" is sharing a hash bucket (a collision pairs two genres).

**Recommendation.** A user is the recency-weighted mean of their latest history items' ``h``
(content k-NN's profile, ``recency_decay``); items rank by cosine. A recommendation loss is
added with weight ``rec_weight`` (0: the contrastive objective alone): a user's consecutive
training items (co-watched) are positive pairs, InfoNCE over ``h`` with in-batch negatives at the
same temperature, on ``batch_size`` pairs drawn at random each step. Its default, 1.0, is what
the synthetic default asked for: alone (0) or light (0.1) the contrastive objective moved the
history scores away from what users watch next (the best validation epoch was the first, NDCG@10
0.30 and 0.32), at 0.5 0.375, at 1.0 0.39 (0.43 with temperature 0.05). Epochs are chosen on
validation NDCG@10 of the history scores by the shared loop (``models.training``: early
stopping, resumable checkpoints).

After training the items' ``h`` are kept as a buffer, so ``score`` and ``similar_items`` need only
the state_dict; the metadata and text are attached by ``fit`` and not saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from models.content.item_text import TEXT_INPUT, checked_text
from models.data import PAD, HistoryBatch, TrainingData
from models.hashing import stable_row
from models.interface import EpochLog, FitReport
from models.training import train_loop

IDENTITY_FIELDS = ("title", "year")  # kept by every view
CONTENT_FIELDS = ("kind", "genres", "cast", "creator", "network")  # what augmentations act on
FIELDS = IDENTITY_FIELDS + CONTENT_FIELDS
SUBSAMPLED_FIELDS = ("genres", "cast")
VALUE_SEPARATOR = "|"


@dataclass(frozen=True)
class ContrastiveConfig:
    n_items: int
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); 0 = no text
    dim: int = 64
    attribute_buckets: int = 2048  # hashed embedding rows per metadata field
    max_values: int = 8  # values kept per field and item (title words, genres, cast, ...)
    field_dropout: float = 0.2  # per view, each content field dropped whole
    mask_rate: float = 0.15  # per view, each value / text dimension of a content field masked
    subsample: float = 0.5  # genres and cast keep a random ceil(r·n) of n values, r ~ U[subsample, 1]
    temperature: float = 0.05
    hard_negatives: int = 4  # same-genre negatives sampled per item (0: in-batch negatives only)
    rec_weight: float = 1.0  # co-watched consecutive items as positive pairs (0: contrastive only)
    history_length: int | None = 50  # latest history items that form a user's profile; None = all
    recency_decay: float = 1.0  # profile weight exp(-decay · steps back from the latest item)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256  # items per step (2 views each), and co-watched pairs per step
    max_epochs: int = 100
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if min(self.dim, self.attribute_buckets, self.max_values, self.batch_size) < 1:
            raise ValueError("dim, attribute_buckets, max_values and batch_size must be >= 1")
        for name in ("field_dropout", "mask_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.subsample <= 1.0:
            raise ValueError(f"subsample must be in (0, 1], got {self.subsample}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if min(self.text_dim, self.hard_negatives, self.rec_weight, self.recency_decay) < 0:
            raise ValueError("text_dim, hard_negatives, rec_weight and recency_decay must be >= 0")
        if self.history_length is not None and self.history_length < 1:
            raise ValueError(f"history_length must be >= 1 or None, got {self.history_length}")


# ----- item fields ------------------------------------------------------------------------------


def _field_values(items: pd.DataFrame, field: str) -> list[list[str]]:
    """Each item's values of ``field`` as strings, in the table's row order."""

    def column(name: str) -> list[str]:
        if name not in items.columns:
            return [""] * len(items)
        return [s.strip() for s in items[name].astype("string").fillna("").tolist()]

    if field == "title":
        return [list(dict.fromkeys(re.findall(r"[0-9a-z]+", t.lower()))) for t in column("title")]
    if field == "year":
        years = []
        for date, title in zip(column("release_date"), column("title")):
            found = date[:4] if date[:4].isdigit() else "".join(re.findall(r"\((\d{4})\)\s*$", title))
            years.append([found] if found else [])
        return years
    if field == "kind":
        return [[k.lower()] if k else [] for k in column("kind")]
    return [list(dict.fromkeys(v.strip() for v in s.split(VALUE_SEPARATOR) if v.strip())) for s in column(field)]


def item_tokens(items: pd.DataFrame, n_items: int, buckets: int, max_values: int) -> torch.Tensor:
    """Hashed field values of every item -> LongTensor[n_items + 1, len(FIELDS), max_values].

    Entry = 1 + crc32(value) % buckets (the same row in every process), 0 where empty; the first
    ``max_values`` values of each field are kept. Row 0 (padding) and items absent from ``items``
    are all zeros.
    """
    tokens = torch.zeros(n_items + 1, len(FIELDS), max_values, dtype=torch.long)
    if "item_idx" not in items.columns or not len(items):
        return tokens
    rows = items["item_idx"].to_numpy(np.int64)
    keep = (rows >= 1) & (rows <= n_items)
    for f, field in enumerate(FIELDS):
        for row, values, kept in zip(rows, _field_values(items, field), keep):
            if kept and values:
                hashed = [stable_row(v, buckets + 1) for v in values[:max_values]]
                tokens[row, f, : len(hashed)] = torch.tensor(hashed)
    return tokens


def cowatched_pairs(data: TrainingData) -> torch.Tensor:
    """Consecutive training items of each user (a != b) -> LongTensor[P, 2]."""
    pairs = [np.stack([seq[:-1], seq[1:]], 1) for seq in data.train_sequences().values() if len(seq) > 1]
    if not pairs:
        return torch.zeros(0, 2, dtype=torch.long)
    pairs = np.concatenate(pairs)
    return torch.from_numpy(pairs[pairs[:, 0] != pairs[:, 1]].copy())


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    negatives: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """NT-Xent over two views: mean over the 2N anchors of -log(e^{s(a,p)/t} / Σ_{k≠a} e^{s(a,k)/t}).

    z1, z2: FloatTensor[N, D], L2-normalised; row i of each is a view of item i (the positives).
    negatives: FloatTensor[N, K, D], L2-normalised extra negatives of item i, added to the
        denominator of both of its views; negative_mask: BoolTensor[N, K], False = not a negative.
    """
    n = len(z1)
    z = torch.cat([z1, z2])
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    if negatives is not None and negatives.shape[1]:
        extra = torch.einsum("nd,nkd->nk", z, torch.cat([negatives, negatives])) / temperature
        if negative_mask is not None:
            extra = extra.masked_fill(~torch.cat([negative_mask, negative_mask]), float("-inf"))
        logits = torch.cat([logits, extra], 1)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


# ----- the model --------------------------------------------------------------------------------


class Contrastive(nn.Module):
    def __init__(self, config: ContrastiveConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        d = config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.field_emb = nn.ModuleDict(
                {field: nn.Embedding(config.attribute_buckets + 1, d, padding_idx=PAD) for field in FIELDS}
            )
            for table in self.field_emb.values():
                nn.init.normal_(table.weight[1:], std=0.1)
            self.text_proj = nn.Linear(config.text_dim, d, bias=False) if config.text_dim else None
            parts = len(FIELDS) + (1 if config.text_dim else 0)
            self.encoder = nn.Sequential(nn.Linear(parts * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
            self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))  # for the loss only
        self.register_buffer("item_vectors", torch.zeros(config.n_items + 1, d))  # h of every item
        self.register_buffer(
            "content_field", torch.tensor([f in CONTENT_FIELDS for f in FIELDS]), persistent=False
        )
        # Attached by fit / attach (never saved): fields, text, and the items of each genre bucket.
        self.register_buffer("tokens", None, persistent=False)
        self.register_buffer("item_text", None, persistent=False)
        self.register_buffer("genre_items", None, persistent=False)
        self.register_buffer("genre_start", None, persistent=False)

    # ----- inputs ----------------------------------------------------------------------------

    def attach(self, items: pd.DataFrame, item_text: torch.Tensor | None) -> None:
        """Hash ``items``' fields and use ``item_text`` (FloatTensor[n_items + 1, text_dim])."""
        cfg = self.config
        device = self.item_vectors.device
        if cfg.text_dim:
            self.item_text = checked_text(item_text, cfg, "Contrastive", optional=True).to(device)
        tokens = item_tokens(items, cfg.n_items, cfg.attribute_buckets, cfg.max_values)
        self.tokens = tokens.to(device)
        # CSR of genre bucket -> items, for sampling same-genre negatives
        genres = tokens[:, FIELDS.index("genres")]
        item_of, slot = (genres != PAD).nonzero(as_tuple=True)
        bucket = genres[item_of, slot]
        order = torch.argsort(bucket * (cfg.n_items + 1) + item_of)
        self.genre_items = item_of[order].to(device)
        counts = torch.bincount(bucket, minlength=cfg.attribute_buckets + 1)
        self.genre_start = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(device)

    def _text(self, items: torch.Tensor) -> torch.Tensor | None:
        return None if self.item_text is None else self.item_text[items]

    # ----- encoder and views -----------------------------------------------------------------

    def encode(self, tokens: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """tokens: LongTensor[B, len(FIELDS), max_values], text: FloatTensor[B, text_dim] or None
        -> h: FloatTensor[B, dim], L2-normalised."""
        parts = []
        for f, table in enumerate(self.field_emb.values()):
            values = tokens[:, f]
            count = (values != PAD).sum(1, keepdim=True).clamp(min=1)
            parts.append(table(values).sum(1) / count)
        if self.text_proj is not None:
            parts.append(self.text_proj(text))
        return F.normalize(self.encoder(torch.cat(parts, 1)), dim=1)

    def augment(
        self, tokens: torch.Tensor, text: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One random view: cast/genre subsampling, value and text-dimension masking, whole-field
        dropout, on content fields only (identity fields come back unchanged)."""
        cfg = self.config
        n, n_fields, width = tokens.shape

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(tokens.device)

        tokens = tokens.clone()
        for field in SUBSAMPLED_FIELDS:
            f = FIELDS.index(field)
            values = tokens[:, f]
            present = values != PAD
            share = cfg.subsample + (1.0 - cfg.subsample) * rand(n)
            keep = torch.ceil(share * present.sum(1)).clamp(min=1)
            # a random order of the present values (absent ones last); keep the first ``keep``
            rank = torch.where(present, rand(n, width), 2.0).argsort(1).argsort(1)
            tokens[:, f] = torch.where(rank < keep.unsqueeze(1), values, PAD)
        content = self.content_field.to(tokens.device)
        masked = (rand(n, n_fields, width) < cfg.mask_rate) & content.view(1, -1, 1)
        dropped = (rand(n, n_fields) < cfg.field_dropout) & content.view(1, -1)
        tokens = tokens.masked_fill(masked | dropped.unsqueeze(2), PAD)
        if text is not None:
            kept = (rand(*text.shape) >= cfg.mask_rate) & (rand(n, 1) >= cfg.field_dropout)
            text = text * kept
        return tokens, text

    def genre_negatives(
        self, items: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each item, ``hard_negatives`` items sharing one of its genres ->
        (LongTensor[N, K] items, BoolTensor[N, K] valid). Invalid (item 0): the item has no genre,
        or the draw hit the item itself."""
        k, device = self.config.hard_negatives, items.device

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(device)

        genres = self.tokens[items, FIELDS.index("genres")]  # [N, M]
        present = genres != PAD
        pick = torch.where(present.unsqueeze(1), rand(len(items), k, genres.shape[1]), -1.0).argmax(2)
        bucket = genres.gather(1, pick)  # [N, K]; 0 when the item has no genre
        start, count = self.genre_start[bucket], self.genre_start[bucket + 1] - self.genre_start[bucket]
        offset = (rand(len(items), k) * count).long().clamp(max=(count - 1).clamp(min=0))
        valid = present.any(1, keepdim=True) & (count > 0)
        drawn = torch.zeros_like(bucket)
        if len(self.genre_items):
            drawn = self.genre_items[(start + offset).clamp(max=len(self.genre_items) - 1)]
        valid = valid & (drawn != items.unsqueeze(1))
        return torch.where(valid, drawn, PAD), valid

    # ----- losses ----------------------------------------------------------------------------

    def _project(self, tokens: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return F.normalize(self.head(self.encode(tokens, text)), dim=1)

    def contrastive_loss(self, items: torch.Tensor) -> torch.Tensor:
        """NT-Xent of two views of each item, with same-genre hard negatives."""
        tokens, text = self.tokens[items], self._text(items)
        z1 = self._project(*self.augment(tokens, text))
        z2 = self._project(*self.augment(tokens, text))
        negatives, valid = None, None
        if self.config.hard_negatives:
            drawn, valid = self.genre_negatives(items)
            flat = drawn.reshape(-1)
            negatives = self._project(*self.augment(self.tokens[flat], self._text(flat)))
            negatives = negatives.view(*drawn.shape, -1)
        return info_nce(z1, z2, self.config.temperature, negatives, valid)

    def cowatch_loss(self, first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
        """InfoNCE of co-watched pairs over h: ``then[i]`` against every ``then[j]``; a j that is
        the same item as then[i] or first[i] is no negative."""
        h_first = self.encode(self.tokens[first], self._text(first))
        h_then = self.encode(self.tokens[then], self._text(then))
        logits = h_first @ h_then.T / self.config.temperature
        same = (then.unsqueeze(0) == then.unsqueeze(1)) | (then.unsqueeze(0) == first.unsqueeze(1))
        same.fill_diagonal_(False)
        return F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(len(first), device=first.device))

    def loss(self, items: torch.Tensor, first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
        loss = self.contrastive_loss(items)
        if self.config.rec_weight and len(first):
            loss = loss + self.config.rec_weight * self.cowatch_loss(first, then)
        return loss

    # ----- item embeddings, neighbours and scores --------------------------------------------

    @torch.no_grad()
    def refresh_items(self) -> None:
        """Store every item's h (clean view, no augmentation) for ``score`` and neighbours."""
        vectors = torch.zeros_like(self.item_vectors)
        for start in range(1, self.config.n_items + 1, self.config.eval_batch_size):
            items = torch.arange(start, min(start + self.config.eval_batch_size, self.config.n_items + 1),
                                 device=vectors.device)  # fmt: skip
            vectors[items] = self.encode(self.tokens[items], self._text(items))
        self.item_vectors.copy_(vectors)

    def train(self, mode: bool = True) -> "Contrastive":
        # Switching to eval (before each validation, and after fit loads the best weights)
        # re-encodes the items, so score always reads vectors of the current weights.
        super().train(mode)
        if not mode and self.tokens is not None:
            self.refresh_items()
        return self

    def item_embeddings(self) -> torch.Tensor:
        """Every item's h -> FloatTensor[n_items + 1, dim], L2-normalised rows, row 0 zeros: to
        initialise other models' item tables."""
        return self.item_vectors.detach().clone()

    @torch.no_grad()
    def similar_items(self, item_idx: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k`` items of highest cosine with each given item, itself and padding excluded ->
        LongTensor[len(item_idx), k], most similar first."""
        if not 1 <= k <= self.config.n_items - 1:
            raise ValueError(f"k must be in 1..n_items - 1 = {self.config.n_items - 1}, got {k}")
        item_idx = torch.as_tensor(item_idx, dtype=torch.long, device=self.item_vectors.device).reshape(-1)
        similarity = self.item_vectors[item_idx] @ self.item_vectors.T
        similarity[:, PAD] = float("-inf")
        similarity.scatter_(1, item_idx.unsqueeze(1), float("-inf"))
        return similarity.topk(k, dim=1).indices

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """cos(recency-weighted mean of the history items' h, each item's h) -> [B, n_items + 1].
        An empty history scores every item 0; column 0 is 0."""
        items = batch.items.to(self.item_vectors.device)
        if self.history_length is not None:
            items = items[:, -self.history_length :]
        present = (items != PAD).float()
        steps_back = present.flip(1).cumsum(1).flip(1) - 1.0  # 0 at the latest item
        weights = present * torch.exp(-self.config.recency_decay * steps_back)
        item_weights = torch.zeros(items.shape[0], self.config.n_items + 1, device=items.device)
        profile = F.normalize(item_weights.scatter_add_(1, items, weights) @ self.item_vectors, dim=1)
        return profile @ self.item_vectors.T

    # ----- training --------------------------------------------------------------------------

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
        """Each epoch: every catalogue item once (its metadata and text, no interactions) in
        shuffled batches of ``batch_size``, each step with ``batch_size`` random co-watched pairs
        when ``rec_weight`` > 0. ``side_inputs``: ``item_text_embeddings`` (required unless
        ``text_dim`` is 0)."""
        cfg = self.config
        if data.n_items != cfg.n_items:
            raise ValueError(f"data has {data.n_items} items, the config {cfg.n_items}")
        text = (side_inputs or {}).get(TEXT_INPUT)
        self.to(device)
        self.attach(data.items, None if text is None else torch.as_tensor(text.matrix))
        pairs = cowatched_pairs(data) if cfg.rec_weight else torch.zeros(0, 2, dtype=torch.long)

        def epoch_batches(generator: torch.Generator):
            order = torch.randperm(cfg.n_items, generator=generator) + 1
            for start in range(0, cfg.n_items, cfg.batch_size):
                drawn = pairs[torch.randint(len(pairs), (cfg.batch_size,), generator=generator)] if len(pairs) else pairs
                yield order[start : start + cfg.batch_size], drawn[:, 0], drawn[:, 1]

        return train_loop(
            self,
            data,
            device,
            name="contrastive",
            epoch_batches=epoch_batches,
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
