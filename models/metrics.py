"""Full-ranking evaluator (DESIGN.md, "Evaluation protocol"), batched on torch.

Candidates of a case are the catalogue items 1..n_items minus the items of its input history
(column 0 is padding and never a candidate). The target itself is always a candidate, even when
it also appears in the history: a user who re-watches an item must be able to get it right, so a
repeat target stays rankable (only the *other* history items are excluded).

A target's rank is 1 + the number of other candidates scoring at least as high as it: ties count
against the target, so constant scores rank it last (rank == number of candidates).

Metrics per set of cases: ``hr@K`` (= Recall@K with one target), ``ndcg@K`` (1/log2(rank + 1) when
rank <= K, else 0), ``mrr`` (mean 1/rank, not cut off), for each K, ``coverage@10`` (distinct items
in all top-10 lists / n_items) and ``n_cases``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from models.data import SLICES, HistoryBatch, history_batches, left_pad
from models.split import ACTIVITY_BUCKETS

log = logging.getLogger(__name__)

COVERAGE_K = 10
PER_CASE_COLUMNS = (
    "case_id",
    "user_idx",
    "target_item",
    "rank",
    "top_items",
    "slice",
    "activity_bucket",
)


def _check_targets(targets: torch.Tensor, n_columns: int) -> None:
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) >= n_columns):
        raise ValueError(f"targets must be item indices in 1..{n_columns - 1}")


def exclusion_mask(
    histories: Sequence[Sequence[int]] | torch.Tensor,
    n_items: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """BoolTensor[B, n_items + 1], True at every item of each history (never at column 0).

    ``histories`` is a list of item_idx sequences (the full history, not truncated to a model's
    max_len) or a padded LongTensor[B, L] (PAD = 0 anywhere).
    """
    if isinstance(histories, torch.Tensor):
        padded = histories.to(device=device, dtype=torch.long)
    else:
        longest = max((len(h) for h in histories), default=0)
        padded = left_pad(list(histories), max(longest, 1)).to(device)
    mask = torch.zeros(padded.shape[0], n_items + 1, dtype=torch.bool, device=device)
    if padded.numel():
        if int(padded.min()) < 0 or int(padded.max()) > n_items:
            raise ValueError(f"history item indices must be in 0..{n_items}")
        mask.scatter_(1, padded, True)
    mask[:, 0] = False
    return mask


def _candidates(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor
) -> torch.Tensor:
    """BoolTensor[B, n_items + 1] of candidates: not excluded, not column 0, target always in."""
    if scores.dim() != 2 or exclude.shape != scores.shape or targets.shape != scores.shape[:1]:
        raise ValueError(
            f"shape mismatch: scores {tuple(scores.shape)}, exclude {tuple(exclude.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    _check_targets(targets, scores.shape[1])
    candidates = ~exclude.to(torch.bool)
    candidates[:, 0] = False
    candidates.scatter_(1, targets.unsqueeze(1), True)
    return candidates


def _ranks(scores: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    if torch.isnan(scores).logical_and(candidates).any():
        raise ValueError("scores contain NaN for candidate items")
    target_scores = scores.gather(1, targets.unsqueeze(1))
    at_least = (scores >= target_scores) & candidates  # includes the target itself
    return at_least.sum(dim=1)  # = 1 + other candidates with score >= target's


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor
) -> torch.Tensor:
    """LongTensor[B]: rank of each target among its candidates (1 = best).

    scores: Tensor[B, n_items + 1]; targets: LongTensor[B] of item_idx; exclude:
    BoolTensor[B, n_items + 1] (usually ``exclusion_mask`` of the histories). Column 0 is never a
    candidate; the target is never excluded, even if it is in the history. Rank is 1 + the number
    of other candidates with score >= the target's. Raises ValueError on NaN candidate scores.
    """
    targets = targets.to(device=scores.device, dtype=torch.long)
    candidates = _candidates(scores, targets, exclude.to(scores.device))
    return _ranks(scores, targets, candidates)


def top_k_items(
    scores: torch.Tensor,
    exclude: torch.Tensor,
    targets: torch.Tensor,
    k: int = 20,
    *,
    ranks: torch.Tensor | None = None,
) -> torch.Tensor:
    """LongTensor[B, k]: the k best candidates of each row, best first.

    Ties are broken against the target, exactly as in ``target_ranks``: when the target's rank r is
    <= k it sits at position r - 1 of its row. (Done by ranking the other candidates with the
    target masked out and inserting the target at its rank, which is exact even where a float
    nudge such as ``nextafter`` would collide with a neighbouring score.) Rows with fewer than k
    candidates are padded with 0 on the right. ``ranks`` may be passed when already computed.
    """
    targets = targets.to(device=scores.device, dtype=torch.long)
    candidates = _candidates(scores, targets, exclude.to(scores.device))
    if ranks is None:
        ranks = _ranks(scores, targets, candidates)
    ranks = ranks.to(scores.device)
    batch, n_columns = scores.shape
    k_others = min(k, n_columns)
    others = candidates.clone()
    others.scatter_(1, targets.unsqueeze(1), False)
    masked = scores.masked_fill(~others, float("-inf"))
    top_values, top_idx = masked.topk(k_others, dim=1)
    # A candidate may itself score -inf and tie with masked columns; keep real candidates only.
    top_idx = torch.where(others.gather(1, top_idx), top_idx, torch.zeros_like(top_idx))
    if k_others < k:
        top_idx = torch.cat(
            [top_idx, top_idx.new_zeros(batch, k - k_others)], dim=1
        )
    position = torch.arange(k, device=scores.device).unsqueeze(0)
    target_pos = (ranks - 1).unsqueeze(1)
    source = torch.where(position < target_pos, position, position - 1).clamp(min=0)
    out = top_idx.gather(1, source)
    out = torch.where(position == target_pos, targets.unsqueeze(1), out)
    # Zero padding may have shifted in front of real items after the insertion: push it right.
    n_real = (out > 0).sum(dim=1, keepdim=True)
    if bool((n_real < k).any()):
        keep = out > 0
        key = torch.where(keep, position, position + k)  # real items first, in order
        out = out.gather(1, key.argsort(dim=1, stable=True))
    return out


def ndcg_gains(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Each case's NDCG@k gain from its target's 1-based rank: 1/log2(rank + 1) within the top k, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def metrics_from_ranks(
    ranks: Iterable[int] | np.ndarray | torch.Tensor,
    top_items: Iterable[Sequence[int]] | np.ndarray | torch.Tensor,
    n_items: int,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """hr@K, ndcg@K for each K, mrr, coverage@10 and n_cases from ranks and top lists.

    Pure: usable to recompute every number from the saved per-case parquet
    (``per_case["rank"]``, ``per_case["top_items"]``). With no cases the rates are NaN.
    """
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.cpu().numpy()
    r = np.asarray(list(ranks) if not isinstance(ranks, np.ndarray) else ranks, dtype=np.float64)
    n = len(r)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = float((r <= k).mean()) if n else math.nan
        out[f"ndcg@{k}"] = float(ndcg_gains(r, k).mean()) if n else math.nan
    out["mrr"] = float((1.0 / r).mean()) if n else math.nan
    out[f"coverage@{COVERAGE_K}"] = _coverage(top_items, n_items) if n else math.nan
    out["n_cases"] = int(n)
    return out


def _coverage(top_items, n_items: int) -> float:
    if isinstance(top_items, torch.Tensor):
        top = top_items.cpu().numpy()
    elif isinstance(top_items, np.ndarray) and top_items.ndim == 2:
        top = top_items
    else:
        rows = [np.asarray(t, dtype=np.int64) for t in top_items]
        width = min((len(t) for t in rows), default=0)
        if width < COVERAGE_K:
            raise ValueError(f"coverage@{COVERAGE_K} needs top lists of >= {COVERAGE_K} items")
        top = np.stack([t[:COVERAGE_K] for t in rows]) if rows else np.zeros((0, COVERAGE_K))
    if top.shape[1] < COVERAGE_K:
        raise ValueError(f"coverage@{COVERAGE_K} needs top lists of >= {COVERAGE_K} items")
    distinct = np.unique(top[:, :COVERAGE_K])
    return float((distinct > 0).sum() / n_items)


@dataclass
class EvaluationResult:
    """Per-case ranks and top lists, and the metrics of every slice.

    per_case: columns PER_CASE_COLUMNS (top_items: list of item_idx, best first).
    metrics: slice name -> metrics dict; names are "all", each of models.data.SLICES that has
        cases, and "activity:<bucket>" for each bucket present.
    """

    per_case: pd.DataFrame
    metrics: dict[str, dict[str, float]]


def per_user_slice_means(per_case: pd.DataFrame, k: int = 10) -> dict[str, dict[str, float]]:
    """hr@k and ndcg@k of "all" and each slice with every user counted once per slice: a user's
    n cases in a slice weigh 1/n each (``models.split.cold_selection_cases`` with several
    targets per new user). Where every user has one case per slice, the means are
    ``slice_metrics``'. Also n_cases and n_users per slice."""
    slices = per_case["slice"].to_numpy()
    users = per_case["user_idx"].to_numpy(np.int64)
    ranks = per_case["rank"].to_numpy(np.int64)
    keys = pd.MultiIndex.from_arrays([slices, users])
    weights = 1.0 / pd.Series(1, index=keys).groupby(level=[0, 1]).transform("size").to_numpy(np.float64)
    hit, gain = (ranks <= k).astype(np.float64), ndcg_gains(ranks, k)

    def subset(mask: np.ndarray) -> dict[str, float]:
        w = weights[mask]
        return {
            f"hr@{k}": float((hit[mask] * w).sum() / w.sum()),
            f"ndcg@{k}": float((gain[mask] * w).sum() / w.sum()),
            "n_cases": int(mask.sum()),
            "n_users": int(round(w.sum())),
        }

    out = {"all": subset(np.ones(len(per_case), dtype=bool))} if len(per_case) else {}
    for name in SLICES:
        mask = slices == name
        if mask.any():
            out[name] = subset(mask)
    return out


