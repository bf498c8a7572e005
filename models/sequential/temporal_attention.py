"""TAT-TV: a causal next-item transformer over (item, timestamp) sequences.

The backbone is SASRec as ``models/sequential/sasrec.py`` trains it (full-softmax cross-entropy at every
position, tied item embeddings, learned positions counted from the right, pre-LN blocks). Three
temporal parts sit on top, each switched by its config flag so their worth can be measured:

1. ``seasonal_encoding``: sin/cos of each event's phase in the week (7 days), the month (the mean
   Gregorian month, 30.44 days) and the year (365.2425 days), ``seasonal_harmonics`` harmonics
   each, projected to ``dim`` and added to the input next to the learned positions.
2. ``time_intervals``: TiSASRec-style relative time-interval attention (Li et al. 2020). The
   interval |t_i - t_j| is log-bucketed (not divided by the user's minimum interval: on
   MovieLens many users rate several items in the same second, so that minimum is 0 or tiny):
   bucket = floor(per_octave * log2(1 + minutes)), clipped at ``time_span - 1``, with per_octave
   chosen so that ``time_span`` buckets reach 2^21 minutes (about 4 years). Each layer embeds a
   bucket as a per-head key vector r_ij (logit q_i . r_ij / sqrt(d_head), TiSASRec's key term) plus
   a per-head scalar bias; both go into the additive float mask of
   ``F.scaled_dot_product_attention``. TiSASRec's value-side interval term is left out: it needs
   the attention weights, which the fused kernel does not expose.
3. ``seasonal_decomposition``: at each position i, the user's activity profile from events <= i
   (share of events per weekday and per month, the weekday and month of "now" = event i, since
   the next event's time is unknown at inference, and trend terms: log of the 7- and 30-day rate
   over the overall rate, log1p of the overall rate per day), embedded by a small MLP into a
   context vector added to the final hidden state.

Calendar features are in UTC. All off, the model is SASRec with timestamps ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.data import PAD, HistoryBatch, TrainingData
from models.interface import EpochLog, FitReport
from models.sequential.windows import SequenceWindows
from models.training import train_loop

DAY = 86_400
# Cycle lengths in seconds (integers, so the phase is exact in int64): week, mean Gregorian
# month (30.436875 days) and mean Gregorian year (365.2425 days).
CYCLES = (7 * DAY, 2_629_746, 31_556_952)
INTERVAL_OCTAVES = 21  # log buckets reach 2^21 minutes, about 4 years
TREND_WINDOWS_DAYS = (7, 30)
N_PROFILE_FEATURES = 7 + 12 + 7 + 12 + len(TREND_WINDOWS_DAYS) + 1


@dataclass(frozen=True)
class TemporalAttentionConfig:
    n_items: int
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 200
    dropout: float = 0.2
    time_span: int = 256  # number of log interval buckets; longer intervals share the last
    # Off by default: on ml-100k it lowered validation NDCG@10 (the ablation and its command:
    # benchmarks/README.md, "TAT-TV (temporal / seasonal attention) ablation"). Turn it on for
    # data with real viewing times.
    seasonal_encoding: bool = False
    time_intervals: bool = True
    seasonal_decomposition: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    mixed_precision: Literal["none", "bf16"] = "none"  # bf16 autocast on CUDA only
    compile: bool = False
    gradient_checkpointing: bool = False
    seasonal_harmonics: int = 3  # sin/cos pairs per cycle (1x, 2x, ... the base frequency)


# ----- time features --------------------------------------------------------------------------


def seasonal_features(timestamps: torch.Tensor, harmonics: int) -> torch.Tensor:
    """LongTensor[...] unix seconds -> FloatTensor[..., 3 * 2 * harmonics].

    Blocks in the order of ``CYCLES`` (week first); within a block sin then cos of each harmonic.
    """
    k = torch.arange(1, harmonics + 1, device=timestamps.device, dtype=torch.float32)
    blocks = []
    for period in CYCLES:
        phase = torch.remainder(timestamps, period).float() / period  # exact int64 modulo
        angle = 2 * math.pi * phase.unsqueeze(-1) * k
        blocks += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(blocks, dim=-1)


def weekday_and_month(timestamps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unix seconds -> (weekday 0 = Monday .. 6, month 0 = January .. 11), in UTC.

    Month by Howard Hinnant's civil-from-days, in integer tensor ops (no Python loop).
    """
    days = torch.div(timestamps, DAY, rounding_mode="floor")
    weekday = torch.remainder(days + 3, 7)  # 1970-01-01 was a Thursday
    z = days + 719_468
    era = torch.div(z, 146_097, rounding_mode="floor")
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153  # 0 = March
    month = torch.where(mp < 10, mp + 2, mp - 10)
    return weekday, month


