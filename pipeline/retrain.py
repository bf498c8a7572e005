"""One scheduled retrain in one process: what the retraining workflow's tasks and the replay run.

```python
from pipeline.retrain import retrain
out = retrain(tables, DataOptions(), cutoff, ["popularity", "ease", "sasrec"], model_config="laptop",
              previous=last_week.as_previous())  # None: the first retrain
out.champion, out.validation[out.champion]  # chosen on this window's fresh validation cases
out.gates["champion"]                       # candidate vs last week's champion, re-scored here
```

The steps, in order (DESIGN.md, "Retraining and replay"):

1. **Window**: the interactions strictly before ``cutoff`` (``pipeline.window.before_cutoff``), a
   pure function of the cutoff; the item and user tables whole.
2. **Contracts**: the great-expectations suites on the window (``steps.check_contracts``), and
   the drift of the new events (those since the previous cutoff) against what the previous
   champion trained on (``pipeline.drift``): a rating value the reference never had fails here,
   before training; the rest is reported.
3. **Split**: ``models.temporal.cutoff_split``: each user's last interaction within the last
   ``validation_days`` before the cutoff is a validation case, every other row trains.
4. **Fit** every family; each family that has weights starts from the previous retrain's model
   of its own family (``models.id_space.warm_start``: old id rows kept, new rows as the family
   initialises them) unless ``warm_start`` is False; then the usual early stopping on the fresh
   validation cases. Popularity and EASE simply refit.
5. **Choose and gate**: every candidate and every previous model are scored on the same fresh
   validation cases (the previous ones through ``models.id_space.Remapped``); the champion is the
   best candidate on validation NDCG@10; ``gates`` holds, per family and for the champion, the
   paired comparison with the previous model of that name (``pipeline.gate.paired_gate``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from pipeline import steps
from pipeline.options import DataOptions
from pipeline.window import as_utc, before_cutoff, cutoff_seconds

CHAMPION = "champion"  # the name of the overall champion among the gates


@dataclass
class Served:
    """A trained model with the id space it was trained in (what a later retrain warm-starts
    from and re-scores): ``item_ids`` / ``user_ids`` are the raw ids of its split, sorted."""

    family: str
    model: Any
    item_ids: np.ndarray
    user_ids: np.ndarray
    label: str  # where it came from: a cutoff ("2000-11-06T00:00:00Z") or a registry version ("v3")

    @classmethod
    def of(cls, family: str, model, split_data, label: str) -> "Served":
        return cls(family, model, out_ids(split_data, "item"), out_ids(split_data, "user"), label)

    def in_space_of(self, split_data):
        """The model scoring in ``split_data``'s index space (``models.id_space.Remapped``)."""
        from models.id_space import Remapped

        items = (self.item_ids, out_ids(split_data, "item"))
        users = (self.user_ids, out_ids(split_data, "user"))
        return Remapped(self.model, items=items, users=users).eval()


@dataclass
class Previous:
    """What a retrain starts from: the models serving now, by family and ``"champion"``, and the
    cutoff they were trained at (the drift's reference is the data before it)."""

    served: dict[str, Served]
    cutoff: datetime


