"""The pipeline's steps, each a plain function with typed inputs (DESIGN.md's diagram, in order).

    read_tables -> check_contracts -> split_tables -> build_side_inputs -> fit_family
        -> validation_metrics (choose) -> score_members -> fit_ensemble -> evaluate (report)

Who calls them: the Flyte tasks (``tasks/``, one thin task per step), ``pipeline.run.run`` (all
of them in one process, for ``models.api`` and the benchmarks), and tests.

The rule the wiring keeps: **test cases reach ``evaluate`` and nothing else.** ``fit_family`` gets
a ``TrainingData`` (training part + validation cases), ``score_members`` refuses a case that is
not a validation case, and every choice (epochs, score-time settings, ensemble weights, the
champion) reads validation numbers: ``validation_metrics`` scores a model on the split's
validation cases plus the held-out slices' validation cases (``Split.selection_cases``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from pipeline.options import DataOptions

# ----- tables and contracts -------------------------------------------------------------------


def read_tables(options: DataOptions, *, name: str | None = None, progress: bool = True):
    """The source's canonical interactions / items / users tables (``data_contracts.sources.Tables``)."""
    from data_contracts.sources import read_source

    def given(path: str) -> str | None:  # "~" is the user's home, as a shell would read it
        return os.path.expanduser(path) if path else None

    return read_source(
        options.source,
        given(options.path),
        ratings_path=given(options.ratings_path),
        item_text_path=given(options.item_text_path),
        name=name,
        synthetic_users=options.synthetic_users,
        seed=options.data_seed,
        progress=progress,
    )


def check_contracts(tables, options: DataOptions, *, quarantine_dir: Path | None = None, dataset: str | None = None):
    """The great-expectations data contracts (``data_contracts.validate.validate_tables``): raises
    ``DataContractError`` naming every broken expectation, or (``options.quarantine``) sets the
    bad rows aside in ``quarantine_dir``. Returns the ``ValidationOutcome`` (``.frames``: the
    tables that go on)."""
    from data_contracts.suites import ContractConfig
    from data_contracts.validate import validate_tables

    return validate_tables(
        tables.interactions,
        tables.items,
        tables.users,
        ContractConfig(min_history_length=options.min_history_length),
        dataset=dataset or tables.name,
        quarantine=options.quarantine,
        quarantine_dir=quarantine_dir,
    )


# ----- split ----------------------------------------------------------------------------------


@dataclass
class Split:
    """The split of one dataset: training part and cases (``data``), every row accounted for
    (``summary``), and the held-out slices' validation cases (``selection_cases``: empty in
    standard mode), which choices read beside the split's own validation cases."""

    data: Any  # models.data.SplitData
    summary: Any  # models.split.SplitSummary
    selection_cases: pd.DataFrame

    @property
    def validation_cases(self) -> pd.DataFrame:
        """Every case a choice may read: the split's validation cases and the held-out slices'."""
        return validation_cases(self.data.stage("valid"), self.selection_cases)

    @property
    def test_cases(self) -> pd.DataFrame:
        return self.data.stage("test")


def split_tables(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    options: DataOptions,
    *,
    cold_user_fraction: float | None = None,
    cold_user_targets: int | None = 1,
) -> Split:
    """DESIGN.md's leave-one-out split (``options.split_mode``, ``options.split_seed``) and, in
    pipeline mode, the held-out slices' validation cases (``models.split.cold_selection_cases``).
    For experiments on the held-out slices: ``cold_user_fraction`` (None: the split's default
    share of users held out as new users) and ``cold_user_targets`` (validation targets per new
    user: 1, their second-to-last interaction; n, up to the n latest; None, every one)."""
    from models.data import CASE_COLUMNS
    from models.split import cold_selection_cases, leave_one_out_split

    fraction = {} if cold_user_fraction is None else {"cold_user_fraction": cold_user_fraction}
    data, summary = leave_one_out_split(interactions, items, users, mode=options.split_mode, seed=options.split_seed, **fraction)
    if options.split_mode == "pipeline":
        selection = cold_selection_cases(interactions, summary, items=items, cold_user_targets=cold_user_targets)
    else:
        selection = pd.DataFrame({c: pd.Series(dtype=data.cases[c].dtype) for c in CASE_COLUMNS})
    return Split(data, summary, selection)


def validation_cases(valid_cases: pd.DataFrame, selection_cases: pd.DataFrame) -> pd.DataFrame:
    """The validation cases of every slice: the split's (warm) and the held-out slices'."""
    return pd.concat([valid_cases, selection_cases], ignore_index=True)


