"""BERT4Rec (Sun et al. 2019): a bidirectional transformer over item sequences trained with the
Cloze task, and trained long enough (Petrov & Macdonald 2022: most reimplementations are not).

- Input: item embeddings (PAD = 0, items 1..n_items, a learned [MASK] = n_items + 1) plus learned
  positions counted from the right (histories are left-padded, so extra padding never changes
  what the real positions see), optionally plus a user embedding; LayerNorm and dropout as in BERT.
- Encoder: pre-LN blocks with full (not causal) attention over the real items; the only mask is
  the key-padding mask.
- Output: BERT's transform head (dense, GELU, LayerNorm), then scores tied to the item embeddings
  plus an output bias, over items 1..n_items (the [MASK] row is never a candidate).
- Training (Cloze): every real position is masked with probability ``mask_prob`` (at least one
  per sequence); a masked position becomes [MASK] with probability ``mask_token_frac`` (0.8), a
  uniformly random item with probability ``random_token_frac`` (0.1), and is left unchanged
  otherwise (BERT's 80/10/10: the random and unchanged cases keep the encoder from relying on
  [MASK] being the only position whose input is uninformative; set 1.0/0.0 for the original
  BERT4Rec code's and RecBole's always-[MASK]). Full-softmax cross-entropy over the catalogue at
  the masked positions only. A share of the sequences (``last_item_mask_prob``, 0.2) has only its
  last item replaced by [MASK] instead, the paper's (3.6) samples shaped like inference; with
  ``last_item_random_prefix`` (on) such a sequence is first cut after a random item,
  so the masked item is a different one each epoch (RecBole's BERT4Rec does the like with
  ``ft_ratio`` 0.5 over its prefix-augmented samples).
- Inference: a [MASK] is appended after the history (the oldest item is dropped when the history
  already fills ``max_len``) and that position's scores rank the next item.
- Extras (off by default): ``use_user_embedding`` adds a user embedding (``n_users + 1`` rows) to
  every input position. Row 0 is the unknown user: cold users (which the evaluator sends as user
  0) and any index above ``n_users`` get it, and during training each sequence's user is replaced
  by 0 with probability ``unknown_user_prob`` so that row learns an "average user".
  ``multitask_weight`` > 0 adds, at the masked positions, a rating-regression head (MSE against
  the rating of the masked item) and a preference head (BCE, rating >= ``preference_threshold``):
  loss = CE + multitask_weight * (MSE + BCE). The heads only shape training; ``score`` ranks by
  the item scores alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.data import PAD, HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport
from models.sequential.windows import SequenceWindows
from models.training import train_loop


@dataclass(frozen=True)
class BERT4RecConfig:
    n_items: int
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 200
    dropout: float = 0.2
    mask_prob: float = 0.2  # Cloze: chance that a real position is masked
    mask_token_frac: float = 0.8  # of the masked positions: [MASK] / random item / unchanged
    random_token_frac: float = 0.1
    # Share of sequences with only their last item masked; with last_item_random_prefix they end
    # at a random item of the window (the items after it dropped), so the masked "next item"
    # varies from epoch to epoch as in RecBole's prefix-augmented samples; False: always the
    # window's last item (Sun et al. 3.6 as written), which memorises each user's last item.
    # 0.2 + random prefix was chosen on ml-100k validation NDCG@10 (the trials and the command:
    # benchmarks/README.md, "BERT4Rec: choosing the configuration on validation").
    last_item_mask_prob: float = 0.2
    last_item_random_prefix: bool = True
    # batch 64 / lr 2e-3 / patience 20: at 128 / 1e-3 / 10 it under-trains on ml-100k
    # (measured in the same section of benchmarks/README.md)
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 20  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"  # read by the shared loop (bf16 on CUDA)
    compile: bool = False  # read by the shared loop
    gradient_checkpointing: bool = False
    use_user_embedding: bool = False
    n_users: int = 0  # rows of the user embedding = n_users + 1 (0 = unknown user)
    unknown_user_prob: float = 0.1
    multitask_weight: float = 0.0
    preference_threshold: float = 4.0

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        fracs = (self.mask_token_frac, self.random_token_frac)
        if min(fracs) < 0.0 or sum(fracs) > 1.0:
            raise ValueError(f"mask_token_frac + random_token_frac must be in [0, 1], got {fracs}")
        if not 0.0 <= self.last_item_mask_prob <= 1.0:
            raise ValueError(f"last_item_mask_prob must be in [0, 1], got {self.last_item_mask_prob}")
        if self.max_len < 2:
            raise ValueError("max_len must be >= 2 (at least one item and the [MASK])")
        if self.use_user_embedding and self.n_users < 1:
            raise ValueError("use_user_embedding needs n_users (the split's n_users)")
        if self.mixed_precision not in ("none", "bf16"):
            raise ValueError(f"mixed_precision must be 'none' or 'bf16', got {self.mixed_precision!r}")


def cloze_mask(
    items: torch.Tensor, config: BERT4RecConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloze-mask a batch of left-padded sequences; ``cloze_mask_with_source`` without its third output."""
    inputs, labels, _ = cloze_mask_with_source(items, config, generator)
    return inputs, labels


