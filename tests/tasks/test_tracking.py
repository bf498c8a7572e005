"""What a child run and its logged model hold in a real SQLite MLflow store: the logged model
carries the metrics of the weights it holds (best epoch, not epoch 0; test per slice), is named
after its family, has an input example, is logged from code and is linked to the dataset; a
search (EASE's λ) is not logged as epochs; the run spans the training."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from flytekit.types.file import FlyteFile
from mlflow import MlflowClient

from models.registry import build_model, save_model
from tasks.common import DatasetInfo, ModelEvaluation, TrainedModel
from tasks.tracking import log_model_run, quiet_mlflow

N_ITEMS = 6
CHECKSUM = "c0ffee" * 10 + "abcd"
INFO = DatasetInfo(name="tiny", source="synthetic", path="", checksum=CHECKSUM, n_interactions=20, n_items=N_ITEMS, n_users=4)
METRICS = {
    "all": {"ndcg@10": 0.4, "hr@10": 0.5, "n_cases": 4},
    "warm": {"ndcg@10": 0.6, "hr@10": 0.75, "n_cases": 2},
    "activity:201+": {"ndcg@10": 0.0, "hr@10": 0.0, "n_cases": 1},
}
STARTED = 1_700_000_000.0
EPOCH_REPORT = {  # stopped early: epoch 0 is the worst, epoch 1 the best, the last is not the best
    "epochs": [
        {"epoch": i, "train_loss": loss, "valid": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, "seconds": 1.0}
        for i, (loss, ndcg) in enumerate([(5.0, 0.10), (4.0, 0.30), (3.0, 0.20), (2.5, 0.25)])
    ],
    "best_epoch": 1,
    "best_valid": {"ndcg@10": 0.30, "hr@10": 0.60},
    "stopped_early": True,
    "curve": "epoch",
    "started_at": STARTED,
    "finished_at": STARTED + 42.0,
    "train_seconds": 42.0,
    "train_rows": 20,
    "samples_per_second": 80.0,
    "system": {
        "process_peak_rss_megabytes": 512.0,
        "process_cpu_utilization_percentage": 150.0,
        "samples": [
            {"time": STARTED + t, "cpu_utilization_percentage": 50.0 + t, "system_memory_usage_megabytes": 1000.0}
            for t in range(3)
        ],
    },
}
GRID_REPORT = {
    "epochs": [{"epoch": i, "train_loss": 0.0, "valid": {"ndcg@10": v}, "seconds": 0.1} for i, v in enumerate([0.2, 0.4, 0.3])],
    "best_epoch": 1,
    "best_valid": {"ndcg@10": 0.4},
    "curve": "l2",
    "grid": [10.0, 100.0, 1000.0],
}
COUNTS_REPORT = {"epochs": [{"epoch": 0, "train_loss": 0.0, "valid": {"ndcg@10": 0.1}, "seconds": 0.1}], "best_epoch": 0,
                 "best_valid": {"ndcg@10": 0.1}, "curve": "", "fitted_by": "counts"}  # fmt: skip


def _trained(folder: Path, family: str, report: dict, overrides: dict | None = None):
    model = build_model(family, N_ITEMS, overrides or {}, n_users=4)
    save_model(folder / f"{family}.pt", family, model)
    (folder / f"{family}.json").write_text(json.dumps(report))
    pd.DataFrame({"case_id": [0], "target_item": [1]}).to_parquet(folder / f"{family}-predictions.parquet")
    trained = TrainedModel(family, FlyteFile(str(folder / f"{family}.pt")), FlyteFile(str(folder / f"{family}.json")), "cpu", 42.0)
    evaluation = ModelEvaluation(family, json.dumps(METRICS), FlyteFile(str(folder / f"{family}-predictions.parquet")), 0.5)
    return trained, evaluation


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One parent run with a SASRec (epochs), an EASE (λ search) and a popularity (counts) child."""
    folder = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(folder)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("mlflow").addHandler(handler)
    pd.DataFrame({"item_idx": range(1, N_ITEMS + 1), "item_id": range(101, 101 + N_ITEMS)}).to_parquet(folder / "item_map.parquet")
    runs = {}
    try:
        with quiet_mlflow():
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment("cinesync")
            with mlflow.start_run() as parent:
                for family, report, overrides in (
                    ("sasrec", EPOCH_REPORT, {"dim": 8, "n_layers": 1, "n_heads": 1, "max_len": 5}),
                    ("ease", GRID_REPORT, {}),
                    ("popularity", COUNTS_REPORT, {}),
                ):
                    trained, evaluation = _trained(folder, family, report, overrides)
                    runs[family] = log_model_run(
                        trained, evaluation, report, folder / "item_map.parquet", parent.info.run_id, info=INFO, example_history=[101, 102]
                    )
        yield MlflowClient(uri), runs, records
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
        mlflow.set_tracking_uri(None)
        mp.undo()


def _model(client, run_id):
    run = client.get_run(run_id)
    return mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )


def test_the_logged_model_carries_its_best_epochs_metrics_not_epoch_0s(logged):
    client, runs, _ = logged
    (model,) = _model(client, runs["sasrec"]["run_id"])
    metrics = {m.key: m for m in model.metrics}
    assert metrics["valid_ndcg_at_10"].value == 0.30 and metrics["valid_ndcg_at_10"].step == 1
    assert metrics["train_loss"].value == 4.0
    assert {m.step for m in model.metrics if m.key.startswith(("valid_", "train_"))} == {1}
    assert metrics["test_all_ndcg_at_10"].value == 0.4
    assert metrics["test_warm_hr_at_10"].value == 0.75
    assert metrics["test_activity/201plus_ndcg_at_10"].value == 0.0
    assert model.params["best_epoch"] == "1"


def test_the_run_keeps_the_whole_curve_once(logged):
    client, runs, _ = logged
    curve = client.get_metric_history(runs["sasrec"]["run_id"], "valid_ndcg_at_10")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [(0, 0.1), (1, 0.3), (2, 0.2), (3, 0.25)]
    assert len(client.get_metric_history(runs["sasrec"]["run_id"], "train_loss")) == 4


def test_each_logged_model_is_named_after_its_family_and_loads_by_that_name(logged):
    client, runs, _ = logged
    for family, run in runs.items():
        assert [m.name for m in _model(client, run["run_id"])] == [family]
    model = mlflow.pyfunc.load_model(f"runs:/{runs['sasrec']['run_id']}/sasrec")
    out = model.predict(pd.DataFrame({"history": [[101, 102]]}), params={"k": 3})
    assert len(out["items"][0]) == 3 and not {101, 102} & set(out["items"][0])


def test_the_logged_model_has_an_input_example_and_is_logged_from_code(logged):
    client, runs, records = logged
    info = mlflow.models.get_model_info(runs["ease"]["model_uri"])
    assert info.saved_input_example_info["artifact_path"] == "input_example.json"
    folder = Path(mlflow.artifacts.download_artifacts(runs["ease"]["model_uri"]))
    assert json.loads((folder / "input_example.json").read_text())["inputs"]["data"] == [[[101, 102]]]
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert not (folder / "python_model.pkl").exists()
    assert not [r for r in records if "arbitrary code" in r.getMessage()]


def test_the_dataset_is_an_input_of_the_run_and_of_the_models_metrics(logged):
    client, runs, _ = logged
    run = client.get_run(runs["sasrec"]["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    assert (dataset_input.dataset.name, dataset_input.dataset.digest) == ("tiny", CHECKSUM[:12])
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["sha256"] == CHECKSUM and tags["mlflow.data.context"] == "training"
    (model,) = _model(client, run.info.run_id)
    assert {(m.dataset_name, m.dataset_digest) for m in model.metrics} == {("tiny", CHECKSUM[:12])}
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], datasets=[{"dataset_name": "tiny", "dataset_digest": CHECKSUM[:12]}], output_format="list"
    )
    assert {m.name for m in found} == {"sasrec", "ease", "popularity"}


def test_a_lambda_search_is_a_table_and_a_choice_not_epochs_with_zero_loss(logged):
    client, runs, _ = logged
    run = client.get_run(runs["ease"]["run_id"])
    assert "train_loss" not in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "valid_ndcg_at_10")) == 1
    assert run.data.metrics["valid_ndcg_at_10"] == 0.4 and run.data.params["selected_l2"] == "100.0"
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "l2_search.json")).read_text())
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    assert list(frame["l2"]) == [10.0, 100.0, 1000.0] and list(frame["chosen"]) == [False, True, False]
    assert "learning_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_fit_without_a_curve_logs_no_curve(logged):
    client, runs, _ = logged
    run = client.get_run(runs["popularity"]["run_id"])
    assert "train_loss" not in run.data.metrics
    assert "learning_curve.png" not in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "fitted by counts" in run.data.tags["mlflow.note.content"]


def test_the_run_spans_the_training_and_records_its_cost(logged):
    client, runs, _ = logged
    run = client.get_run(runs["sasrec"]["run_id"])
    assert run.info.start_time == int(STARTED * 1000) and run.info.end_time == int((STARTED + 42) * 1000)
    metrics = run.data.metrics
    assert metrics["samples_per_second"] == 80.0 and metrics["train_seconds"] == 42.0
    assert metrics["system/process_peak_rss_megabytes"] == 512.0
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert [m.value for m in sorted(cpu, key=lambda m: m.step)] == [50.0, 51.0, 52.0]
    assert run.data.tags["mlflow.parentRunId"]
    assert "stopped early at epoch 3, best epoch 1" in run.data.tags["mlflow.note.content"]


def test_quiet_mlflow_drops_the_database_creation_lines(logged):
    _, _, records = logged
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "Creating initial MLflow database tables" in m or "does not exist. Creating" in m]
