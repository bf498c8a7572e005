"""MLflow: one parent run per pipeline execution, one child run per model.

The default store is ``sqlite:///mlflow.db`` in the working folder; ``MLFLOW_TRACKING_URI``
points it elsewhere (a tracking server on a cluster).

What a child run holds: the family's config (params), its curve on the run (epoch families:
``train_loss`` and ``valid_*`` per epoch; a search such as EASE's λ: a table ``<param>_search.json``
and the figure, never fake epochs; counts: nothing), per-slice test metrics, timing (start and end
are the training's own, ``train_seconds``, ``samples_per_second``), CPU and memory sampled while it
trained (``system/*``, the run's "System metrics" tab), the dataset it was trained on, artifacts,
and one logged model named after the family. That logged model carries the metrics of the weights
it holds (the best epoch's ``valid_*`` and ``train_loss``, the test metrics per slice, all linked
to the dataset), an input example, and is logged from code (``serving/pyfunc_model.py``), not
pickled. The parent run holds the data, the split, the best model's NDCG@10/HR@10 per slice, a
description, and (written by ``promote_models``) the champion decision.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from flytekit import task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from serving import PYFUNC_MODEL_FILE  # models-from-code: serving/pyfunc_model.py
from tasks.common import DATA_RESOURCES, DatasetInfo, ModelEvaluation, TrainedModel, execution_id

EXPERIMENT = "cinesync"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PYFUNC_REQUIREMENTS = ["torch==2.13.0", "pandas==3.1.1", "numpy==2.4.6", "pyarrow==25.0.1", "cinesync"]
# MLflow caps a dataset digest at 36 characters; the first 12 hex digits of the sha256 are what
# ingest prints and the registry quotes; the whole checksum is the dataset input's tag "sha256".
DIGEST_LENGTH = 12
SUMMARY_METRICS = ("ndcg@10", "hr@10")
NOTE = "mlflow.note.content"  # the run's description in the MLflow UI


class TrackedRun(NamedTuple):
    results: pd.DataFrame  # one row per model and slice
    runs: str  # JSON {"execution_key", "parent_run_id", "experiment_id", "models": {family: {"run_id", "model_uri"}}}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def absolute_tracking_uri(uri: str | None = None) -> str:
    """A ``sqlite:///`` URI with a relative path made absolute, so it works from any folder."""
    uri = uri or tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


@contextmanager
def quiet_mlflow():
    """MLflow without its chatter: no artifact-download progress bars, no INFO lines about
    creating the database or the experiment (warnings still show). Restores what it changed."""
    previous_env = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if previous_env is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous_env


def training_dataset(info: DatasetInfo):
    """The dataset as MLflow sees it: name, source (the path read, or the generator), digest =
    the checksum's first ``DIGEST_LENGTH`` hex digits (MLflow's limit is 36)."""
    import warnings

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = None
    if info.path:
        location = info.path if "://" in info.path else str(Path(info.path).resolve())
        try:
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
                warnings.simplefilter("ignore")
                source = resolve_dataset_source(location)
        except Exception:  # noqa: BLE001 - an unusual path still gets a source below
            source = None
    if source is None:
        source = CodeDatasetSource({"source": info.source, "path": info.path})
    return MetaDataset(source=source, name=info.name, digest=info.checksum[:DIGEST_LENGTH])


def dataset_tags(info: DatasetInfo) -> dict[str, str]:
    return {
        "sha256": info.checksum,
        "interactions": str(info.n_interactions),
        "items": str(info.n_items),
        "users": str(info.n_users),
    }


