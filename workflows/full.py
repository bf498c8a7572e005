"""The CineSync DAG (DESIGN.md): ingest -> validate -> split -> parallel training -> evaluate -> track.

Run the whole thing on the embedded synthetic data:

    pyflyte run workflows/full.py full_pipeline

or any stage on its own, e.g. check a MovieLens folder before spending GPU hours:

    pyflyte run workflows/full.py validate_data --source movielens --path ../shared/data/ml-100k
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import pandas as pd
from flytekit import CronSchedule, LaunchPlan, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from tasks.checks import check_data_inputs, check_run_inputs
from tasks.common import ModelEvaluation, TrainedModel
from tasks.evaluate import evaluate_models
from tasks.ingest import ingest
from tasks.split import split
from tasks.tracking import track_in_mlflow
from tasks.train import train_models
from tasks.validate import validate

# pyflyte spells a bool input both `--quarantine` and `--quarantine/--no-quarantine`, and click
# warns about that on every command; the flag works either way.
warnings.filterwarnings("ignore", message=r"The parameter --\S+ is used more than once")

DEFAULT_MODELS = ["popularity", "ease", "sasrec", "bert4rec"]


@workflow
def full_pipeline(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    models: list[str] = DEFAULT_MODELS,
    model_config: str = "laptop",
) -> pd.DataFrame:
    """Everything, end to end; returns the results table (one row per model and slice)."""
    checked = check_run_inputs(models=models, model_config=model_config, split_mode=split_mode, source=source)
    raw = ingest(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        seed=seed,
    )
    valid = validate(
        interactions=raw.interactions,
        items=raw.items,
        users=raw.users,
        info=raw.info,
        quarantine=quarantine,
        min_history_length=min_history_length,
    )
    parts = split(interactions=valid.interactions, items=valid.items, users=valid.users, mode=split_mode, seed=seed)
    trained = train_models(
        models=checked.models,
        train=parts.train,
        cases=parts.cases,
        items=parts.items,
        users=parts.users,
        model_config=checked.model_config,
    )
    evaluations = evaluate_models(trained=trained, cases=parts.cases, items=parts.items)
    return track_in_mlflow(
        info=raw.info,
        validation_summary=valid.summary,
        validation_report=valid.report,
        quarantine=valid.quarantine,
        split_summary=parts.summary,
        items=parts.items,
        trained=trained,
        evaluations=evaluations,
    )


class ValidationResult(NamedTuple):
    report: FlyteFile  # the data-contract result as an HTML page
    quarantine: FlyteDirectory  # <table>.parquet of the rows set aside (quarantine mode; else empty)


@workflow
def validate_data(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
) -> ValidationResult:
    """Stage: ingest + data contracts only; fails (non-zero exit) naming every broken expectation.
    Returns the validation result as an HTML page and the folder of quarantined rows."""
    checked = check_data_inputs(source=source)
    raw = ingest(
        source=checked,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        seed=seed,
    )
    valid = validate(
        interactions=raw.interactions,
        items=raw.items,
        users=raw.users,
        info=raw.info,
        quarantine=quarantine,
        min_history_length=min_history_length,
    )
    return ValidationResult(valid.report, valid.quarantine)


@workflow
def split_data(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
    split_mode: str = "pipeline",
) -> str:
    """Stage: ingest, validate and split; returns the split summary (every row accounted for)."""
    checked = check_data_inputs(source=source, split_mode=split_mode)
    raw = ingest(source=checked, path=path, ratings_path=ratings_path, synthetic_users=synthetic_users, seed=seed)
    valid = validate(interactions=raw.interactions, items=raw.items, users=raw.users, info=raw.info)
    parts = split(interactions=valid.interactions, items=valid.items, users=valid.users, mode=split_mode, seed=seed)
    return parts.summary


@workflow
def train_only(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
    split_mode: str = "pipeline",
    models: list[str] = DEFAULT_MODELS,
    model_config: str = "laptop",
) -> list[TrainedModel]:
    """Stage: train the named families (weights + learning curves), without evaluation/tracking."""
    checked = check_run_inputs(models=models, model_config=model_config, split_mode=split_mode, source=source)
    raw = ingest(source=source, path=path, ratings_path=ratings_path, synthetic_users=synthetic_users, seed=seed)
    valid = validate(interactions=raw.interactions, items=raw.items, users=raw.users, info=raw.info)
    parts = split(interactions=valid.interactions, items=valid.items, users=valid.users, mode=split_mode, seed=seed)
    return train_models(
        models=checked.models,
        train=parts.train,
        cases=parts.cases,
        items=parts.items,
        users=parts.users,
        model_config=checked.model_config,
    )


@workflow
def evaluate_only(
    trained: list[TrainedModel],
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    synthetic_users: int = 1000,
    seed: int = 0,
    split_mode: str = "pipeline",
) -> list[ModelEvaluation]:
    """Stage: evaluate already-trained weights on the same split (same source, seed and mode)."""
    checked = check_data_inputs(source=source, split_mode=split_mode)
    raw = ingest(source=checked, path=path, ratings_path=ratings_path, synthetic_users=synthetic_users, seed=seed)
    valid = validate(interactions=raw.interactions, items=raw.items, users=raw.users, info=raw.info)
    parts = split(interactions=valid.interactions, items=valid.items, users=valid.users, mode=split_mode, seed=seed)
    return evaluate_models(trained=trained, cases=parts.cases, items=parts.items)


# Retrain nightly on a cluster (activate with `pyflyte register` + `flytectl update launchplan`).
nightly_retrain = LaunchPlan.get_or_create(
    full_pipeline,
    name="full_pipeline_nightly",
    schedule=CronSchedule(schedule="0 3 * * *"),
)
