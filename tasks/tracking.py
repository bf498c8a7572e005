"""MLflow: one parent run per pipeline execution, one child run per model.

The default store is ``sqlite:///mlflow.db`` in the working folder; ``MLFLOW_TRACKING_URI``
points it elsewhere (a tracking server on a cluster).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from flytekit import task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from tasks.common import DATA_RESOURCES, DatasetInfo, ModelEvaluation, TrainedModel, execution_id

EXPERIMENT = "cinesync"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PYFUNC_REQUIREMENTS = ["torch==2.13.0", "pandas==3.1.1", "numpy==2.4.6", "pyarrow==25.0.1", "cinesync"]


class TrackedRun(NamedTuple):
    results: pd.DataFrame  # one row per model and slice
    runs: str  # JSON {"execution_key", "parent_run_id", "models": {family: {"run_id", "model_uri"}}}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def log_model_run(
    trained: TrainedModel, evaluation: ModelEvaluation, fit_report: dict, item_map: Path, parent_run_id: str
) -> str:
    """A child run: config, per-epoch curves, per-slice test metrics, artifacts and the pyfunc."""
    import mlflow

    from models.registry import load_model
    from tasks.plots import learning_curve
    from tasks.pyfunc import SIGNATURE, TopKRecommender

    weights = trained.weights.download()
    family, model = load_model(weights)
    config = asdict(model.config)
    with mlflow.start_run(run_name=family, parent_run_id=parent_run_id, nested=True) as run:
        mlflow.set_tags({"model_family": family, "device": trained.device})
        mlflow.log_params({f"config.{k}": v for k, v in config.items()})
        for epoch in fit_report["epochs"]:
            step = int(epoch["epoch"])
            mlflow.log_metric("train_loss", float(epoch["train_loss"]), step=step)
            for name, value in epoch["valid"].items():
                mlflow.log_metric(f"valid_{_key(name)}", float(value), step=step)
        metrics = evaluation.metrics
        for slice_name, values in metrics.items():
            for name, value in values.items():
                mlflow.log_metric(f"test_{_key(slice_name)}_{_key(name)}", float(value))
        mlflow.log_metrics(
            {
                "best_epoch": float(fit_report["best_epoch"]),
                "train_seconds": trained.train_seconds,
                "eval_seconds": evaluation.eval_seconds,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "config.json").write_text(json.dumps({"family": family, "config": config}, indent=1))
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
            (tmp / "fit_report.json").write_text(json.dumps(fit_report, indent=1))
            names = ["config.json", "metrics.json", "fit_report.json"]
            if learning_curve(fit_report, family, tmp / "learning_curve.png") is not None:  # None: no curve
                names.append("learning_curve.png")
            for name in names:
                mlflow.log_artifact(str(tmp / name))
        mlflow.log_artifact(weights, artifact_path="weights")
        mlflow.log_artifact(evaluation.predictions.download(), artifact_path="predictions")
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=TopKRecommender(),
            artifacts={"weights": weights, "item_map": str(item_map)},
            pip_requirements=PYFUNC_REQUIREMENTS,
            signature=SIGNATURE,
        )
        return {"run_id": run.info.run_id, "model_uri": logged.model_uri}


def _n_rows(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(parquet).metadata.num_rows


def _key(name: str) -> str:
    """MLflow metric names allow [A-Za-z0-9_-./: ]: '@' becomes '_at_', '+' becomes 'plus'."""
    return name.replace("@", "_at_").replace("+", "plus").replace(":", "/")


@task(cache=False, retries=2, **DATA_RESOURCES)
def track_in_mlflow(
    info: DatasetInfo,
    validation_summary: str,
    validation_report: FlyteFile,
    quarantine: FlyteDirectory,
    split_summary: str,
    items: pd.DataFrame,
    trained: list[TrainedModel],
    evaluations: list[ModelEvaluation],
) -> TrackedRun:
    """Log the whole execution to MLflow; return the results table (model x slice) and the runs.

    Quarantined rows (if any) are logged under the parent run's ``quarantine/`` artifacts.
    """
    import mlflow

    from tasks.plots import results_table

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    flyte_id = execution_id()
    by_family = {t.family: t for t in trained}
    fit_reports = {t.family: json.loads(open(t.fit_report.download()).read()) for t in trained}
    table = results_table(evaluations, fit_reports, {t.family: t.train_seconds for t in trained})
    runs: dict[str, dict] = {}
    with mlflow.start_run(run_name=f"pipeline-{info.name}") as parent:
        mlflow.set_tags(
            {
                "flyte_execution_id": flyte_id,
                # local executions all share the id "local"; this tag keeps each one distinct
                "pipeline_run_uuid": uuid.uuid4().hex,
                "dataset": info.name,
                "dataset_sha256": info.checksum,
            }
        )
        mlflow.log_params({f"data.{k}": v for k, v in asdict(info).items()})
        split = json.loads(split_summary)
        mlflow.log_params({f"split.{k}": v for k, v in split.items() if not isinstance(v, (dict, list))})
        mlflow.log_dict(json.loads(validation_summary), "validation_summary.json")
        mlflow.log_artifact(validation_report.download(), artifact_path="validation")
        quarantined = [p for p in sorted(Path(quarantine.download()).glob("*.parquet")) if _n_rows(p)]
        for path in quarantined:
            mlflow.log_artifact(str(path), artifact_path="quarantine")
        if quarantined:
            print(f"quarantined rows logged to MLflow run {parent.info.run_id} under quarantine/")
        mlflow.log_dict(split, "split_summary.json")
        with tempfile.TemporaryDirectory() as tmp:
            item_map = Path(tmp) / "item_map.parquet"
            items[["item_idx", "item_id"]].to_parquet(item_map, index=False)
            results = Path(tmp) / "results.csv"
            table.to_csv(results, index=False)
            mlflow.log_artifact(str(results))
            for evaluation in evaluations:
                runs[evaluation.family] = log_model_run(
                    by_family[evaluation.family], evaluation, fit_reports[evaluation.family], item_map, parent.info.run_id
                )
    overall = table[table["slice"] == "all"]
    print(f"MLflow run {parent.info.run_id} ({tracking_uri()}):\n" + overall.to_string(index=False))
    # local executions all share the Flyte id "local": the parent run tells them apart
    key = parent.info.run_id if flyte_id == "local" else flyte_id
    return TrackedRun(table, json.dumps({"execution_key": key, "parent_run_id": parent.info.run_id, "models": runs}))