def slice_metrics(
    per_case: pd.DataFrame, n_items: int, ks: Sequence[int] = (10, 20)
) -> dict[str, dict[str, float]]:
    """The metrics dict of ``EvaluationResult`` recomputed from a per-case table."""
    ranks = per_case["rank"].to_numpy(np.int64)
    top = list(per_case["top_items"])
    slices = per_case["slice"].to_numpy()
    buckets = per_case["activity_bucket"].to_numpy()

    def subset(mask: np.ndarray) -> dict[str, float]:
        idx = np.flatnonzero(mask)
        return metrics_from_ranks(ranks[idx], [top[i] for i in idx], n_items, ks)

    out = {"all": subset(np.ones(len(per_case), dtype=bool))}
    for name in SLICES:
        mask = slices == name
        if mask.any():
            out[name] = subset(mask)
    for bucket in ACTIVITY_BUCKETS:
        mask = buckets == bucket
        if mask.any():
            out[f"activity:{bucket}"] = subset(mask)
    return out


def evaluate(
    score_fn: Callable[[HistoryBatch], torch.Tensor],
    cases: pd.DataFrame,
    n_items: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    max_len: int | None = 200,
    ks: Sequence[int] = (10, 20),
    top_n: int = 20,
    progress: bool = False,
) -> EvaluationResult:
    """Rank every case's target with ``score_fn`` and compute the metrics of every slice.

    ``score_fn(batch) -> Tensor[B, n_items + 1]`` gets histories truncated to ``max_len`` (a
    model's ``history_length``; None: the whole history, padded to the longest in ``cases``);
    the exclusion mask always uses the full history. Cold-user cases reach the model as user 0 ("unknown"):
    they were removed from training, so their ids carry nothing learned. Runs under
    ``torch.inference_mode``.
    """
    if top_n < COVERAGE_K:
        raise ValueError(f"top_n must be >= {COVERAGE_K} (coverage@{COVERAGE_K})")
    device = torch.device(device)
    feed = cases.reset_index(drop=True)
    if max_len is None:
        max_len = max(1, int(feed["history"].map(len).max())) if len(feed) else 1
    if "slice" in feed.columns:
        cold = (feed["slice"] == "cold_user").to_numpy()
        if cold.any():
            feed = feed.assign(user_idx=np.where(cold, 0, feed["user_idx"].to_numpy(np.int64)))
    all_ranks: list[np.ndarray] = []
    all_top: list[np.ndarray] = []
    n_batches = math.ceil(len(feed) / batch_size) if len(feed) else 0
    started = time.perf_counter()
    with torch.inference_mode():
        for number, (batch, chunk) in enumerate(history_batches(feed, batch_size, max_len), 1):
            scores = score_fn(batch.to(device))
            if scores.shape != (len(chunk), n_items + 1):
                raise ValueError(
                    f"score_fn returned shape {tuple(scores.shape)}, "
                    f"expected ({len(chunk)}, {n_items + 1})"
                )
            scores = scores.to(device)
            target_np = chunk["target_item"].to_numpy(np.int64, copy=True)
            targets = torch.from_numpy(target_np).to(device)
            exclude = exclusion_mask(list(chunk["history"]), n_items, device)
            candidates = _candidates(scores, targets, exclude)
            ranks = _ranks(scores, targets, candidates)
            top = top_k_items(scores, exclude, targets, top_n, ranks=ranks)
            all_ranks.append(ranks.cpu().numpy())
            all_top.append(top.cpu().numpy())
            if progress:
                log.info(
                    "evaluate: batch %d/%d (%.1fs)",
                    number,
                    n_batches,
                    time.perf_counter() - started,
                )
    ranks_np = np.concatenate(all_ranks) if all_ranks else np.zeros(0, dtype=np.int64)
    top_np = np.concatenate(all_top) if all_top else np.zeros((0, top_n), dtype=np.int64)
    per_case = pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(np.int64),
            "user_idx": cases["user_idx"].to_numpy(np.int64),
            "target_item": cases["target_item"].to_numpy(np.int64),
            "rank": ranks_np.astype(np.int64),
            "top_items": top_np.tolist(),
            "slice": cases["slice"].to_numpy() if "slice" in cases else "warm",
            "activity_bucket": cases["activity_bucket"].to_numpy(),
        },
        columns=list(PER_CASE_COLUMNS),
    )
    metrics = slice_metrics(per_case, n_items, ks)
    if progress:
        log.info(
            "evaluate: %d cases in %.1fs, all: %s",
            len(per_case),
            time.perf_counter() - started,
            {k: round(v, 4) for k, v in metrics["all"].items()},
        )
    return EvaluationResult(per_case=per_case, metrics=metrics)