def log_model_run(
    trained: TrainedModel,
    evaluation: ModelEvaluation,
    fit_report: dict,
    item_map: Path,
    parent_run_id: str,
    info: DatasetInfo | None = None,
    example_history: list[int] | None = None,
) -> dict:
    """A child run: config, curve, per-slice test metrics, timing and system metrics, the dataset,
    artifacts and the logged model (see the module docstring). Returns its run id and model URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from models.registry import load_model
    from serving.pyfunc import SIGNATURE
    from tasks.plots import curve_kind, learning_curve

    client = MlflowClient(tracking_uri())
    weights = trained.weights.download()
    family, model = load_model(weights)
    config = asdict(model.config)
    metrics = evaluation.metrics
    kind = curve_kind(fit_report)
    best = int(fit_report.get("best_epoch", 0))
    dataset = training_dataset(info) if info is not None else None
    parent = client.get_run(parent_run_id)
    started = _ms(fit_report.get("started_at"))
    tags = resolve_tags(
        {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            "model_family": family,
            "device": trained.device,
            NOTE: child_description(family, fit_report, metrics, trained.train_seconds),
        }
    )
    run = client.create_run(parent.info.experiment_id, start_time=started, tags=tags, run_name=family)
    run_id = run.info.run_id
    with mlflow.start_run(run_id=run_id, nested=True):
        mlflow.log_params({f"config.{k}": v for k, v in config.items()})
        chosen = {}
        if kind and kind != "epoch" and fit_report.get("grid"):
            chosen = {f"selected_{kind}": fit_report["grid"][best]}
            mlflow.log_params(chosen)
        if dataset is not None:
            mlflow.log_input(dataset, context="training", tags=dataset_tags(info))
        # The model first, while the run has no metrics: MLflow copies a run's metrics at the
        # model's step onto it, which is how epoch 0 ended up on the model before.
        logged = mlflow.pyfunc.log_model(
            name=family,
            python_model=str(PYFUNC_MODEL_FILE),
            artifacts={"weights": weights, "item_map": str(item_map)},
            pip_requirements=PYFUNC_REQUIREMENTS,
            signature=SIGNATURE,
            input_example=_input_example(example_history),
            step=best if kind == "epoch" else 0,
            params={"best_epoch": best, **chosen},
            model_type="recommender",
        )
        model_metric = {"model_id": logged.model_id, "run_id": run_id}
        if dataset is not None:
            model_metric.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        now = _now_ms()
        batch: list[Metric] = []
        if kind == "epoch":
            for epoch in fit_report.get("epochs", []):
                step, when = int(epoch["epoch"]), now + int(epoch["epoch"])
                linked = model_metric if step == best else {}  # the best epoch's point is also the model's
                batch.append(Metric("train_loss", float(epoch["train_loss"]), when, step, **linked))
                for name, value in epoch["valid"].items():
                    batch.append(Metric(f"valid_{_key(name)}", float(value), when, step, **linked))
        else:  # a search or a plain fit: its chosen validation numbers, no loss, no epochs
            batch += [Metric(f"valid_{_key(k)}", float(v), now, 0, **model_metric) for k, v in fit_report.get("best_valid", {}).items()]
        for slice_name, values in metrics.items():
            for name, value in values.items():
                batch.append(Metric(f"test_{_key(slice_name)}_{_key(name)}", float(value), now, 0, **model_metric))
        for slice_name, values in evaluation.validation.items():  # what the champion and the gate read
            for name in SUMMARY_METRICS:
                if name in values:
                    batch.append(Metric(f"validation_{_key(slice_name)}_{_key(name)}", float(values[name]), now, 0, **model_metric))
        run_metrics = {
            "best_epoch": float(best),
            "train_seconds": trained.train_seconds,
            "eval_seconds": evaluation.eval_seconds,
            **{f"best_valid_{_key(k)}": float(v) for k, v in fit_report.get("best_valid", {}).items() if k in SUMMARY_METRICS},
        }
        if "samples_per_second" in fit_report:
            run_metrics["samples_per_second"] = float(fit_report["samples_per_second"])
        batch += [Metric(k, float(v), now, 0) for k, v in run_metrics.items()]
        batch += system_metrics(fit_report.get("system", {}))
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a call
            client.log_batch(run_id, metrics=batch[start : start + 1000])

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "config.json").write_text(json.dumps({"family": family, "config": config}, indent=1))
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
            (tmp / "fit_report.json").write_text(json.dumps(fit_report, indent=1))
            names = ["config.json", "metrics.json", "fit_report.json"]
            if learning_curve(fit_report, family, tmp / "learning_curve.png") is not None:
                names.append("learning_curve.png")
            for name in names:
                mlflow.log_artifact(str(tmp / name))
        if kind and kind != "epoch":
            mlflow.log_table(search_table(fit_report), f"{kind}_search.json")
        mlflow.log_artifact(weights, artifact_path="weights")
        mlflow.log_artifact(evaluation.predictions.download(), artifact_path="predictions")
    finished = _ms(fit_report.get("finished_at"))
    if started is not None and finished is not None:
        client.set_terminated(run_id, "FINISHED", end_time=finished)  # the run spans the training
    return {"run_id": run_id, "model_uri": logged.model_uri, "model_id": logged.model_id}


def search_table(fit_report: dict) -> pd.DataFrame:
    """A search's table: each value tried, its validation metrics, seconds, and which was chosen."""
    kind = fit_report["curve"]
    rows = []
    for i, (value, epoch) in enumerate(zip(fit_report.get("grid", []), fit_report.get("epochs", []))):
        row = {kind: value, **{f"valid_{_key(k)}": v for k, v in epoch["valid"].items()}}
        rows.append({**row, "seconds": epoch["seconds"], "chosen": i == fit_report.get("best_epoch")})
    return pd.DataFrame(rows)


