"""The retraining gate: a candidate against the model it would replace, on the same fresh cases.

Both models are scored in the same step on the same validation cases (the newest events before
the cutoff, which neither trained on), never against a number stored when the old model was
trained: that number was measured on other cases and says nothing about this week. The gate
reads the paired per-case NDCG@10 differences: their mean ``delta`` and a paired bootstrap
percentile interval of it (cases resampled with replacement, one seeded generator). **A
candidate is promoted only if it is strictly better on the mean and by at least the margin**; a
worse or equal one never is. The interval is reported (registry tags, replay report) so that a
reader can see whether a promotion was a coin flip; it does not block one, because a weekly
window rarely has the cases to separate two good models and refusing every week would freeze the
pipeline (set ``margin`` to ask for more).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-12  # float sums such as 0.3 + 0.1 must not turn an exact tie at the margin into a loss


@dataclass
class GateResult:
    """The paired gate on per-case NDCG@10 of the candidate and the champion, both scored in the
    same task on the same fresh validation cases. ``delta`` is mean(candidate - champion);
    ``[low, high]`` its paired bootstrap percentile interval at ``confidence``. ``promote`` is the
    rule (``delta > 0`` and ``delta >= margin``); the interval is recorded, not a condition."""

    promote: bool
    delta: float
    low: float
    high: float
    n_cases: int
    candidate_mean: float
    champion_mean: float
    reason: str
    margin: float = 0.0
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    champion_version: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def paired_gate(
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    margin: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    champion_version: str | None = None,
    champion_label: str | None = None,
) -> GateResult:
    """Compare per-case NDCG@10 arrays aligned on the same cases (``candidate[i]`` and
    ``champion[i]`` score case ``i``). Promote iff the candidate is strictly better on average
    and by at least ``margin``: a candidate worse than or equal to the champion never is.

    The interval resamples cases (the pairs together) ``n_boot`` times with one
    ``numpy.random.Generator(seed)``: the same inputs give the same interval.
    ``champion_version`` (a registry version) or ``champion_label`` (any name) only names the
    champion in the reason."""

    cand, champ = np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)
    if cand.ndim != 1 or champ.ndim != 1:
        raise ValueError(f"paired_gate: per-case scores must be 1-D arrays, got shapes {cand.shape} and {champ.shape}")
    if len(cand) != len(champ):
        raise ValueError(f"paired_gate: {len(cand)} candidate scores but {len(champ)} champion scores: not aligned on the same cases")
    if len(cand) == 0:
        raise ValueError("paired_gate: no validation cases to compare on")
    if not (np.isfinite(cand).all() and np.isfinite(champ).all()):
        raise ValueError("paired_gate: per-case scores must be finite (a NaN would poison every mean)")
    if n_boot < 1:
        raise ValueError(f"paired_gate: n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_gate: confidence must lie strictly between 0 and 1, got {confidence}")
    n = len(cand)
    delta, low, high = paired_interval(cand, champ, n_boot=n_boot, seed=seed, confidence=confidence)
    promote = delta > 0.0 and delta >= margin - EPS
    if promote:
        verdict = "promoted"
    elif delta <= 0.0:
        verdict = "not promoted: not better than the champion"
    else:
        verdict = "not promoted: better, but short of the margin"
    whose = (f"{champion_label}'s" if champion_label
             else f"champion v{_version_number(champion_version)}'s" if champion_version else "the champion's")
    cand_mean, champ_mean = float(cand.mean()), float(champ.mean())
    reason = (
        f"fresh validation NDCG@10 {cand_mean:.4f} vs {whose} {champ_mean:.4f} on {n} cases: "
        f"delta {delta:+.4f} [{confidence:.0%} CI {low:+.4f}, {high:+.4f}], margin {margin:.4f}: {verdict}"
    )
    return GateResult(
        promote=promote, delta=delta, low=low, high=high, n_cases=n, candidate_mean=cand_mean,
        champion_mean=champ_mean, reason=reason, margin=margin, confidence=confidence, n_boot=n_boot,
        seed=seed, champion_version=_version_number(champion_version) if champion_version else None,
    )


def paired_interval(a, b, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean of a - b, low, high): the paired bootstrap percentile interval of the mean difference
    of two per-case arrays aligned on the same cases (cases resampled together, ``n_boot`` times,
    one ``numpy.random.Generator(seed)``)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(diff)
    if n == 0:
        raise ValueError("paired_interval: no cases")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    rows = max(1, (1 << 22) // n)  # resample in blocks: n_boot x n indices at once could be GBs
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        means[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
    return float(diff.mean()), low, high


def _version_number(version: str) -> str:
    """"v3" or "3" -> "3"."""
    return str(version).strip().removeprefix("v")