def _validation_only(cases: pd.DataFrame, step: str) -> None:
    """Refuse any case that is not a validation case: test cases reach ``evaluate`` only."""
    stages = set(cases["stage"]) if len(cases) else set()
    if stages - {"valid"}:
        raise ValueError(f"{step} takes validation cases only, got stages {sorted(stages)}")


# ----- side inputs ----------------------------------------------------------------------------


def build_side_inputs(
    names: Sequence[str],
    training,
    *,
    text_encoder: str = "all-MiniLM-L6-v2",
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: bool = False,
    record: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Each named side input (``models.registry.SIDE_INPUTS``) built once from ``training`` (a
    ``models.data.TrainingData``). With ``cache_dir``, a side input is saved there under a key of
    everything it is built from (its name, the encoder, the training part and the catalogue) and
    loaded instead of rebuilt next time: the text encoder is minutes on a CPU. ``record``, where
    given, gets ``{name: {"seconds": ..., "cache": "hit" | "miss" | None}}`` (None: no cache)."""
    from models.registry import SIDE_INPUTS

    built = {}
    for name in dict.fromkeys(names):
        spec = SIDE_INPUTS[name]
        started = time.perf_counter()
        path = None if cache_dir is None else Path(cache_dir).expanduser() / f"{name}-{_side_input_key(name, training, text_encoder)}.pt"
        if path is not None and path.exists():
            built[name] = spec.load(path)
            how = f"loaded from {path}"
        else:
            built[name] = spec.built(training, text_encoder=text_encoder, device=str(device), progress=progress)
            how = "built"
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".tmp")
                built[name].save(partial)
                partial.replace(path)
        seconds = time.perf_counter() - started
        if record is not None:
            record[name] = {"seconds": round(seconds, 3), "cache": None if path is None else ("hit" if how != "built" else "miss")}
        print(f"side input {name}: {how} in {seconds:.1f}s", flush=True)
    return built


def _side_input_key(name: str, training, text_encoder: str) -> str:
    from models.content.item_text import item_text

    digest = hashlib.sha256(f"{name}\n{text_encoder}\n{training.n_users}\n{training.n_items}\n".encode())
    if name == "item_text_embeddings":
        for text in item_text(training.items):
            digest.update(text.encode("utf-8") + b"\x00")
    else:
        digest.update(pd.util.hash_pandas_object(training.train[["user_idx", "item_idx"]], index=False).values.tobytes())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text_encoder).name or text_encoder)[:40]
    return f"{slug}-{digest.hexdigest()[:32]}" if name == "item_text_embeddings" else digest.hexdigest()[:32]


# ----- fit ------------------------------------------------------------------------------------


@dataclass
class Fitted:
    """One trained family: the model (eval mode), its fit report and its training wall time."""

    family: str
    model: Any  # torch.nn.Module
    report: Any  # models.interface.FitReport
    seconds: float
    started_at: float
    warm_started: Any = None  # models.id_space.WarmStartReport when it started from a previous model


def fit_family(
    family: str,
    training,
    overrides: dict[str, Any],
    side_inputs: dict[str, Any],
    *,
    device,
    checkpoint_dir: Path | Callable[[Any], Path | None] | None = None,
    on_epoch: Callable | None = None,
    progress: bool = False,
    start_from: tuple | None = None,
) -> Fitted:
    """Build ``family`` from its config (defaults <- ``overrides`` <- the widths of its side
    inputs where not given), seed it, and ``fit`` it on ``training`` (a ``TrainingData``: no test
    case exists in it) with early stopping on the validation cases. ``side_inputs``: by name; the
    family gets exactly the ones its spec names. ``checkpoint_dir`` may be a function of the built
    model's config that gives the folder (to key it by the whole config). ``start_from``:
    (previous model, (its item ids, these item ids), (its user ids, these user ids)) to warm-start
    from (``models.id_space.warm_start``) where the family has weights; a family without
    parameters (popularity, EASE) simply refits and ``Fitted.warm_started`` stays None."""
    from models.device import seed_everything
    from models.registry import FAMILIES, build_model, sized_to_side_inputs

    mine = {name: side_inputs[name] for name in FAMILIES[family].side_inputs}
    overrides = sized_to_side_inputs(family, overrides, mine)
    seed_everything(int(overrides.get("seed", 0)))
    model = build_model(family, training.n_items, overrides, n_users=training.n_users).to(device)
    warm = None
    if start_from is not None and any(True for _ in model.parameters()):
        from models.id_space import warm_start

        previous, items, users = start_from
        warm = warm_start(model, previous, items=items, users=users)
    if callable(checkpoint_dir):
        checkpoint_dir = checkpoint_dir(model.config)
    started_at, started = time.time(), time.perf_counter()
    report = model.fit(
        training, device, side_inputs=mine, progress=progress, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch
    )
    model.eval()
    return Fitted(family, model, report, time.perf_counter() - started, started_at, warm)


# ----- evaluate, and choose on validation -----------------------------------------------------


def evaluate(model, cases: pd.DataFrame, n_items: int, *, device="cpu", progress: bool = False, ks: Sequence[int] = (10, 20)):
    """The one protocol: every case's target ranked against the whole catalogue, the case's
    history excluded; metrics per slice and activity bucket (``models.metrics.evaluate``)."""
    from models.metrics import evaluate as evaluate_cases

    return evaluate_cases(model.score, cases, n_items, device=device, max_len=model.history_length, progress=progress, ks=ks)


def validation_metrics(model, validation_cases: pd.DataFrame, n_items: int, *, device="cpu") -> dict[str, dict[str, float]]:
    """HR@10 and NDCG@10 of "all" and each slice on the validation cases (the split's and the
    held-out slices': ``Split.validation_cases``), scored like the test cases; each user counted
    once per slice (``models.metrics.per_user_slice_means``). What every choice reads."""
    from models.metrics import per_user_slice_means

    _validation_only(validation_cases, "validation_metrics")
    return per_user_slice_means(evaluate(model, validation_cases, n_items, device=device).per_case)


def choose_champion(validation: dict[str, dict[str, dict[str, float]]], metric: str = "ndcg@10") -> str:
    """The family with the best validation ``metric`` on "all" (validation cases of every slice);
    the first in the given order wins a tie. ``validation``: family -> ``validation_metrics``."""
    if not validation:
        raise ValueError("choose_champion: no candidates")
    missing = [f for f, m in validation.items() if metric not in m.get("all", {})]
    if missing:
        raise ValueError(f"choose_champion: no validation {metric} on slice 'all' for {missing}")
    return max(validation, key=lambda f: validation[f]["all"][metric])


def choose_score_time_settings(
    model, validation_cases: pd.DataFrame, n_items: int, grid: dict[str, list[float]], *, device="cpu"
) -> list[dict]:
    """Try every combination of the ``grid``'s score-time settings that the model's config has
    (``new_item_offset``, ``short_history_popularity``; they change scoring, not training), keep
    the one with the best validation NDCG@10 over ``validation_cases`` (the first on a tie) and
    return every trial with its validation NDCG@10 per slice. Reads no test case."""
    grid = {name: values for name, values in grid.items() if values and hasattr(model.config, name)}
    if not grid:
        return []
    if not (validation_cases["slice"] != "warm").any():
        raise ValueError(f"score-time settings {sorted(grid)} need the held-out slices' validation cases: use the pipeline split")
    trials = []
    for values in itertools.product(*grid.values()):
        settings = {name: float(value) for name, value in zip(grid, values)}
        model.config = replace(model.config, **settings)
        valid = validation_metrics(model, validation_cases, n_items, device=device)
        trials.append({**settings, "valid_ndcg@10": {k: float(m["ndcg@10"]) for k, m in valid.items()}})
    best = max(range(len(trials)), key=lambda i: (trials[i]["valid_ndcg@10"]["all"], -i))
    trials[best]["chosen"] = True
    model.config = replace(model.config, **{name: trials[best][name] for name in grid})
    return trials


# ----- the ensemble ---------------------------------------------------------------------------


def score_members(models: dict[str, Any], validation_cases: pd.DataFrame, n_items: int, *, top_k: int = 100, device="cpu") -> pd.DataFrame:
    """Each member's standardised scores on every validation case's candidates (the union of the
    members' top-``top_k``; ``models.member_scores.member_scores``). Validation cases only: a test
    case here is a wiring error, refused, so no test target can reach the ensemble's fit."""
    from models.member_scores import member_scores

    _validation_only(validation_cases, "score_members")
    return member_scores(models, validation_cases, n_items, top_k=top_k, device=device)


def fit_ensemble(models: dict[str, Any], member_table: pd.DataFrame):
    """Blend weights fitted on the members' validation scores (``models.ensemble.fit_blend``) ->
    (the ``Ensemble``, which scores the whole catalogue like any model, and the ``BlendFit``)."""
    from models.ensemble import Ensemble, fit_blend

    fit = fit_blend(member_table, list(models))
    return Ensemble.from_members(models, fit.weights), fit
