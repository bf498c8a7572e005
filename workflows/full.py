"""The CineSync DAG (DESIGN.md): ingest -> validate -> split -> parallel training (with side
inputs) -> validation scores -> ensemble -> evaluate -> track in MLflow -> register and promote.

Run the whole thing on the embedded synthetic data:

    pyflyte run workflows/full.py full_pipeline

or any stage on its own, e.g. check a MovieLens folder before spending GPU hours:

    pyflyte run workflows/full.py validate_data --data '{"source": "movielens", "path": "../shared/data/ml-100k"}'

Every workflow takes the data options as one input, ``data`` (``pipeline.options.DataOptions``:
JSON on the command line, any subset of its fields); each task is a thin wrapper over one step of
``pipeline.steps``, which ``pipeline.run.run`` chains in one process.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from flytekit import workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from pipeline.options import DataOptions
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

# pyflyte spells a bool input both `--ensemble` and `--ensemble/--no-ensemble`, and click
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
    valid_cases: Table  # the split's: early stopping
    selection_cases: Table  # the held-out slices' validation cases: choices read them too
    test_cases: Table
    items: Table
    users: Table
    info: DatasetInfo
    validation_report: FlyteFile
    validation_summary: str
    quarantine: FlyteDirectory
    split_summary: str


@workflow
def validated_data(data: DataOptions) -> ValidatedData:
    """Ingest and the data contracts: the first two boxes of every workflow."""
    raw = ingest(data=data)
    valid = validate(interactions=raw.interactions, items=raw.items, users=raw.users, info=raw.info, data=data)
    return ValidatedData(
        valid.interactions, valid.items, valid.users, raw.info, valid.report, valid.summary, valid.quarantine
    )


@workflow
def prepared_data(data: DataOptions) -> PreparedData:
    """Ingest, validate and split: what every stage workflow starts from, so a split made with
    some options is rebuilt exactly by any later stage given the same ones."""
    checked = validated_data(data=data)
    parts = split(interactions=checked.interactions, items=checked.items, users=checked.users, data=data)
    return PreparedData(
        parts.train, parts.valid_cases, parts.selection_cases, parts.test_cases, parts.items, parts.users,
        checked.info, checked.report, checked.summary, checked.quarantine, parts.summary,
    )  # fmt: skip


@workflow
def full_pipeline(
    data: DataOptions = DataOptions(),
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
    checked = check_run_inputs(models=models, model_config=model_config, data=data)
    prepared = prepared_data(data=checked.data)
    trained = train_models(
        models=checked.models,
        train=prepared.train,
        valid_cases=prepared.valid_cases,
        items=prepared.items,
        users=prepared.users,
        model_config=checked.model_config,
        text_encoder=text_encoder,
    )
    members = score_members(
        trained=trained, valid_cases=prepared.valid_cases, selection_cases=prepared.selection_cases,
        items=prepared.items, top_k=ensemble_top_k,
    )  # fmt: skip
    with_ensemble = fit_ensemble(trained=trained, member_scores=members, items=prepared.items, enabled=ensemble)
    evaluations = evaluate_models(
        trained=with_ensemble, valid_cases=prepared.valid_cases, selection_cases=prepared.selection_cases,
        test_cases=prepared.test_cases, items=prepared.items,
    )  # fmt: skip
    tracked = track_in_mlflow(
        info=prepared.info,
        validation_summary=prepared.validation_summary,
        validation_report=prepared.validation_report,
        quarantine=prepared.quarantine,
        split_summary=prepared.split_summary,
        items=prepared.items,
        trained=with_ensemble,
        evaluations=evaluations,
    )
    promoted = promote_models(
        runs=tracked.runs,
        evaluations=evaluations,
        info=prepared.info,
        split_summary=prepared.split_summary,
        results=tracked.results,
        margin=promotion_margin,
        slice_tolerance=slice_tolerance,
    )
    return promoted.results


class ValidationResult(NamedTuple):
    report: FlyteFile  # the data-contract result as an HTML page
    quarantine: FlyteDirectory  # <table>.parquet of the rows set aside (quarantine mode; else empty)


@workflow
def validate_data(data: DataOptions = DataOptions()) -> ValidationResult:
    """Stage: ingest + data contracts only; fails (non-zero exit) naming every broken expectation.
    Returns the validation result as an HTML page and the folder of quarantined rows."""
    checked = validated_data(data=check_data_inputs(data=data))
    return ValidationResult(checked.report, checked.quarantine)


@workflow
def split_data(data: DataOptions = DataOptions()) -> str:
    """Stage: ingest, validate and split; returns the split summary (every row accounted for)."""
    return prepared_data(data=check_data_inputs(data=data)).split_summary


@workflow
def train_only(
    data: DataOptions = DataOptions(),
    models: list[str] = DEFAULT_MODELS,
    model_config: str = "laptop",
    text_encoder: str = "all-MiniLM-L6-v2",
) -> list[TrainedModel]:
    """Stage: train the named families (weights + learning curves), without evaluation/tracking."""
    checked = check_run_inputs(models=models, model_config=model_config, data=data)
    prepared = prepared_data(data=checked.data)
    return train_models(
        models=checked.models,
        train=prepared.train,
        valid_cases=prepared.valid_cases,
        items=prepared.items,
        users=prepared.users,
        model_config=checked.model_config,
        text_encoder=text_encoder,
    )


@workflow
def evaluate_only(trained: list[TrainedModel], data: DataOptions = DataOptions()) -> list[ModelEvaluation]:
    """Stage: evaluate already-trained weights on the same split (the same data options)."""
    prepared = prepared_data(data=check_data_inputs(data=data))
    return evaluate_models(
        trained=trained, valid_cases=prepared.valid_cases, selection_cases=prepared.selection_cases,
        test_cases=prepared.test_cases, items=prepared.items,
    )  # fmt: skip