@dataclass
class RetrainOutput:
    """Everything one retrain made, in memory."""

    cutoff: datetime
    window: Any  # data_contracts.sources.Tables: the interactions before the cutoff
    contracts: Any  # data_contracts.validate.ValidationOutcome
    split: Any  # models.data.SplitData (validation cases only)
    summary: Any  # models.temporal.CutoffSummary
    drift: Any  # pipeline.drift.DriftReport, None on the first retrain
    fitted: dict[str, steps.Fitted]
    warm_started: dict[str, str]  # family -> label of the model it started from, or "scratch"
    validation: dict[str, dict[str, dict[str, float]]]  # family -> slice -> metric (candidates)
    per_case: dict[str, np.ndarray]  # family -> NDCG@10 of each validation case (candidates)
    champion: str = ""
    previous_validation: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # name -> previous model re-scored
    gates: dict[str, Any] = field(default_factory=dict)  # family or "champion" -> pipeline.gate.GateResult
    served: dict[str, Served] = field(default_factory=dict)  # family or "champion" -> what serves after the gates
    seconds: float = 0.0  # wall time of the whole retrain
    fit_seconds: float = 0.0  # of which training

    def as_previous(self) -> Previous:
        """What the next retrain starts from: the models serving after this one's gates."""
        return Previous(dict(self.served), self.cutoff)

    @property
    def label(self) -> str:
        return as_utc(self.cutoff).strftime("%Y-%m-%dT%H:%M:%SZ")

    def report(self) -> dict[str, Any]:
        """JSON-able summary: what the registry tags and the replay report carry."""
        return {
            "cutoff": self.label,
            "window": self.window.name,
            "dataset_digest": self.window.checksum,
            "split": self.summary.to_dict(),
            "drift": None if self.drift is None else self.drift.to_dict(),
            "drift_summary": None if self.drift is None else self.drift.summary(),
            "fitted_families": list(self.fitted),
            "warm_started": self.warm_started,
            "validation": self.validation,
            "previous_validation": self.previous_validation,
            "champion": self.champion,
            "gates": {name: None if gate is None else gate.to_dict() for name, gate in self.gates.items()},
            "served": {name: s.label + f" ({s.family})" for name, s in self.served.items()},
            "fit_seconds": {f: round(x.seconds, 3) for f, x in self.fitted.items()},
            "epochs": {f: len(x.report.epochs) for f, x in self.fitted.items() if x.report is not None},
            "seconds": round(self.seconds, 3),
        }


def retrain(
    tables,
    data: DataOptions,
    cutoff: datetime,
    models: list[str],
    *,
    model_config: str | dict = "",
    previous: Previous | None = None,
    warm_start: bool = True,
    validation_days: float = 7.0,
    margin: float = 0.0,
    gate_seed: int = 0,
    drift_permutations: int = 200,
    text_encoder: str = "all-MiniLM-L6-v2",
    device: str = "auto",
    checkpoints: Callable[[str, dict], Path | None] | None = None,
    progress: bool = False,
) -> RetrainOutput:
    """The retrain at ``cutoff`` (module docstring). ``tables``: the whole source as read
    (``steps.read_tables``); ``previous``: the models serving now (the last retrain's
    ``as_previous()``, or the registry's champions) to warm-start from and gate against (None: the
    first retrain; everything from scratch, every candidate promoted). ``checkpoints(family,
    inputs)`` gives a family's checkpoint folder (None: none), so a killed retrain resumes its
    training where it stopped; ``inputs`` is what the training depends on besides the code (the
    window's digest, the validation days, the config, the model it starts from, the device)."""
    from models.device import pick_device
    from models.interface import training_config
    from models.metrics import per_user_slice_means
    from models.registry import FAMILIES
    from models.temporal import cutoff_split
    from pipeline.config import check_models, load_model_config
    from pipeline.gate import paired_gate

    started = time.perf_counter()
    data.check()
    config = load_model_config(model_config)
    check_models(models, config)
    torch_device = pick_device(device)
    window = before_cutoff(tables, cutoff)
    if not len(window.interactions):
        raise ValueError(f"no interaction before the cutoff {as_utc(cutoff).isoformat()} in {tables.name}")
    contracts = steps.check_contracts(window, data)
    frames = contracts.frames
    drift = None
    if previous is not None:
        drift = window_drift(frames["interactions"], cutoff_seconds(previous.cutoff), permutations=drift_permutations)
    split_data, summary = cutoff_split(
        frames["interactions"], frames["items"], frames["users"],
        cutoff=cutoff_seconds(cutoff), validation_seconds=int(round(validation_days * 86_400)),
    )  # fmt: skip
    if not len(split_data.cases):
        raise ValueError(f"no user has an interaction in the {validation_days} days before {as_utc(cutoff).isoformat()}: nothing to validate on")
    training = split_data.training_data()
    cases = split_data.stage("valid")
    n_items = split_data.n_items
    side_inputs = steps.build_side_inputs(
        [name for family in models for name in FAMILIES[family].side_inputs], training,
        text_encoder=text_encoder, device=str(torch_device), progress=progress,
    )  # fmt: skip
    out = RetrainOutput(cutoff, window, contracts, split_data, summary, drift, {}, {}, {}, {})
    for family in models:
        source = previous.served.get(family) if (previous is not None and warm_start) else None
        inputs = {"window": window.checksum, "validation_days": validation_days, "device": str(torch_device),
                  "start": None if source is None else source.label}  # fmt: skip
        fitted = steps.fit_family(
            family, training, config.get(family, {}), side_inputs, device=torch_device, progress=progress,
            checkpoint_dir=(lambda c, f=family, i=inputs: checkpoints(f, {**i, "config": training_config(c)})) if checkpoints else None,
            start_from=None if source is None else (source.model, (source.item_ids, out_ids(split_data, "item")),
                                                    (source.user_ids, out_ids(split_data, "user"))),
        )  # fmt: skip
        out.fitted[family] = fitted
        out.warm_started[family] = "scratch" if source is None or not fitted.warm_started else source.label
        result = steps.evaluate(fitted.model, cases, n_items, device=torch_device)
        out.per_case[family] = ndcg_per_case(result.per_case)
        out.validation[family] = per_user_slice_means(result.per_case)
        print(
            f"{out_label(cutoff)} {family}: validation NDCG@10 {out.validation[family]['all']['ndcg@10']:.4f} "
            f"({fitted.seconds:.1f}s, {out.warm_started[family]})", flush=True,
        )  # fmt: skip
    out.fit_seconds = sum(f.seconds for f in out.fitted.values())
    out.champion = steps.choose_champion(out.validation)
    label = out_label(cutoff)
    names = {family: family for family in models} | {CHAMPION: out.champion}
    for name, family in names.items():
        candidate = Served.of(family, out.fitted[family].model, split_data, label)
        before = previous.served.get(name) if previous is not None else None
        if before is None:
            out.gates[name] = None
            out.served[name] = candidate
            continue
        result = steps.evaluate(before.in_space_of(split_data), cases, n_items, device=torch_device)
        out.previous_validation[name] = per_user_slice_means(result.per_case)
        gate = paired_gate(out.per_case[family], ndcg_per_case(result.per_case), margin=margin, seed=gate_seed,
                           champion_label=f"{before.label} ({before.family})")  # fmt: skip
        out.gates[name] = gate
        out.served[name] = candidate if gate.promote else before
    out.seconds = time.perf_counter() - started
    return out