def interval_buckets(delta_seconds: torch.Tensor, time_span: int) -> torch.Tensor:
    """|interval| in seconds (LongTensor) -> LongTensor log bucket in 0..time_span-1."""
    per_octave = (time_span - 1) / INTERVAL_OCTAVES
    minutes = delta_seconds.abs().float() / 60.0
    return (per_octave * torch.log2(1.0 + minutes)).long().clamp(max=time_span - 1)


def masked_buckets(delta_seconds: torch.Tensor, attend: torch.Tensor, time_span: int) -> torch.Tensor:
    """``interval_buckets`` of each (query, key) pair, and ``time_span`` (one past the last
    bucket: "masked") where ``attend`` (BoolTensor, the shape of ``delta_seconds``) is False."""
    return interval_buckets(delta_seconds, time_span).masked_fill_(~attend, time_span)


def activity_profile(
    timestamps: torch.Tensor, real: torch.Tensor, earlier: torch.Tensor, delta: torch.Tensor, last_only: bool = False
) -> torch.Tensor:
    """The user's activity profile at each position, from that position's events and earlier.

    timestamps: LongTensor[B, L]; real: BoolTensor[B, L]; earlier: BoolTensor[B, L, L] (key j is
    real and j <= i); delta: LongTensor[B, L, L] = t_i - t_j. Returns FloatTensor[B, L,
    N_PROFILE_FEATURES]: weekday shares (7), month shares (12), weekday and month of "now" = t_i
    (7 + 12 one-hot), log(recent rate / overall rate) per trend window, log1p(events per day).
    ``last_only``: the latest position's profile alone, [B, 1, N_PROFILE_FEATURES].
    """
    weekday, month = weekday_and_month(timestamps)
    now = torch.cat([F.one_hot(weekday, 7), F.one_hot(month, 12)], dim=-1).float()
    counted = now * real.unsqueeze(-1)
    n = real.float().cumsum(1).clamp(min=1).unsqueeze(-1)  # events so far (left padding: prefix)
    shares = counted.cumsum(1) / n
    first = timestamps.masked_fill(~real, torch.iinfo(torch.long).max).cummin(1).values
    span_days = (timestamps - first).clamp(min=0).float() / DAY + 1.0  # +1: never divide by 0
    overall = n.squeeze(-1) / span_days
    if last_only:  # the prefix sums above are O(L); the trend windows below are O(L^2)
        shares, now, span_days, overall = shares[:, -1:], now[:, -1:], span_days[:, -1:], overall[:, -1:]
        earlier, delta = earlier[:, -1:], delta[:, -1:]
    trends = []
    for window in TREND_WINDOWS_DAYS:
        recent = (earlier & (delta < window * DAY)).sum(-1).float()
        rate = recent / span_days.clamp(max=window)
        trends.append(torch.log((rate + 1e-3) / (overall + 1e-3)))
    trend = torch.stack(trends + [torch.log1p(overall)], dim=-1)
    return torch.cat([shares, now, trend], dim=-1)


# ----- the network ----------------------------------------------------------------------------


