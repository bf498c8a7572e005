"""The CineSync DAG (DESIGN.md): ingest -> validate -> split -> parallel training (with side
inputs) -> member scores -> ensemble -> evaluate -> track in MLflow -> register and promote.

Run the whole thing on the embedded synthetic data:

    pyflyte run workflows/full.py full_pipeline

or any stage on its own, e.g. check a MovieLens folder before spending GPU hours:

    pyflyte run workflows/full.py validate_data --source movielens --path ../shared/data/ml-100k
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from flytekit import CronSchedule, LaunchPlan, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from tasks.checks import check_data_inputs, check_run_inputs
from tasks.common import DatasetInfo, ModelEvaluation, RunResults, Table, TrainedModel
from tasks.ensemble import fit_ensemble, score_members
from tasks.evaluate import evaluate_models
from tasks.ingest import ingest
from tasks.register import promote_models
from tasks.split import split
from tasks.tracking import track_in_mlflow
from tasks.train import train_models
from tasks.validate import validate

# pyflyte spells a bool input both `--quarantine` and `--quarantine/--no-quarantine`, and click
# warns about that on every command; the flag works either way.
warnings.filterwarnings("ignore", message=r"The parameter --\S+ is used more than once")

DEFAULT_MODELS = ["popularity", "ease", "sasrec", "bert4rec", "temporal_attention", "lightgcn", "content_knn"]


class ValidatedData(NamedTuple):
    interactions: Table
    items: Table
    users: Table
    info: DatasetInfo
    report: FlyteFile  # the data-contract result as an HTML page
    summary: str  # JSON: per table, expectations, failures, quarantine counts and files
    quarantine: FlyteDirectory  # <table>.parquet of the rows set aside (quarantine mode; else empty)


class PreparedData(NamedTuple):
    train: Table
    valid_cases: Table
    test_cases: Table
    items: Table
    users: Table
    info: DatasetInfo
    validation_report: FlyteFile
    validation_summary: str
    quarantine: FlyteDirectory
    split_summary: str


@workflow
def validated_data(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
) -> ValidatedData:
    """Ingest and the data contracts: the first two boxes of every workflow."""
    checked = check_data_inputs(source=source)
    raw = ingest(
        source=checked,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        seed=data_seed,
    )
    valid = validate(
        interactions=raw.interactions,
        items=raw.items,
        users=raw.users,
        info=raw.info,
        quarantine=quarantine,
        min_history_length=min_history_length,
    )
    return ValidatedData(
        valid.interactions, valid.items, valid.users, raw.info, valid.report, valid.summary, valid.quarantine
    )


@workflow
def prepared_data(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    split_seed: int = 0,
) -> PreparedData:
    """Ingest, validate and split with every data option: what every stage workflow starts from,
    so a split made with some options is rebuilt exactly by any later stage given the same ones."""
    data = validated_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
    )
    parts = split(interactions=data.interactions, items=data.items, users=data.users, mode=split_mode, seed=split_seed)
    return PreparedData(
        parts.train, parts.valid_cases, parts.test_cases, parts.items, parts.users,
        data.info, data.report, data.summary, data.quarantine, parts.summary,
    )  # fmt: skip


@workflow
def full_pipeline(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    split_seed: int = 0,
    models: list[str] = DEFAULT_MODELS,
    model_config: str = "laptop",
    text_encoder: str = "all-MiniLM-L6-v2",
    ensemble: bool = True,
    ensemble_top_k: int = 100,
    promotion_margin: float = 0.001,
    slice_tolerance: float = 0.01,
) -> RunResults:
    """Everything, end to end; returns the results table (one row per model and slice, ``.frame``)
    with the summary of the run, which is what it prints as (``pyflyte run`` ends with it)."""
    checked = check_run_inputs(models=models, model_config=model_config, split_mode=split_mode, source=source)
    data = prepared_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
        split_mode=split_mode,
        split_seed=split_seed,
    )
    trained = train_models(
        models=checked.models,
        train=data.train,
        valid_cases=data.valid_cases,
        items=data.items,
        users=data.users,
        model_config=checked.model_config,
        text_encoder=text_encoder,
    )
    members = score_members(
        trained=trained, valid_cases=data.valid_cases, test_cases=data.test_cases, items=data.items, top_k=ensemble_top_k
    )
    with_ensemble = fit_ensemble(trained=trained, member_scores=members, items=data.items, enabled=ensemble)
    evaluations = evaluate_models(trained=with_ensemble, test_cases=data.test_cases, items=data.items)
    tracked = track_in_mlflow(
        info=data.info,
        validation_summary=data.validation_summary,
        validation_report=data.validation_report,
        quarantine=data.quarantine,
        split_summary=data.split_summary,
        items=data.items,
        trained=with_ensemble,
        evaluations=evaluations,
    )
    promoted = promote_models(
        runs=tracked.runs,
        evaluations=evaluations,
        info=data.info,
        split_summary=data.split_summary,
        results=tracked.results,
        margin=promotion_margin,
        slice_tolerance=slice_tolerance,
    )
    return promoted.results


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
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
) -> ValidationResult:
    """Stage: ingest + data contracts only; fails (non-zero exit) naming every broken expectation.
    Returns the validation result as an HTML page and the folder of quarantined rows."""
    data = validated_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
    )
    return ValidationResult(data.report, data.quarantine)


@workflow
def split_data(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    split_seed: int = 0,
) -> str:
    """Stage: ingest, validate and split; returns the split summary (every row accounted for)."""
    data = prepared_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
        split_mode=split_mode,
        split_seed=split_seed,
    )
    return data.split_summary


@workflow
def train_only(
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    split_seed: int = 0,
    models: list[str] = DEFAULT_MODELS,
    model_config: str = "laptop",
    text_encoder: str = "all-MiniLM-L6-v2",
) -> list[TrainedModel]:
    """Stage: train the named families (weights + learning curves), without evaluation/tracking."""
    checked = check_run_inputs(models=models, model_config=model_config, split_mode=split_mode, source=source)
    data = prepared_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
        split_mode=split_mode,
        split_seed=split_seed,
    )
    return train_models(
        models=checked.models,
        train=data.train,
        valid_cases=data.valid_cases,
        items=data.items,
        users=data.users,
        model_config=checked.model_config,
        text_encoder=text_encoder,
    )


@workflow
def evaluate_only(
    trained: list[TrainedModel],
    source: str = "synthetic",
    path: str = "",
    ratings_path: str = "",
    item_text_path: str = "",
    synthetic_users: int = 1000,
    data_seed: int = 0,
    quarantine: bool = False,
    min_history_length: int = 1,
    split_mode: str = "pipeline",
    split_seed: int = 0,
) -> list[ModelEvaluation]:
    """Stage: evaluate already-trained weights on the same split (the same data options)."""
    data = prepared_data(
        source=source,
        path=path,
        ratings_path=ratings_path,
        item_text_path=item_text_path,
        synthetic_users=synthetic_users,
        data_seed=data_seed,
        quarantine=quarantine,
        min_history_length=min_history_length,
        split_mode=split_mode,
        split_seed=split_seed,
    )
    return evaluate_models(trained=trained, test_cases=data.test_cases, items=data.items)


# Retrain nightly on a cluster (activate with `pyflyte register` + `flytectl update launchplan`).
nightly_retrain = LaunchPlan.get_or_create(
    full_pipeline,
    name="full_pipeline_nightly",
    schedule=CronSchedule(schedule="0 3 * * *"),
)