def window_drift(interactions: pd.DataFrame, previous_cutoff: int, *, permutations: int = 200):
    """The drift of the events since ``previous_cutoff`` against those before it (what the
    previous champion trained on; ``pipeline.drift``); None when either side is empty. Raises
    ``UnseenValuesError`` when a rating value appears that the reference never had: a contract
    event, not a statistic."""
    from pipeline.drift import check_value_set, measure_drift

    ts = interactions["timestamp"].to_numpy(np.int64)
    reference, current = interactions[ts < previous_cutoff], interactions[ts >= previous_cutoff]
    if not len(current) or not len(reference):
        return None  # nothing new since the previous cutoff (or nothing before it): no drift to measure
    report = measure_drift(reference, current, permutations=permutations)
    check_value_set(report, current)
    return report


def ndcg_per_case(per_case: pd.DataFrame, k: int = 10) -> np.ndarray:
    """NDCG@k of each case of an ``EvaluationResult.per_case``, in its order."""
    from models.metrics import ndcg_gains

    return ndcg_gains(per_case["rank"].to_numpy(np.int64), k)


def out_ids(split_data, kind: str) -> np.ndarray:
    """The raw ids of a split's items or users, sorted (position + 1 is the index)."""
    return split_data.items["item_id"].to_numpy(np.int64) if kind == "item" else split_data.users["user_id"].to_numpy(np.int64)


def out_label(cutoff: datetime) -> str:
    return as_utc(cutoff).strftime("%Y-%m-%dT%H:%M:%SZ")


def cutoffs(start: datetime, step: timedelta, n: int) -> list[datetime]:
    """``T_k = start + k * step`` for k in 0..n-1, UTC."""
    if n < 1:
        raise ValueError(f"need at least one cutoff, got {n}")
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    return [as_utc(start) + k * step for k in range(n)]