class TemporalSelfAttention(nn.Module):
    """Multi-head causal self-attention with TiSASRec key-side time-interval terms."""

    def __init__(self, dim: int, n_heads: int, dropout: float, time_span: int, intervals: bool):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        if intervals:
            self.interval_key = nn.Embedding(time_span, dim)  # r_ij, split into heads
            self.interval_bias = nn.Embedding(time_span, n_heads)
            nn.init.normal_(self.interval_key.weight, std=0.02)
            nn.init.zeros_(self.interval_bias.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x: [B, L, D]; mask: with the interval terms, Long [B, L, L] bucket of each (query,
        key) pair and ``time_span`` where the key is masked (``masked_buckets``); without them,
        float [B, 1, L, L] (0 or -inf). -> [B, L, D], or [B, 1, D] with ``last_only`` (only the
        latest position queries)."""
        b, l, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q, k, v = self.qkv(x).view(b, l, 3, h, dh).permute(2, 0, 3, 1, 4)
        if last_only:
            q, mask = q[:, :, -1:], mask[..., -1:, :]
        queries = q.shape[2]
        if hasattr(self, "interval_key"):
            # q_i . r_ij / sqrt(dh) + the bucket's own bias, for every bucket at once
            # ([B, H, queries, n_buckets + 1]) in one batched matmul-add, then picked per (i, j)
            # by one gather: far cheaper than looking the [B, L, L] buckets up in two tables. The
            # extra bucket is the mask: key 0 and bias -inf, so masked pairs get -inf.
            n = self.interval_key.num_embeddings
            keys = F.pad(self.interval_key.weight.view(n, h, dh).permute(1, 2, 0), (0, 1))  # [H, dh, n + 1]
            own = F.pad(self.interval_bias.weight.T, (0, 1), value=float("-inf"))  # [H, n + 1]
            per_bucket = torch.baddbmm(  # batched over heads: every query of the batch in one row block
                own.unsqueeze(1), q.transpose(0, 1).reshape(h, b * queries, dh), keys, alpha=1 / math.sqrt(dh)
            ).view(h, b, queries, n + 1).transpose(0, 1)
            bias = per_bucket.gather(3, mask.unsqueeze(1).expand(b, h, queries, l))
        else:
            bias = mask
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, queries, d))


class TemporalBlock(nn.Module):
    """Pre-LN transformer block with SASRec's point-wise feed-forward (hidden size = dim)."""

    def __init__(self, config: TemporalAttentionConfig):
        super().__init__()
        dim, dropout = config.dim, config.dropout
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = TemporalSelfAttention(
            dim, config.n_heads, dropout, config.time_span, config.time_intervals
        )
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], or [B, 1, D] for the latest position with ``last_only``;
        ``mask`` as ``TemporalSelfAttention`` takes it."""
        residual = x[:, -1:] if last_only else x
        x = residual + self.dropout(self.attn(self.ln_attn(x), mask, last_only))
        return x + self.dropout(self.ffn(self.ln_ffn(x)))


class TemporalAttention(nn.Module):
    single_row_trace = True  # serving traces score for one request (serving.inference)

    def __init__(self, config: TemporalAttentionConfig):
        super().__init__()
        if config.time_span < 2:
            raise ValueError(f"time_span must be >= 2, got {config.time_span}")
        self.config = config
        # Built under the config's seed so that a config alone fixes the initial weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_emb = nn.Embedding(config.n_items + 1, config.dim, padding_idx=PAD)
            self.pos_emb = nn.Embedding(config.max_len, config.dim)
            if config.seasonal_encoding:
                self.seasonal_proj = nn.Linear(6 * config.seasonal_harmonics, config.dim)
                nn.init.normal_(self.seasonal_proj.weight, std=0.02)
                nn.init.zeros_(self.seasonal_proj.bias)
            self.emb_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(TemporalBlock(config) for _ in range(config.n_layers))
            self.ln_out = nn.LayerNorm(config.dim)
            if config.seasonal_decomposition:
                self.profile_mlp = nn.Sequential(
                    nn.Linear(N_PROFILE_FEATURES, config.dim), nn.GELU(),
                    nn.Linear(config.dim, config.dim),
                )  # fmt: skip
            nn.init.normal_(self.item_emb.weight, std=0.02)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            with torch.no_grad():
                self.item_emb.weight[PAD].zero_()

    def encode(self, items: torch.Tensor, timestamps: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """items, timestamps: LongTensor[B, L] left-padded, L <= max_len -> FloatTensor[B, L, D].

        ``last_only``: the latest position's hidden state alone, [B, 1, D]: the last block
        queries from that position only and its activity profile alone is computed."""
        cfg = self.config
        _, l = items.shape
        real = items != PAD
        positions = torch.arange(cfg.max_len - l, cfg.max_len, device=items.device)
        x = self.item_emb(items) * math.sqrt(cfg.dim) + self.pos_emb(positions)
        if cfg.seasonal_encoding:
            x = x + self.seasonal_proj(seasonal_features(timestamps, cfg.seasonal_harmonics))
        x = self.emb_dropout(x) * real.unsqueeze(-1)
        # Causal, and keys must be real items; every query may always read itself, so pad
        # queries (whose every earlier key is padding) never get an all-masked, NaN softmax row.
        causal = torch.ones(l, l, dtype=torch.bool, device=items.device).tril()
        earlier = causal & real.unsqueeze(1)  # [B, L, L]: key j real and j <= i
        attend = earlier | torch.eye(l, dtype=torch.bool, device=items.device)
        need_delta = cfg.time_intervals or cfg.seasonal_decomposition
        delta = timestamps.unsqueeze(2) - timestamps.unsqueeze(1) if need_delta else None
        if cfg.time_intervals:  # the mask rides in the buckets: one gather per layer gives both
            mask = masked_buckets(delta, attend, cfg.time_span)
        else:  # [B, 1, L, L], broadcast over heads
            mask = torch.zeros(attend.shape, device=items.device).masked_fill(~attend, float("-inf")).unsqueeze(1)
        for number, block in enumerate(self.blocks, 1):
            if last_only and number == len(self.blocks):
                x = block(x, mask, last_only=True)
            elif cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
            x = x * real[:, -x.shape[1] :].unsqueeze(-1)  # the latest column alone after last_only
        hidden = self.ln_out(x)
        if cfg.seasonal_decomposition:
            profile = activity_profile(timestamps, real, earlier, delta, last_only)
            hidden = hidden + self.profile_mlp(profile) * real[:, -hidden.shape[1] :].unsqueeze(-1)
        return hidden

    def loss(
        self, items: torch.Tensor, timestamps: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Full-softmax cross-entropy at every position whose label is not PAD.

        items, timestamps, labels: LongTensor[B, L] (labels = the next item of each position).
        """
        hidden = self.encode(items, timestamps)
        target = labels != PAD
        # Softmax over the real items 1..n_items only: item i is logit column i - 1.
        logits = hidden[target] @ self.item_emb.weight[1:].T  # [N, n_items]
        return F.cross_entropy(logits.float(), labels[target] - 1)

    @property
    def history_length(self) -> int:
        """How many of the latest history items ``score`` reads."""
        return self.config.max_len

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """Hidden state at the latest event @ item embeddings -> FloatTensor[B, n_items + 1]."""
        device = self.item_emb.weight.device
        items = batch.items.to(device)[:, -self.config.max_len :]
        timestamps = batch.timestamps.to(device)[:, -self.config.max_len :]
        hidden = self.encode(items, timestamps, last_only=True)[:, -1]
        # float32 scores even under bf16 autocast: bf16 would make ties, which rank against the
        # target.
        with torch.autocast(device.type, enabled=False):
            return hidden.float() @ self.item_emb.weight.float().T

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
        """Next-item training on every position of each user's (cropped) timed sequence."""
        windows = SequenceWindows(data.train, self.config.max_len + 1)
        items, timestamps = windows.column("item_idx"), windows.column("timestamp")
        batch_size = self.config.batch_size
        return train_loop(
            self,
            data,
            device,
            name="temporal_attention",
            epoch_batches=lambda generator: (
                (items[rows], timestamps[rows]) for rows in windows.epoch_batches(batch_size, generator)
            ),
            batch_loss=lambda batch: self.loss(batch[0][:, :-1], batch[1][:, :-1], batch[0][:, 1:]),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )
