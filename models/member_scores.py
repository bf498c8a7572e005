"""Member scores for the ensemble: every trained member's standardised scores on a candidate set.

Members score on very different scales (counts, dot products, logits), so a blend first puts
each member on one scale per case: the z-score of its scores over the case's *standardisation
items*, the catalogue items 1..n_items not in the history the ensemble sees (the last
``ensemble_history_length`` items of the case's history; the whole history when a member reads
all of it, and whenever the history is that short anyway). ``Ensemble.score`` computes exactly
the same z-scores from its batch, so weights fitted on this table mean the same at serving time.

The table is not a cases × catalogue matrix: a case's candidates are the union of every member's
top-``top_k`` *eligible* items, eligibility being the evaluator's (``models.metrics``): items
1..n_items minus the items of the full history, the target always kept even when it is a
re-watch. A target outside every member's top-K is not a candidate: the case stays in the table
with ``target_in_candidates == False`` and no ``is_target`` row, and a blend of these members
scores it as a miss at the top-K cut (NDCG@10 = 0 for that case in ``fit_blend``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.data import HistoryBatch, left_pad
from models.metrics import exclusion_mask

SCORE_PREFIX = "score_"
# Kept scores whose spread is below this fraction of their magnitude are treated as constant:
# far below float32 resolution, far above float64 rounding of their mean.
_CONSTANT_RTOL = 1e-12


def score_column(member: str) -> str:
    """Column of ``member``'s standardised score in a member table."""
    return f"{SCORE_PREFIX}{member}"


def ensemble_history_length(models: Iterable[nn.Module]) -> int | None:
    """The history an ensemble of ``models`` reads: the longest member's, None if any reads all."""
    lengths = [m.history_length for m in models]
    if not lengths or any(h is None for h in lengths):
        return None
    return max(int(h) for h in lengths)


