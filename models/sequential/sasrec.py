"""SASRec (Kang & McAuley 2018) trained the way Klenitskiy & Vasilev (2023) showed works best:
full-softmax cross-entropy over the whole catalogue at every position of the sequence.

Histories are left-padded (the latest item in the last column) and positions are counted from
the right, so extra padding on the left never changes what the real positions see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.data import PAD, HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport
from models.sequential.windows import SequenceWindows
from models.training import train_loop



@dataclass(frozen=True)
class SASRecConfig:
    n_items: int
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 200
    dropout: float = 0.2
    ffn_dim: int | None = None  # point-wise feed-forward width; None = dim (the original SASRec)
    loss: Literal["ce", "sampled", "gbce"] = "ce"
    n_negatives: int = 256  # for "sampled" (popularity-sampled, logQ-corrected) and "gbce" (uniform)
    gbce_t: float = 0.75  # gBCE calibration: 0 = plain BCE, 1 = fully calibrated (gSASRec)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the training loss
    gradient_checkpointing: bool = False  # recompute block activations in backward


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attend: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x: [B, L, D]; attend: BoolTensor[B, 1, L, L], True where query i may read key j, or
        None for plain causal attention. -> [B, L, D], or [B, 1, D] with ``last_only`` (only the
        latest position queries)."""
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q = q[:, :, -1:]
            attend = attend[:, :, -1:] if attend is not None else None
        # attend None: no padding anywhere, so plain causal attention (PyTorch's fused causal
        # kernel, no mask built); the latest position alone may read every key
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0,
            is_causal=attend is None and not last_only,
        )
        return self.proj(y.transpose(1, 2).reshape(b, q.shape[2], d))