def system_metrics(system: dict) -> list:
    """The sampled CPU and memory as MLflow's system metrics (``system/...``, step = sample, at the
    sample's time), plus the training process's peak RSS and mean CPU use."""
    from mlflow.entities import Metric

    out = []
    for step, sample in enumerate(system.get("samples", [])):
        when = _ms(sample["time"])
        out += [Metric(f"system/{k}", float(v), when, step) for k, v in sample.items() if k != "time"]
    now = _now_ms()
    for key in ("process_peak_rss_megabytes", "process_cpu_utilization_percentage", "gpu_0_peak_memory_allocated_megabytes"):
        if key in system:
            out.append(Metric(f"system/{key}", float(system[key]), now, 0))
    return out


def child_description(family: str, fit_report: dict, metrics: dict, train_seconds: float) -> str:
    """The child run's description (Markdown): what the fit chose, its test numbers, its cost."""
    from tasks.plots import fit_choice

    overall = metrics.get("all", {})
    cost = f"trained in {train_seconds:.1f}s"
    if "samples_per_second" in fit_report:
        cost += f" ({fit_report['samples_per_second']:,.0f} samples/s"
        rss = fit_report.get("system", {}).get("process_peak_rss_megabytes")
        cost += f", peak RSS {rss:,.0f} MB)" if rss is not None else ")"
    holds = {
        "epoch": "the weights of the best epoch",
        "": "the fitted model",
    }.get(curve := fit_report.get("curve", "epoch"), f"the weights for the chosen {curve}")
    return (
        f"**{family}**: {fit_choice(fit_report)}. Test ({int(overall.get('n_cases', 0)):,} cases): "
        f"NDCG@10 {overall.get('ndcg@10', float('nan')):.4f}, HR@10 {overall.get('hr@10', float('nan')):.4f}; "
        f"per slice in the metrics `test_<slice>_*`. {cost[0].upper() + cost[1:]}. "
        f"The logged model `{family}` holds {holds}."
    )


def best_model(evaluations: list[ModelEvaluation], metric: str = "ndcg@10") -> ModelEvaluation:
    """The model the registry makes the run's champion candidate: best by validation ``metric`` on
    slice ``all`` (validation cases of every slice; ``pipeline.steps.choose_champion``)."""
    from pipeline.steps import choose_champion

    by_family = {e.family: e for e in evaluations}
    return by_family[choose_champion({e.family: e.validation for e in evaluations}, metric)]