def cloze_mask_with_source(
    items: torch.Tensor, config: BERT4RecConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cloze-mask a batch of left-padded sequences on the CPU with ``generator``.

    items: LongTensor[B, L] (PAD = 0). Returns (inputs, labels, source), all LongTensor[B, L]:
    labels hold the original item at masked positions and PAD elsewhere; inputs hold [MASK],
    a random item or the original item at masked positions (see the module docstring). PAD is
    never masked; every row with a real item gets at least one mask. With probability
    ``last_item_mask_prob`` a row instead gets a single [MASK] at its last (rightmost) item, after
    a random prefix cut with ``last_item_random_prefix``. ``source`` is the column of ``items``
    each output column came from (-1: padding a prefix cut added), so that per-position data
    such as ratings can follow the cut through ``take_columns``.
    """
    real = items != PAD
    source = torch.arange(items.shape[1]).expand(items.shape).clone()
    masked = (torch.rand(items.shape, generator=generator) < config.mask_prob) & real
    # At least one mask per sequence: rows without one get their mask at a random real position.
    pick = torch.rand(items.shape, generator=generator).masked_fill(~real, -1.0).argmax(1)
    lonely = ~masked.any(1) & real.any(1)
    masked[lonely, pick[lonely]] = True

    how = torch.rand(items.shape, generator=generator)
    random_items = torch.randint(1, config.n_items + 1, items.shape, generator=generator)
    to_mask = masked & (how < config.mask_token_frac)
    to_random = masked & (how >= config.mask_token_frac)
    to_random &= how < config.mask_token_frac + config.random_token_frac
    inputs = torch.where(to_mask, config.n_items + 1, items)
    inputs = torch.where(to_random, random_items, inputs)
    if config.last_item_mask_prob > 0:  # Sun et al. 3.6: samples shaped like inference
        last = torch.rand(items.shape[0], generator=generator) < config.last_item_mask_prob
        last &= real[:, -1]
        if config.last_item_random_prefix:
            source[last] = random_prefix_source(items[last], generator)
            items = take_columns(items, source)
        masked[last] = False
        masked[last, -1] = True
        inputs[last] = items[last]
        inputs[last, -1] = config.n_items + 1
    return inputs, torch.where(masked, items, PAD), source


def random_prefix_source(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Where to cut each left-padded row: after a uniformly drawn real item other than its first
    (so at least one item precedes the cut), the kept prefix shifted right to the last column.

    items: LongTensor[B, L] whose last column is real -> LongTensor[B, L] of source columns for
    ``take_columns`` (-1 where the shifted row gets PAD). Rows of one real item stay as they are.
    """
    width = items.shape[1]
    n_real = (items != PAD).sum(1)
    # keep the first `keep` real items, keep in [2, n_real] (or 1 for a single-item row)
    low = n_real.clamp(max=2)
    keep = low + (torch.rand(items.shape[0], generator=generator) * (n_real - low + 1)).long().clamp(max=n_real - low)
    shift = n_real - keep  # columns to move right
    return (torch.arange(width).unsqueeze(0) - shift.unsqueeze(1)).clamp(min=-1)


def take_columns(values: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """values[b, source[b, j]] for every row b and column j; 0 (PAD, rating 0) where source is -1."""
    taken = values.gather(1, source.clamp(min=0))
    return torch.where(source >= 0, taken, torch.zeros((), dtype=values.dtype))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """x: [B, L, D]; keys: BoolTensor[B, 1, 1, L], True where a key may be read by every
        query, or None (every key real). -> [B, L, D], or [B, 1, D] with ``last_only`` (only
        the latest position queries)."""
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q = q[:, :, -1:]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keys, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, q.shape[2], d))


