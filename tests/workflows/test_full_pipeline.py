"""End to end: the real full_pipeline under flytekit's local execution, then the MLflow store
and what the run printed."""

import contextlib
import io
import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from models.registry import trainable_families
from pipeline.options import DataOptions
from tests.conftest import tiny_config
from workflows.full import full_pipeline, validate_data

# Every trainable family of models.registry.FAMILIES (the ensemble is added by the pipeline), each
# at its test size (tests.conftest.tiny_config: the text width is the tiny encoder's, set by the run).
MODELS = trainable_families()


def tiny_model_config(t5_encoder: str) -> str:
    """--model_config for MODELS, as text (JSON is YAML): T5 hybrid reads the tiny T5 at ``t5_encoder``."""
    return json.dumps({family: tiny_config(family, encoder=t5_encoder) for family in MODELS})


EVALUATED = [*MODELS, "ensemble"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_encoder, tiny_t5):
    tracking = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tracking / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(tracking)  # artifacts land next to the store, not in the repo
    mp.setenv("CINESYNC_HOME", str(tracking / "cinesync"))
    printed, records = io.StringIO(), []
    handler = logging.Handler()
    handler.emit = records.append  # MLflow logs through its own handler, not the root logger
    logging.getLogger("mlflow").addHandler(handler)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            result = full_pipeline(
                data=DataOptions(synthetic_users=150, data_seed=3, split_seed=3), models=MODELS, model_config=tiny_model_config(tiny_t5),
                text_encoder=tiny_encoder,
            )  # fmt: skip
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
    # what `pyflyte run` shows: the run's own output, then its echo of the returned value
    printed = printed.getvalue() + "".join(f"\n{r.levelname} {r.name}: {r.getMessage()}" for r in records) + f"\n{result}\n"
    yield result.frame, MlflowClient(tracking_uri=uri), printed
    mp.undo()


def _runs(client):
    experiment = client.get_experiment_by_name("cinesync")
    return client.search_runs([experiment.experiment_id])


def test_pipeline_returns_a_results_row_per_model_and_slice(pipeline_run):
    table, _, _ = pipeline_run
    assert isinstance(table, pd.DataFrame)
    assert set(table["model"]) == set(EVALUATED)
    for model in EVALUATED:
        slices = set(table[table["model"] == model]["slice"])
        assert {"all", "warm", "cold_user", "cold_item"} <= slices
    assert table["ndcg@10"].between(0, 1).all()


def test_one_parent_run_tagged_with_the_flyte_execution(pipeline_run):
    _, client, _ = pipeline_run
    parents = [r for r in _runs(client) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["flyte_execution_id"]
    assert parent.data.tags["dataset"].startswith("synthetic")
    assert len(parent.data.tags["dataset_sha256"]) == 64
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "validation_summary.json", "split_summary.json", "validation"} <= artifacts


def test_a_child_run_per_model_with_curves_metrics_and_artifacts(pipeline_run):
    _, client, _ = pipeline_run
    runs = _runs(client)
    parent_id = next(r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.data.tags["model_family"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id}
    assert set(children) == set(EVALUATED)
    sasrec = children["sasrec"]
    assert sasrec.data.params["config.dim"] == "16"
    curve = client.get_metric_history(sasrec.info.run_id, "valid_ndcg_at_10")
    assert len(curve) in (1, 2, 3) and [m.step for m in curve] == sorted(m.step for m in curve)
    assert len(client.get_metric_history(sasrec.info.run_id, "train_loss")) == len(curve)
    for family, run in children.items():
        metrics = run.data.metrics
        for slice_name in ("all", "warm", "cold_user", "cold_item"):
            assert 0.0 <= metrics[f"test_{slice_name}_ndcg_at_10"] <= 1.0, (family, slice_name)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "metrics.json", "weights", "predictions"} <= files
        # a figure for what was trained or searched; popularity counts and the ensemble blends
        assert ("learning_curve.png" in files) == (family not in ("popularity", "ensemble")), family
        assert run.data.tags["mlflow.note.content"].startswith(f"**{family}**"), family
        assert [m.name for m in _logged_models(run)] == [family]


def test_logged_pyfunc_returns_top_k_unseen_raw_item_ids(pipeline_run):
    _, client, _ = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "sasrec")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/sasrec")
    predictions_dir = Path(client.download_artifacts(run.info.run_id, "predictions"))
    cases = pd.read_parquet(next(predictions_dir.glob("*.parquet")))
    known = set(cases["target_item_id"])
    history = list(known)[:3]
    out = model.predict(pd.DataFrame({"history": [history, [999_999_999]]}), params={"k": 5})
    assert len(out) == 2 and all(len(items) == 5 for items in out["items"])
    assert not set(out["items"][0]) & set(history)
    assert list(out["unknown_items"]) == [0, 1]