def parent_description(info: DatasetInfo, split: dict, evaluations: list[ModelEvaluation]) -> str:
    best = best_model(evaluations)
    overall = best.metrics["all"]
    ranking = sorted(evaluations, key=lambda e: -e.metrics.get("all", {}).get("ndcg@10", float("-inf")))
    return (
        f"CineSync pipeline on **{info.name}** ({info.n_interactions:,} interactions, {info.n_items:,} items, "
        f"{info.n_users:,} users; sha256 {info.checksum[:DIGEST_LENGTH]}), {split.get('mode')} split, seed {split.get('seed')}. "
        f"Chosen on validation: **{best.family}** (validation NDCG@10 {best.validation['all']['ndcg@10']:.4f} over the "
        f"validation cases of every slice); its test NDCG@10 {overall['ndcg@10']:.4f}, HR@10 {overall['hr@10']:.4f} on "
        f"{int(overall.get('n_cases', 0)):,} cases (per slice: metrics `test_<slice>_*` of this run). "
        f"All models by test NDCG@10: " + ", ".join(f"{e.family} {e.metrics['all']['ndcg@10']:.4f}" for e in ranking) + "."
    )


def _input_example(history: list[int] | None):
    if not history:
        return None
    return pd.DataFrame({"history": [list(map(int, history))]}), {"k": 10}


def _ms(seconds: float | None) -> int | None:
    """Unix seconds -> MLflow's milliseconds (None stays None)."""
    return None if seconds is None else int(float(seconds) * 1000)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


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

    with quiet_mlflow():
        mlflow.set_tracking_uri(tracking_uri())
        experiment = mlflow.set_experiment(EXPERIMENT)
        flyte_id = execution_id()
        by_family = {t.family: t for t in trained}
        fit_reports = {t.family: json.loads(open(t.fit_report.download()).read()) for t in trained}
        table = results_table(evaluations, fit_reports, {t.family: t.train_seconds for t in trained})
        split = json.loads(split_summary)
        example = items.sort_values("item_idx")["item_id"].head(3).astype(int).tolist()
        runs: dict[str, dict] = {}
        with mlflow.start_run(run_name=f"pipeline-{info.name}") as parent:
            mlflow.set_tags(
                {
                    "flyte_execution_id": flyte_id,
                    # local executions all share the id "local"; this tag keeps each one distinct
                    "pipeline_run_uuid": uuid.uuid4().hex,
                    "dataset": info.name,
                    "dataset_sha256": info.checksum,
                    NOTE: parent_description(info, split, evaluations),
                }
            )
            mlflow.log_params({f"data.{k}": v for k, v in asdict(info).items()})
            mlflow.log_params({f"split.{k}": v for k, v in split.items() if not isinstance(v, (dict, list))})
            mlflow.log_input(training_dataset(info), context="pipeline", tags=dataset_tags(info))
            best = best_model(evaluations)
            mlflow.set_tag("best_model", best.family)  # chosen on validation
            mlflow.log_metrics(
                {
                    f"validation_{_key(s)}_{_key(k)}": float(values[k])
                    for s, values in best.validation.items()
                    for k in SUMMARY_METRICS
                    if k in values
                }
            )
            mlflow.log_metrics(
                {
                    f"test_{_key(s)}_{_key(k)}": float(values[k])
                    for s, values in best.metrics.items()
                    for k in SUMMARY_METRICS
                    if k in values
                }
            )
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
                        by_family[evaluation.family],
                        evaluation,
                        fit_reports[evaluation.family],
                        item_map,
                        parent.info.run_id,
                        info=info,
                        example_history=example,
                    )
    print(f"MLflow: run {parent.info.run_id} with {len(runs)} model runs logged to {absolute_tracking_uri()}")
    # local executions all share the Flyte id "local": the parent run tells them apart
    key = parent.info.run_id if flyte_id == "local" else flyte_id
    logged = {
        "execution_key": key,
        "parent_run_id": parent.info.run_id,
        "experiment_id": experiment.experiment_id,
        "models": runs,
    }
    return TrackedRun(table, json.dumps(logged))
