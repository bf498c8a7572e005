"""A weighted blend of trained members' standardised scores (DESIGN.md: member scores ->
fit_ensemble -> evaluate).

``fit_blend`` chooses the weights on validation cases only, from the member table of
``models.member_scores``: weights w ≥ 0 with Σ w = 1 maximising NDCG@10 of each validation target
among its case's candidates. ``Ensemble`` holds the members and scores the full catalogue as
Σ_m w_m · z_m(batch), z_m being member m's scores z-scored per case over the items not in the
history (``models.member_scores.standardise``), so the evaluator ranks it like any other model.

An ensemble is not trained by ``fit``: its members are trained by their own families, the weights
by ``fit_blend`` on their scores, and ``Ensemble.from_members`` puts the two together.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.data import HistoryBatch
from models.member_scores import (
    ensemble_history_length,
    member_batch,
    score_column,
    standardisation_mask,
    standardise,
)

_WEIGHT_ATOL = 1e-6
_IMPROVES = 1e-12  # a move must beat the current objective by more than float noise


# ----- fitting the weights -------------------------------------------------------------------


@dataclass
class BlendFit:
    """What ``fit_blend`` returns: the weights and the validation metric they reach.

    weights: member -> weight (≥ 0, summing to 1), in member order.
    blend: the metric of the blend on the validation candidates.
    member_alone: member -> the metric of that member alone on the same candidates.
    n_cases: validation cases; n_target_in_candidates: those whose target is a candidate.
    """

    metric: str
    weights: dict[str, float]
    blend: float
    member_alone: dict[str, float]
    n_cases: int
    n_target_in_candidates: int
    rounds: int = 0
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, float]:
        """Flat numbers for MLflow: ``weight/<m>``, ``<metric>``, ``<metric>/<m>``, counts."""
        out = {f"weight/{m}": w for m, w in self.weights.items()}
        out[self.metric] = self.blend
        out.update({f"{self.metric}/{m}": v for m, v in self.member_alone.items()})
        out["n_cases"] = float(self.n_cases)
        out["n_target_in_candidates"] = float(self.n_target_in_candidates)
        return out


def _metric_of_ranks(metric: str):
    """'ndcg@K' | 'hr@K' | 'mrr' -> the gain of a FloatArray of ranks (1 = best)."""
    found = re.fullmatch(r"(ndcg|hr)@(\d+)|mrr", metric)
    if not found:
        raise ValueError(f"metric must be 'ndcg@K', 'hr@K' or 'mrr', got {metric!r}")
    if metric == "mrr":
        return lambda r: 1.0 / r
    k = int(found.group(2))
    if found.group(1) == "hr":
        return lambda r: (r <= k).astype(np.float64)
    return lambda r: np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


class _ValidationCandidates:
    """The validation part of a member table, arranged to rank targets under many weights at once.

    A candidate outblends its case's target when Σ w_m d_m >= 0, d_m = z_m(item) - z_m(target).
    With w ≥ 0 on the simplex, a candidate with every d_m >= 0 always counts against the target
    and one with every d_m < 0 never does, whatever the weights: only the others are kept per
    weight vector, which is usually a small part of the table.
    """

    _CELLS_PER_CHUNK = 1 << 23  # rows × weight vectors blended at a time (64 MiB of float64)

    def __init__(self, table: pd.DataFrame, members: list[str]):
        self.n_cases = int(table["case_id"].nunique())
        with_target = table[table["target_in_candidates"].to_numpy(bool)]
        # cases without a target among their candidates score 0 whatever the weights
        codes, _ = pd.factorize(with_target["case_id"].to_numpy(np.int64), sort=True)
        self.n_hit = int(codes.max()) + 1 if len(codes) else 0
        is_target = with_target["is_target"].to_numpy(bool)
        if (np.bincount(codes[is_target], minlength=self.n_hit) != 1).any():
            raise ValueError("a case whose target is a candidate needs exactly one is_target row")
        z = with_target[[score_column(m) for m in members]].to_numpy(np.float64)
        target_z = np.empty((self.n_hit, len(members)))
        target_z[codes[is_target]] = z[is_target]
        others = ~is_target
        d, codes = z[others] - target_z[codes[others]], codes[others]
        always, never = (d >= 0).all(axis=1), (d < 0).all(axis=1)
        # 1 for the target itself, plus the candidates that outblend it under any weights
        self.base = 1 + np.bincount(codes[always], minlength=self.n_hit)
        open_ = ~always & ~never
        order = np.argsort(codes[open_], kind="stable")  # rows of a case side by side
        self.d = np.ascontiguousarray(d[open_][order].T)  # [M, rows still open]
        open_codes = codes[open_][order]
        self.cases, self.starts = np.unique(open_codes, return_index=True)

    def ranks(self, weights: np.ndarray) -> np.ndarray:
        """IntArray[G, n_hit] for weights [G, M]: 1 + other candidates blending >= the target
        (ties count against it), per case whose target is a candidate."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        out = np.repeat(self.base[None, :], len(weights), axis=0)
        if not len(self.cases):
            return out
        step = max(1, self._CELLS_PER_CHUNK // self.d.shape[1])
        for first in range(0, len(weights), step):
            ahead = (weights[first : first + step] @ self.d) >= 0  # [g, rows still open]
            counts = np.add.reduceat(ahead.view(np.uint8), self.starts, axis=1, dtype=np.int64)
            out[first : first + step, self.cases] += counts
        return out

    def objectives(self, weights: np.ndarray, gain) -> np.ndarray:
        """FloatArray[G]: the metric of each weight vector, averaged over all validation cases."""
        weights = np.atleast_2d(weights)
        if not self.n_hit:
            return np.zeros(len(weights))
        return gain(self.ranks(weights).astype(np.float64)).sum(axis=1) / self.n_cases


def _coordinate_moves(weights: np.ndarray, member: int, grid: np.ndarray) -> np.ndarray:
    """Weight vectors with ``member`` set to each grid value and the others rescaled to fill 1."""
    rest = weights.copy()
    rest[member] = 0.0
    total = rest.sum()
    if total > 0:
        share = rest / total
    else:
        share = np.full_like(rest, 1.0 / max(len(rest) - 1, 1))
        share[member] = 0.0
    moves = share[None, :] * (1.0 - grid)[:, None]
    moves[:, member] = grid
    return moves


def fit_blend(
    member_table: pd.DataFrame,
    members: list[str],
    *,
    metric: str = "ndcg@10",
    grid_step: float = 0.05,
    max_rounds: int = 20,
) -> BlendFit:
    """Blend weights for ``members`` fitted on the VALIDATION rows of ``member_table``.

    member_table: ``models.member_scores.member_scores`` output; it must have a ``stage``
        column. Rows of test cases are ignored (the table of the pipeline holds both stages, and
        only validation targets may choose weights), so they cannot change the result.
    Objective: ``metric`` ('ndcg@K', 'hr@K' or 'mrr') of each validation target ranked among
        its case's candidates by Σ w_m · score_<m> (rank = 1 + other candidates scoring >= it),
        averaged over validation cases; a case whose target is not a candidate counts 0. This
        is the full-catalogue number whenever no non-candidate item would outblend the target,
        which a top-K far above 10 makes near-certain; the evaluator measures the real one.
    Search (deterministic): coordinate ascent on the simplex — set one weight to each value of
        a ``grid_step`` grid, rescale the others to sum 1, keep a strict improvement — started
        from each member alone (best member first) and from equal weights. Ties keep the earlier
        point, so a mix is chosen only when it beats the best single member.
    """
    if not members:
        raise ValueError("fit_blend needs at least one member")
    if len(set(members)) != len(members):
        raise ValueError(f"members must be distinct, got {members}")
    missing = [score_column(m) for m in members if score_column(m) not in member_table.columns]
    needed = ("case_id", "is_target", "target_in_candidates")
    missing += [c for c in needed if c not in member_table.columns]
    if missing:
        raise ValueError(f"member table lacks column(s) {missing}")
    if "stage" not in member_table.columns:
        raise ValueError("member table has no 'stage' column: cannot keep validation cases only")
    if not 0 < grid_step <= 1:
        raise ValueError(f"grid_step must be in (0, 1], got {grid_step}")
    gain = _metric_of_ranks(metric)
    valid = member_table[member_table["stage"].to_numpy() == "valid"]
    if valid.empty:
        raise ValueError("member table has no validation rows (stage == 'valid') to fit weights on")
    data = _ValidationCandidates(valid, members)

    n = len(members)
    grid = np.linspace(0.0, 1.0, max(1, round(1.0 / grid_step)) + 1)
    vertices = np.eye(n)
    alone = data.objectives(vertices, gain).tolist()
    order = sorted(range(n), key=lambda i: -alone[i])  # stable: ties keep member order
    starts = [vertices[i] for i in order] + ([np.full(n, 1.0 / n)] if n > 1 else [])

    best_w, best_value, rounds, history = None, -math.inf, 0, []
    for start in starts:
        w, value = start.copy(), float(data.objectives(start, gain)[0])
        for _ in range(max_rounds if n > 1 else 0):
            rounds += 1
            improved = False
            for member in range(n):
                moves = _coordinate_moves(w, member, grid)
                values = data.objectives(moves, gain)
                pick = int(np.argmax(values))  # first of equal values: deterministic
                if values[pick] > value + _IMPROVES:
                    w, value, improved = moves[pick], float(values[pick]), True
            if not improved:
                break
        history.append({"start": start.tolist(), "weights": w.tolist(), metric: value})
        if value > best_value + _IMPROVES:
            best_w, best_value = w, value

    best_w = np.clip(best_w, 0.0, None)
    best_w = best_w / best_w.sum()
    return BlendFit(
        metric=metric,
        weights={m: float(x) for m, x in zip(members, best_w)},
        blend=float(best_value),
        member_alone={m: float(v) for m, v in zip(members, alone)},
        n_cases=data.n_cases,
        n_target_in_candidates=data.n_hit,
        rounds=rounds,
        history=history,
    )


# ----- the ensemble model ---------------------------------------------------------------------


@dataclass(frozen=True)
class EnsembleConfig:
    """members: names (ModuleDict keys); weights: one per member, ≥ 0, summing to 1;
    member_configs: JSON ``{"family": ..., "config": {...}}`` per member, which rebuilds it;
    history_length: the longest member's, None if any member reads the whole history."""

    n_items: int
    members: tuple[str, ...]
    weights: tuple[float, ...]
    member_configs: tuple[str, ...]
    history_length: int | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        if not len(self.members) == len(self.weights) == len(self.member_configs):
            raise ValueError("members, weights and member_configs must have the same length")
        if len(set(self.members)) != len(self.members) or any(
            not m or "." in m for m in self.members
        ):
            raise ValueError(
                f"member names must be distinct, non-empty, without '.': {self.members}"
            )
        if any(not w >= 0 for w in self.weights) or abs(sum(self.weights) - 1) > _WEIGHT_ATOL:
            raise ValueError(f"weights must be >= 0 and sum to 1, got {self.weights}")
        if self.history_length is not None and self.history_length < 1:
            raise ValueError(f"history_length must be >= 1 or None, got {self.history_length}")


def _families() -> dict[str, tuple[Any, type]]:
    """family -> (config class, module class), read from the registry (imported lazily: the
    registry lists this module's family too)."""
    from models import registry

    out = {}
    for name, spec in registry.FAMILIES.items():
        out[name] = (spec.config, spec.module)
    return out


def _build_member(member_config: str) -> nn.Module:
    from models.registry import config_from_dict

    saved = json.loads(member_config)
    family = saved["family"]
    config = config_from_dict(family, saved["config"])
    return _families()[family][1](config)


def _family_of(model: nn.Module) -> str:
    found = [name for name, (_, module) in _families().items() if type(model) is module]
    if len(found) != 1:
        raise ValueError(
            f"cannot tell the registry family of {type(model).__name__}; pass families="
        )
    return found[0]


class Ensemble(nn.Module):
    """score(batch) = Σ_m w_m · z_m, z_m = member m's scores z-scored over the items not in the
    batch's history (as in ``models.member_scores``); members in an ``nn.ModuleDict``."""

    def __init__(self, config: EnsembleConfig):
        super().__init__()
        self.config = config
        self.history_length = config.history_length
        self.members = nn.ModuleDict(
            {name: _build_member(c) for name, c in zip(config.members, config.member_configs)}
        )
        for name, member in self.members.items():
            if member.config.n_items != config.n_items:
                raise ValueError(
                    f"member {name!r} has n_items {member.config.n_items}, "
                    f"the ensemble {config.n_items}"
                )
        self.eval()

    @classmethod
    def from_members(
        cls,
        models: dict[str, nn.Module],
        weights: dict[str, float],
        *,
        families: dict[str, str] | None = None,
    ) -> "Ensemble":
        """An ensemble of trained ``models`` (their state_dicts copied) blended by ``weights``.

        ``weights`` (e.g. ``fit_blend(...).weights``) must name exactly the members; they are
        normalised to sum 1. ``families`` (member -> registry family) defaults to the family whose
        module class each model is.
        """
        if set(weights) != set(models):
            raise ValueError(f"weights name {sorted(weights)}, members are {sorted(models)}")
        total = sum(weights[m] for m in models)
        if not total > 0 or any(not weights[m] >= 0 for m in models):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        families = dict(families or {})
        member_configs = tuple(
            json.dumps(
                {"family": families.get(name) or _family_of(model), "config": asdict(model.config)},
                sort_keys=True,
            )
            for name, model in models.items()
        )
        n_items = {int(model.config.n_items) for model in models.values()}
        if len(n_items) != 1:
            raise ValueError(f"members disagree on n_items: {sorted(n_items)}")
        config = EnsembleConfig(
            n_items=n_items.pop(),
            members=tuple(models),
            weights=tuple(float(weights[m]) / total for m in models),
            member_configs=member_configs,
            history_length=ensemble_history_length(models.values()),
        )
        ensemble = cls(config)
        for name, model in models.items():
            ensemble.members[name].load_state_dict(model.state_dict())
        tensors = (t for model in models.values() for t in (*model.parameters(), *model.buffers()))
        first = next(tensors, None)
        return ensemble if first is None else ensemble.to(first.device)

    def fit(self, *args: Any, **kwargs: Any) -> None:
        """Not how an ensemble is made: see the module docstring."""
        raise NotImplementedError(
            "an Ensemble is not trained by fit: train its members by their own families, fit "
            "the weights with models.ensemble.fit_blend on models.member_scores.member_scores "
            "of validation cases, then build it with Ensemble.from_members(models, weights)"
        )

    @torch.no_grad()
    def score(self, batch: HistoryBatch, member_scorers: dict | None = None) -> torch.Tensor:
        """-> FloatTensor[B, n_items + 1] (column 0 = 0, never ranked).

        Each member gets ``batch`` cut to its own history_length; each member's scores are
        z-scored over items 1..n_items not in ``batch.items`` and added with its weight.
        ``member_scorers``: name -> a scorer(items, timestamps) to use instead of the member's
        ``score`` (the serving path's traced single-row scorers, ``serving.inference``).
        """
        keep = standardisation_mask(batch.items, self.config.n_items)
        total = torch.zeros(keep.shape, dtype=torch.float32, device=keep.device)
        for name, weight in zip(self.config.members, self.config.weights):
            if weight == 0:
                continue  # adds 0 · z: skip the member's forward pass
            member = self.members[name]
            cut = member_batch(batch, member.history_length)
            scorer = (member_scorers or {}).get(name)
            scores = scorer(cut.items, cut.timestamps) if scorer is not None else member.score(cut)
            total += weight * standardise(scores.to(keep.device), keep)
        total[:, 0] = 0.0
        return total