def test_predictions_parquet_lets_anyone_recompute_the_metrics(pipeline_run):
    _, client, _ = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "ease")
    folder = Path(client.download_artifacts(run.info.run_id, "predictions"))
    cases = pd.read_parquet(next(folder.glob("*.parquet")))
    hits = [t in list(top[:10]) for t, top in zip(cases["target_item_id"], cases["top_item_ids"])]
    assert sum(hits) / len(hits) == pytest.approx(run.data.metrics["test_all_hr_at_10"])
    metrics = json.loads(Path(client.download_artifacts(run.info.run_id, "metrics.json")).read_text())
    assert metrics["all"]["n_cases"] == len(cases)


def _logged_models(run):
    return mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )


def _children(client):
    runs = _runs(client)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return parent, {r.data.tags["model_family"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}


def test_each_logged_model_carries_the_metrics_of_the_weights_it_holds(pipeline_run):
    _, client, _ = pipeline_run
    _, children = _children(client)
    for family, run in children.items():
        report = json.loads(Path(client.download_artifacts(run.info.run_id, "fit_report.json")).read_text())
        (model,) = _logged_models(run)
        metrics = {m.key: m for m in model.metrics}
        assert metrics["valid_ndcg_at_10"].value == pytest.approx(report["best_valid"]["ndcg@10"]), family
        if report.get("curve", "epoch") == "epoch":  # the point of the best epoch, not of epoch 0
            assert {m.step for m in model.metrics if m.key.startswith(("valid_", "train_"))} == {report["best_epoch"]}
            best = report["epochs"][report["best_epoch"]]
            assert metrics["train_loss"].value == pytest.approx(best["train_loss"]), family
        else:
            assert "train_loss" not in metrics and "train_loss" not in run.data.metrics, family
        for slice_name in ("all", "warm", "cold_user", "cold_item"):
            assert metrics[f"test_{slice_name}_ndcg_at_10"].value == run.data.metrics[f"test_{slice_name}_ndcg_at_10"]


def test_the_dataset_is_logged_as_the_input_of_every_run_and_model(pipeline_run):
    _, client, _ = pipeline_run
    parent, children = _children(client)
    checksum = parent.data.tags["dataset_sha256"]
    for run in [parent, *children.values()]:
        (dataset_input,) = run.inputs.dataset_inputs
        assert dataset_input.dataset.name == parent.data.tags["dataset"]
        assert dataset_input.dataset.digest == checksum[:12]
        assert {t.key: t.value for t in dataset_input.tags}["sha256"] == checksum
    for family, run in children.items():
        (model,) = _logged_models(run)
        assert {m.dataset_digest for m in model.metrics} == {checksum[:12]}, family
        assert mlflow.models.get_model_info(model.model_uri).saved_input_example_info is not None, family


def _best_on_validation(children) -> str:
    """The family with the best validation NDCG@10 over every slice's validation cases (first of
    equals in the evaluated order), read back from the child runs."""
    scores = {family: children[family].data.metrics["validation_all_ndcg_at_10"] for family in EVALUATED}
    return max(scores, key=scores.get)


def test_the_parent_run_summarises_the_best_model_and_the_champion_decision(pipeline_run):
    table, client, _ = pipeline_run
    parent, children = _children(client)
    best = _best_on_validation(children)
    assert parent.data.tags["best_model"] == best == parent.data.tags["champion.family"]
    for _, row in table[table["model"] == best].iterrows():
        key = row["slice"].replace(":", "/").replace("+", "plus")
        assert parent.data.metrics[f"test_{key}_ndcg_at_10"] == pytest.approx(row["ndcg@10"])
        assert parent.data.metrics[f"test_{key}_hr_at_10"] == pytest.approx(row["hr@10"])
    assert parent.data.tags["champion.promoted"] == "true" and parent.data.metrics["champion_promoted"] == 1.0
    note = parent.data.tags["mlflow.note.content"]
    assert f"Chosen on validation: **{best}**" in note and "Champion decision: cinesync-champion v1" in note
    for slice_name in ("all", "warm", "cold_user", "cold_item"):  # what the choice read, every slice
        assert 0.0 <= parent.data.metrics[f"validation_{slice_name}_ndcg_at_10"] <= 1.0
    sasrec = children["sasrec"]
    assert sasrec.data.metrics["samples_per_second"] > 0 and sasrec.data.metrics["system/process_peak_rss_megabytes"] > 0
    report = json.loads(Path(client.download_artifacts(sasrec.info.run_id, "fit_report.json")).read_text())
    assert sasrec.info.start_time == int(report["started_at"] * 1000)  # the run spans the training
    assert sasrec.info.end_time == int(report["finished_at"] * 1000)


def test_the_run_ends_with_one_table_of_every_model_and_slice_and_where_to_look(pipeline_run):
    table, _, printed = pipeline_run
    end = printed[printed.index("Test NDCG@10 and HR@10 per slice") :]
    for model in EVALUATED:
        assert f"\n {model} " in end, model
    for label in ("all", "warm", "cold user", "cold item", "history 1-10", "history 11-50"):
        assert label in end
    assert end.count("NDCG@10 ") >= len(EVALUATED) and end.count("HR@10 ") >= len(EVALUATED)
    assert "mlflow ui --backend-store-uri sqlite:///" in end and "champion  cinesync-champion v1" in end
    for label in ("validate", "train sasrec", "evaluate"):
        line = next(line for line in end.splitlines() if f" {label} " in line)
        assert "file:///" in line and line.rstrip().endswith("deck.html"), line


def test_the_run_prints_no_pickle_warning_no_progress_bars_no_database_lines(pipeline_run):
    _, _, printed = pipeline_run
    assert "may execute arbitrary code" not in printed
    assert "Downloading artifacts" not in printed
    assert "Creating initial MLflow database tables" not in printed and "Updating database tables" not in printed
    assert "does not exist. Creating a new experiment" not in printed


def test_unknown_model_name_fails_before_any_work():
    with pytest.raises(Exception, match=r"unknown model\(s\) \['transformer-xl'\]; known: popularity, ease, sasrec, bert4rec, temporal_attention, lightgcn"):
        full_pipeline(data=DataOptions(synthetic_users=100), models=["sasrec", "transformer-xl"])


def test_validate_stage_fails_naming_the_broken_expectation(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    pd.DataFrame(
        {"user_id": [1, 1, 2, 2], "item_id": [10, 11, 10, 12], "rating": [4.0, 9.0, 3.0, 5.0], "timestamp": [1e9, 1e9 + 1, 1e9, 1e9 + 2]}
    ).to_csv(folder / "interactions.csv", index=False)
    with pytest.raises(Exception, match=r"(?s)rating.*1"):
        validate_data(data=DataOptions(source="generic", path=str(folder)))


def test_time_aware_pyfunc_uses_the_given_timestamps(pipeline_run):
    _, client, _ = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "temporal_attention")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/temporal_attention")
    folder = Path(client.download_artifacts(run.info.run_id, "predictions"))
    history = list(pd.read_parquet(next(folder.glob("*.parquet")))["target_item_id"].unique()[:4])
    frame = pd.DataFrame({"history": [history, history], "history_timestamps": [[1_600_000_000 + d * 86_400 for d in range(4)], [1_600_000_000 + d * 3_600 for d in range(4)]]})
    out = model.predict(frame, params={"k": 5})
    assert all(len(items) == 5 and not set(items) & set(history) for items in out["items"])


def test_every_model_is_registered_and_the_best_on_validation_holds_the_champion_alias(pipeline_run):
    _, client, printed = pipeline_run
    _, children = _children(client)
    for family in EVALUATED:
        assert client.get_registered_model(f"cinesync-{family}").aliases == {"champion": 1}, family
    champion = client.get_model_version_by_alias("cinesync-champion", "champion")
    assert champion.tags["family"] == _best_on_validation(children)
    validation = json.loads(champion.tags["validation_metrics"])
    assert {"all", "warm", "cold_user", "cold_item"} <= set(validation)  # the held-out slices' validation cases
    assert "compared on validation cases of every slice" in champion.tags["protocol"]
    assert f"chosen    {champion.tags['family']} by validation NDCG@10" in printed


def test_the_ensemble_is_fitted_on_validation_and_reported_against_its_members(pipeline_run):
    _, client, _ = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "ensemble")
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "fit_report.json")).read_text())
    weights = {k.removeprefix("weight/"): v for k, v in report["blend"].items() if k.startswith("weight/")}
    assert set(weights) == set(MODELS) and sum(weights.values()) == pytest.approx(1.0)
    assert report["blend"]["ndcg@10"] >= max(report["blend"][f"ndcg@10/{m}"] for m in MODELS) - 1e-12