def standardise(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-row z-score over the kept columns -> FloatTensor[B, C] (float32).

    scores: Tensor[B, C]; keep: BoolTensor[B, C]. Mean and population std (divide by n) are taken
    over the kept columns of each row (in float64) and applied to every column, kept or not.
    A row whose kept scores are constant (or with fewer than two kept columns) becomes all 0, so
    a member with no opinion on a case adds nothing to a blend. Raises ValueError on NaN or
    infinite kept scores.
    """
    if scores.shape != keep.shape or scores.dim() != 2:
        raise ValueError(f"shape mismatch: scores {tuple(scores.shape)}, keep {tuple(keep.shape)}")
    x = scores.to(torch.float64)
    keep = keep.to(device=x.device, dtype=torch.bool)
    if (~torch.isfinite(x) & keep).any():
        raise ValueError("scores are NaN or infinite for items the z-score is taken over")
    n = keep.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)
    kept = torch.where(keep, x, 0.0)
    mean = kept.sum(dim=1, keepdim=True) / n
    centred = x - mean
    std = (torch.where(keep, centred, 0.0).square().sum(dim=1, keepdim=True) / n).sqrt()
    scale = kept.abs().amax(dim=1, keepdim=True)
    varies = std > _CONSTANT_RTOL * scale
    z = torch.where(varies, centred / torch.where(varies, std, 1.0), 0.0)
    return z.to(torch.float32)


def standardisation_mask(histories: torch.Tensor, n_items: int) -> torch.Tensor:
    """BoolTensor[B, n_items + 1]: the items a z-score is taken over, for padded histories.

    histories: LongTensor[B, L] left-padded (the history the ensemble sees). True at items
    1..n_items not in the row's history; column 0 is never kept.
    """
    keep = ~exclusion_mask(histories, n_items, histories.device)
    keep[:, 0] = False
    return keep


def member_batch(batch: HistoryBatch, history_length: int | None) -> HistoryBatch:
    """``batch`` cut to its last ``history_length`` columns (unchanged when None or narrower)."""
    if history_length is None or batch.items.shape[1] <= history_length:
        return batch
    return HistoryBatch(
        batch.items[:, -history_length:], batch.timestamps[:, -history_length:], batch.users
    )


def _eligible(histories: list, targets: torch.Tensor, n_items: int, device) -> torch.Tensor:
    """BoolTensor[B, n_items + 1]: the evaluator's candidates (full history out, target kept)."""
    eligible = ~exclusion_mask(histories, n_items, device)
    eligible[:, 0] = False
    eligible.scatter_(1, targets.unsqueeze(1), True)
    return eligible


def member_scores(
    models: dict[str, nn.Module],
    cases: pd.DataFrame,
    n_items: int,
    *,
    top_k: int = 100,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Standardised scores of every member on each case's candidates, as a long table.

    models: member name -> trained model (scored as it is: put it in eval mode first, as ``fit``
        leaves it). Each member scores the full catalogue once per batch of cases, fed the case's
        history cut to its own ``history_length`` (cold-user cases as user 0, as the evaluator
        does).
    cases: columns of ``models.data.CASE_COLUMNS`` (``stage`` is copied when present).

    Each member's scores are z-scored per case over the items 1..n_items not in the history the
    ensemble sees (see the module docstring; the target is not special-cased, because
    ``Ensemble.score`` does not know it). Candidates are the union of the members' top-``top_k``
    eligible items (history items excluded, the target always eligible; ties at the K-th place are
    broken by ``torch.topk``).

    Returns one row per (case, candidate), ordered by case then item_idx, with columns
    ``case_id`` (int64), ``stage`` (when ``cases`` has it), ``item_idx`` (int64),
    ``score_<member>`` (float32, one per member, in ``models`` order), ``is_target`` (bool) and
    ``target_in_candidates`` (bool, the same on every row of a case). Every case has at least one
    row; a case whose target is in no member's top-K has ``target_in_candidates == False``.
    """
    if not models:
        raise ValueError("member_scores needs at least one member")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    bad = [name for name in models if not name or "." in name]
    if bad:
        raise ValueError(f"member names must be non-empty and contain no '.', got {bad}")
    device = torch.device(device)
    names = list(models)
    ensemble_length = ensemble_history_length(models.values())
    feed = cases.reset_index(drop=True)
    if "slice" in feed.columns:
        cold = (feed["slice"] == "cold_user").to_numpy()
        if cold.any():
            feed = feed.assign(user_idx=np.where(cold, 0, feed["user_idx"].to_numpy(np.int64)))
    has_stage = "stage" in feed.columns

    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in ("case_id", "stage", "item_idx", "is_target", "target_in_candidates")
    }
    member_parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    with torch.inference_mode():
        for start in range(0, len(feed), batch_size):
            chunk = feed.iloc[start : start + batch_size]
            histories = list(chunk["history"])
            stamps = list(chunk["history_timestamps"])
            longest = max(1, max(len(h) for h in histories))
            users = torch.as_tensor(chunk["user_idx"].to_numpy(np.int64, copy=True))
            targets = torch.as_tensor(chunk["target_item"].to_numpy(np.int64, copy=True)).to(device)
            if int(targets.min()) < 1 or int(targets.max()) > n_items:
                raise ValueError(f"target items must be in 1..{n_items}")
            eligible = _eligible(histories, targets, n_items, device)
            seen = left_pad(histories, ensemble_length or longest).to(device)
            keep = standardisation_mask(seen, n_items)

            candidates = torch.zeros_like(eligible)
            z_all = []
            for name in names:
                model = models[name]
                width = model.history_length or longest
                batch = HistoryBatch(left_pad(histories, width), left_pad(stamps, width), users)
                scores = model.score(batch.to(device)).to(device)
                if scores.shape != eligible.shape:
                    raise ValueError(
                        f"member {name!r} returned shape {tuple(scores.shape)}, "
                        f"expected {tuple(eligible.shape)}"
                    )
                z = standardise(scores, keep)
                z_all.append(z)
                k = min(top_k, n_items)
                top = z.masked_fill(~eligible, float("-inf")).topk(k, dim=1).indices
                # rows with fewer than k eligible items also pick ineligible columns: drop those
                candidates |= torch.zeros_like(eligible).scatter_(1, top, True) & eligible

            rows, items = candidates.nonzero(as_tuple=True)  # row-major: by case, then item
            is_target = items == targets[rows]
            hit = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            hit[rows[is_target]] = True
            rows_np = rows.cpu().numpy()
            parts["case_id"].append(chunk["case_id"].to_numpy(np.int64)[rows_np])
            if has_stage:
                parts["stage"].append(chunk["stage"].to_numpy()[rows_np])
            parts["item_idx"].append(items.cpu().numpy().astype(np.int64))
            parts["is_target"].append(is_target.cpu().numpy())
            parts["target_in_candidates"].append(hit.cpu().numpy()[rows_np])
            for name, z in zip(names, z_all):
                member_parts[name].append(z[rows, items].cpu().numpy().astype(np.float32))

    def joined(chunks: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype=dtype)

    table = {"case_id": joined(parts["case_id"], np.int64)}
    if has_stage:
        table["stage"] = joined(parts["stage"], object)
    table["item_idx"] = joined(parts["item_idx"], np.int64)
    for name in names:
        table[score_column(name)] = joined(member_parts[name], np.float32)
    table["is_target"] = joined(parts["is_target"], bool)
    table["target_in_candidates"] = joined(parts["target_in_candidates"], bool)
    return pd.DataFrame(table)