class Block(nn.Module):
    """Pre-LN transformer block, BERT's feed-forward (hidden size 4 * dim, GELU)."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, dropout)
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], or [B, 1, D] for the latest position with ``last_only``."""
        residual = x[:, -1:] if last_only else x
        x = residual + self.dropout(self.attn(self.ln_attn(x), keys, last_only))
        return x + self.dropout(self.ffn(self.ln_ffn(x)))


class BERT4Rec(nn.Module):
    single_row_trace = True  # serving traces score for one request (serving.inference)

    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        self.config = config
        self.mask_token = config.n_items + 1
        d = config.dim
        # Built under the config's seed so that a config alone fixes the initial weights; the
        # optional parts come last, so turning them on leaves the shared weights as they were.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_emb = nn.Embedding(config.n_items + 2, d, padding_idx=PAD)
            self.pos_emb = nn.Embedding(config.max_len, d)
            self.ln_emb = nn.LayerNorm(d)
            self.emb_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(
                Block(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
            )
            self.ln_out = nn.LayerNorm(d)
            self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
            self.out_bias = nn.Parameter(torch.zeros(config.n_items + 1))  # column 0 unused
            self.apply(_bert_init)
            with torch.no_grad():
                self.item_emb.weight[PAD].zero_()
            self.user_emb = (
                nn.Embedding(config.n_users + 1, d) if config.use_user_embedding else None
            )
            if self.user_emb is not None:
                _bert_init(self.user_emb)
            self.rating_head = nn.Linear(d, 1) if config.multitask_weight > 0 else None
            self.preference_head = nn.Linear(d, 1) if config.multitask_weight > 0 else None

    # ----- the network ---------------------------------------------------------------------

    def encode(self, items: torch.Tensor, users: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """items: LongTensor[B, L] left-padded, L <= max_len (may hold [MASK]); users:
        LongTensor[B] or None -> hidden FloatTensor[B, L, D].

        ``last_only``: the latest position's hidden state alone, [B, 1, D] (the last block
        computes one query per row), which is all scoring reads."""
        _, l = items.shape
        real = items != PAD
        positions = torch.arange(self.config.max_len - l, self.config.max_len, device=items.device)
        x = self.item_emb(items) + self.pos_emb(positions)
        if self.user_emb is not None:
            if users is None:
                users = torch.zeros(items.shape[0], dtype=torch.long, device=items.device)
            users = torch.where(users <= self.config.n_users, users, 0)  # unseen -> unknown user
            x = x + self.user_emb(users).unsqueeze(1)
        x = self.emb_dropout(self.ln_emb(x))
        # Every query reads the real keys only. A row with no real item at all reads every key
        # instead (its output is never used), so no softmax row is ever all-masked (NaN).
        keys = None  # every key real: no mask to build or apply
        if not bool(real.all()):
            keys = real | ~real.any(1, keepdim=True)
            keys = keys[:, None, None, :]  # [B, 1, 1, L], broadcast over heads and queries
        for number, block in enumerate(self.blocks, 1):
            if last_only and number == len(self.blocks):
                x = block(x, keys, last_only=True)
            elif self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, keys, use_reentrant=False)
            else:
                x = block(x, keys)
        return self.ln_out(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [..., D] -> scores over columns 0..n_items (column 0 = PAD, never meaningful)."""
        weight = self.item_emb.weight[: self.config.n_items + 1]
        return self.transform(hidden) @ weight.T + self.out_bias

    def loss(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        users: torch.Tensor | None = None,
        ratings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cloze loss: full-softmax cross-entropy at the masked positions (labels != PAD).

        inputs, labels: LongTensor[B, L] from ``cloze_mask``; users: LongTensor[B];
        ratings: FloatTensor[B, L] aligned with the items (needed when multitask_weight > 0).
        """
        hidden = self.encode(inputs, users)
        target = labels != PAD
        h = hidden[target]  # [N, D]
        # Softmax over the real items 1..n_items only: item i is column i - 1.
        loss = F.cross_entropy(self.item_logits(h)[:, 1:], labels[target] - 1)
        if self.rating_head is not None:
            if ratings is None:
                raise ValueError("multitask_weight > 0 needs the ratings of the sequence")
            rating = ratings[target].to(h.dtype)
            preferred = (rating >= self.config.preference_threshold).to(h.dtype)
            mse = F.mse_loss(self.rating_head(h).squeeze(-1), rating)
            bce = F.binary_cross_entropy_with_logits(self.preference_head(h).squeeze(-1), preferred)
            loss = loss + self.config.multitask_weight * (mse + bce)
        return loss

    @property
    def history_length(self) -> int:
        """How many of the latest history items ``score`` reads."""
        return self.config.max_len

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """Append [MASK] after each history and score it -> FloatTensor[B, n_items + 1]."""
        device = self.item_emb.weight.device
        items = batch.items.to(device)[:, -(self.config.max_len - 1) :]
        mask = torch.full((items.shape[0], 1), self.mask_token, dtype=items.dtype, device=device)
        items = torch.cat([items, mask], dim=1)
        # Columns that are padding in every row change nothing (positions count from the right);
        # cutting them saves the quadratic attention cost on short histories.
        first = int((items != PAD).any(0).long().argmax())
        hidden = self.encode(items[:, first:], batch.users.to(device), last_only=True)
        return self.item_logits(hidden[:, -1])

    # ----- training ------------------------------------------------------------------------

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> FitReport:
        """Cloze training on each user's (cropped) training sequence; a fresh crop and fresh
        masks every epoch."""
        if self.user_emb is not None and data.n_users > self.config.n_users:
            raise ValueError(f"n_users {self.config.n_users} < the split's {data.n_users}")
        sequences = ClozeSequences(data.train, self.config.max_len)
        if self.rating_head is not None and len(sequences.rating):  # start at the mean rating
            with torch.no_grad():
                self.rating_head.bias.fill_(float(sequences.rating[1:].mean()))
        return train_loop(
            self,
            data,
            device,
            name="bert4rec",
            epoch_batches=lambda generator: sequences.epoch_batches(self.config, generator),
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )


class ClozeSequences:
    """Each user's training items, ratings and user index, cropped and Cloze-masked per epoch.

    The crops are the shared ``SequenceWindows`` over training-row ids, looked up into items,
    ratings and users (row id 0, what PAD reads, has no item, no user, rating 0). Users with a
    single training item are left out, as in SASRec.
    """

    def __init__(self, train: pd.DataFrame, max_len: int):
        self.windows = SequenceWindows(train, max_len)
        self.item = self.windows.column("item_idx").long()
        self.rating = self.windows.column("rating").float()
        self.user = self.windows.column("user_idx").long()

    def epoch_batches(self, config: BERT4RecConfig, generator: torch.Generator):
        """Yield (inputs, labels, users, ratings): LongTensor[b, w] x2, LongTensor[b],
        FloatTensor[b, w]."""
        for row_ids in self.windows.epoch_batches(config.batch_size, generator):
            items = self.item[row_ids]
            inputs, labels, source = cloze_mask_with_source(items, config, generator)
            users = self.user[row_ids[:, -1]]  # the last column is always a real item
            if config.use_user_embedding:
                unknown = torch.rand(users.shape, generator=generator) < config.unknown_user_prob
                users = users.masked_fill(unknown, 0)
            # ratings follow a prefix cut of their row, so each stays with its item
            yield inputs, labels, users, take_columns(self.rating[row_ids], source)


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