class Block(nn.Module):
    """Pre-LN transformer block with SASRec's point-wise feed-forward (width ffn_dim)."""

    def __init__(self, dim: int, n_heads: int, dropout: float, ffn_dim: int):
        super().__init__()
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_heads, dropout)
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], or [B, 1, D] for the latest position with ``last_only``."""
        residual = x[:, -1:] if last_only else x
        x = residual + self.dropout(self.attn(self.ln_attn(x), attend, last_only))
        return x + self.dropout(self.ffn(self.ln_ffn(x)))


LOSSES = ("ce", "sampled", "gbce")


class SASRec(nn.Module):
    single_row_trace = True  # serving traces score for one request (serving.inference)

    def __init__(self, config: SASRecConfig):
        super().__init__()
        if config.loss not in LOSSES:
            raise ValueError(f"SASRec loss {config.loss!r} is unknown; known: {', '.join(LOSSES)}")
        self.config = config
        # Built under the config's seed so that a config alone fixes the initial weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_emb = nn.Embedding(config.n_items + 1, config.dim, padding_idx=PAD)
            self.pos_emb = nn.Embedding(config.max_len, config.dim)
            self.emb_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(
                Block(config.dim, config.n_heads, config.dropout, config.ffn_dim or config.dim)
                for _ in range(config.n_layers)
            )
            self.ln_out = nn.LayerNorm(config.dim)
            nn.init.normal_(self.item_emb.weight, std=0.02)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            with torch.no_grad():
                self.item_emb.weight[PAD].zero_()

    # ----- the network ---------------------------------------------------------------------

    def encode(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """items: LongTensor[B, L] left-padded, L <= max_len -> hidden FloatTensor[B, L, D].

        ``last_only``: the hidden state of the latest position alone, [B, 1, D]. The last block
        then computes one query per row instead of L (its attention row, projection and
        feed-forward), which is what scoring needs."""
        _, l = items.shape
        real = items != PAD
        positions = torch.arange(self.config.max_len - l, self.config.max_len, device=items.device)
        x = self.item_emb(items) * math.sqrt(self.config.dim) + self.pos_emb(positions)
        x = self.emb_dropout(x) * real.unsqueeze(-1)
        attend = None  # no padding in the batch (one user's history, long windows): causal only
        if not bool(real.all()):
            # Causal, and keys must be real items; every query may always read itself, so pad
            # queries (whose every earlier key is padding) never get an all-masked, NaN softmax row.
            causal = torch.ones(l, l, dtype=torch.bool, device=items.device).tril()
            eye = torch.eye(l, dtype=torch.bool, device=items.device)
            attend = (causal & real.unsqueeze(1)) | eye
            attend = attend.unsqueeze(1)  # [B, 1, L, L], broadcast over heads
        for number, block in enumerate(self.blocks, 1):
            if last_only and number == len(self.blocks):
                x = block(x, attend, last_only=True) * real[:, -1:].unsqueeze(-1)
            elif self.config.gradient_checkpointing and self.training:
                x = checkpoint(block, x, attend, use_reentrant=False) * real.unsqueeze(-1)
            else:
                x = block(x, attend) * real.unsqueeze(-1)
        return self.ln_out(x)

    def loss(self, batch_items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured next-item loss at every position whose label is not PAD.

        batch_items, labels: LongTensor[B, L] (labels = the next item of each position).
        """
        hidden = self.encode(batch_items)
        target = labels != PAD
        h, positives = hidden[target], labels[target]  # [N, D], [N]
        if self.config.loss == "ce":
            # Softmax over the real items 1..n_items only (padding is never a next item): the
            # logits skip embedding row 0, so item i is column i - 1.
            return F.cross_entropy(h @ self.item_emb.weight[1:].T, positives - 1)
        if self.config.loss == "sampled":
            return self._sampled_softmax(h, positives)
        return self._gbce(h, positives)

    def _sampled_softmax(self, h: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Softmax over the positive and n_negatives items drawn by training popularity, shared
        by the batch; logits are corrected by -log Q(item) so the estimate is unbiased
        (Yi et al. 2019), and a negative that equals the positive is masked out."""
        negatives = torch.multinomial(self.sampling_probs, self.config.n_negatives, replacement=True)
        log_q = self.sampling_probs.clamp_min(1e-12).log()
        pos_logit = (h * self.item_emb(positives)).sum(-1) - log_q[positives]
        neg_logit = h @ self.item_emb(negatives).T - log_q[negatives]
        neg_logit = neg_logit.masked_fill(negatives.unsqueeze(0) == positives.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(positives))

    def _gbce(self, h: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """gBCE (Petrov & Macdonald 2023): BCE with the positive's probability raised to beta,
        which undoes the overconfidence that uniform negative sampling gives BCE."""
        k, n = self.config.n_negatives, self.config.n_items
        negatives = torch.randint(1, n + 1, (h.shape[0], k), device=h.device)
        alpha = k / max(n - 1, 1)
        beta = alpha * (self.config.gbce_t * (1 - 1 / alpha) + 1 / alpha)
        pos_logit = (h * self.item_emb(positives)).sum(-1)
        neg_logit = torch.einsum("nd,nkd->nk", h, self.item_emb(negatives))
        accidental = negatives == positives.unsqueeze(1)
        pos_loss = -beta * F.logsigmoid(pos_logit)
        neg_loss = -F.logsigmoid(-neg_logit).masked_fill(accidental, 0.0).sum(-1)
        return (pos_loss + neg_loss).mean()

    @property
    def history_length(self) -> int:
        """How many of the latest history items ``score`` reads."""
        return self.config.max_len

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """Hidden state at the latest position @ item embeddings -> FloatTensor[B, n_items + 1]."""
        items = batch.items.to(self.item_emb.weight.device)[:, -self.config.max_len :]
        return self.encode(items, last_only=True)[:, -1] @ self.item_emb.weight.T

    # ----- training ------------------------------------------------------------------------

    def training_setup(self, data: TrainingData) -> tuple[
        Callable[[torch.Generator], Iterator[torch.Tensor]], Callable[[torch.Tensor], torch.Tensor]
    ]:
        """What ``fit`` hands the shared loop: ``epoch_batches(generator)``, which yields one
        epoch of LongTensor[b, w] training windows, and ``batch_loss(window)``, the loss of one.
        Also registers the training-popularity buffer that the sampled softmax draws from."""
        windows = SequenceWindows(data.train, self.config.max_len + 1)
        items = windows.column("item_idx")
        counts = torch.bincount(torch.as_tensor(data.train["item_idx"].to_numpy(np.int64, copy=True)), minlength=self.config.n_items + 1)
        counts[PAD] = 0
        # The sampled-softmax proposal Q: training popularity (not saved with the weights).
        self.register_buffer("sampling_probs", counts.float() / counts.sum().clamp_min(1), persistent=False)
        return (
            lambda generator: (items[rows] for rows in windows.epoch_batches(self.config.batch_size, generator)),
            lambda batch: self.loss(batch[:, :-1], batch[:, 1:]),
        )

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
        """Next-item training on every position of each user's (cropped) training sequence."""
        epoch_batches, batch_loss = self.training_setup(data)
        return train_loop(
            self,
            data,
            device,
            name="sasrec",
            epoch_batches=epoch_batches,
            batch_loss=batch_loss,
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
