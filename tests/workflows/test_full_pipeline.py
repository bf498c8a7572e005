"""End to end: the real full_pipeline under flytekit's local execution, then the MLflow store."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from workflows.full import full_pipeline, validate_data

TINY_CONFIG = """
sasrec: {dim: 16, n_layers: 1, n_heads: 1, max_len: 20, batch_size: 64, max_epochs: 3, patience: 2}
ease: {l2_grid: [50.0, 500.0]}
bert4rec: {dim: 16, n_layers: 1, n_heads: 1, max_len: 20, batch_size: 64, max_epochs: 2, patience: 2}
temporal_attention: {dim: 16, n_layers: 1, n_heads: 1, max_len: 20, batch_size: 64, max_epochs: 2, patience: 2}
lightgcn: {dim: 16, n_layers: 2, batch_size: 256, max_epochs: 2, patience: 2}
content_knn: {dim: 16}
"""
# Every trainable family of models.registry.FAMILIES (the ensemble is added by the pipeline).
MODELS = ["popularity", "ease", "sasrec", "bert4rec", "temporal_attention", "lightgcn", "content_knn"]
EVALUATED = [*MODELS, "ensemble"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_encoder):
    tracking = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tracking / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(tracking)  # artifacts land next to the store, not in the repo
    mp.setenv("CINESYNC_HOME", str(tracking / "cinesync"))
    table = full_pipeline(
        synthetic_users=150, data_seed=3, split_seed=3, models=MODELS, model_config=TINY_CONFIG, text_encoder=tiny_encoder
    )
    yield table, MlflowClient(tracking_uri=uri)
    mp.undo()


def _runs(client):
    experiment = client.get_experiment_by_name("cinesync")
    return client.search_runs([experiment.experiment_id])


def test_pipeline_returns_a_results_row_per_model_and_slice(pipeline_run):
    table, _ = pipeline_run
    assert isinstance(table, pd.DataFrame)
    assert set(table["model"]) == set(EVALUATED)
    for model in EVALUATED:
        slices = set(table[table["model"] == model]["slice"])
        assert {"all", "warm", "cold_user", "cold_item"} <= slices
    assert table["ndcg@10"].between(0, 1).all()


def test_one_parent_run_tagged_with_the_flyte_execution(pipeline_run):
    _, client = pipeline_run
    parents = [r for r in _runs(client) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["flyte_execution_id"]
    assert parent.data.tags["dataset"].startswith("synthetic")
    assert len(parent.data.tags["dataset_sha256"]) == 64
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "validation_summary.json", "split_summary.json", "validation"} <= artifacts


def test_a_child_run_per_model_with_curves_metrics_and_artifacts(pipeline_run):
    _, client = pipeline_run
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
        logged = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
        )
        assert [m.name for m in logged] == ["model"], family


def test_logged_pyfunc_returns_top_k_unseen_raw_item_ids(pipeline_run):
    _, client = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "sasrec")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    predictions_dir = Path(client.download_artifacts(run.info.run_id, "predictions"))
    cases = pd.read_parquet(next(predictions_dir.glob("*.parquet")))
    known = set(cases["target_item_id"])
    history = list(known)[:3]
    out = model.predict(pd.DataFrame({"history": [history, [999_999_999]]}), params={"k": 5})
    assert len(out) == 2 and all(len(items) == 5 for items in out["items"])
    assert not set(out["items"][0]) & set(history)
    assert list(out["unknown_items"]) == [0, 1]


def test_predictions_parquet_lets_anyone_recompute_the_metrics(pipeline_run):
    _, client = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "ease")
    folder = Path(client.download_artifacts(run.info.run_id, "predictions"))
    cases = pd.read_parquet(next(folder.glob("*.parquet")))
    hits = [t in list(top[:10]) for t, top in zip(cases["target_item_id"], cases["top_item_ids"])]
    assert sum(hits) / len(hits) == pytest.approx(run.data.metrics["test_all_hr_at_10"])
    metrics = json.loads(Path(client.download_artifacts(run.info.run_id, "metrics.json")).read_text())
    assert metrics["all"]["n_cases"] == len(cases)


def test_unknown_model_name_fails_before_any_work():
    with pytest.raises(Exception, match=r"unknown model\(s\) \['transformer-xl'\]; known: popularity, ease, sasrec, bert4rec, temporal_attention, lightgcn"):
        full_pipeline(synthetic_users=100, models=["sasrec", "transformer-xl"])


def test_validate_stage_fails_naming_the_broken_expectation(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    pd.DataFrame(
        {"user_id": [1, 1, 2, 2], "item_id": [10, 11, 10, 12], "rating": [4.0, 9.0, 3.0, 5.0], "timestamp": [1e9, 1e9 + 1, 1e9, 1e9 + 2]}
    ).to_csv(folder / "interactions.csv", index=False)
    with pytest.raises(Exception, match=r"(?s)rating.*1"):
        validate_data(source="generic", path=str(folder))


def test_time_aware_pyfunc_uses_the_given_timestamps(pipeline_run):
    _, client = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "temporal_attention")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    folder = Path(client.download_artifacts(run.info.run_id, "predictions"))
    history = list(pd.read_parquet(next(folder.glob("*.parquet")))["target_item_id"].unique()[:4])
    frame = pd.DataFrame({"history": [history, history], "history_timestamps": [[1_600_000_000 + d * 86_400 for d in range(4)], [1_600_000_000 + d * 3_600 for d in range(4)]]})
    out = model.predict(frame, params={"k": 5})
    assert all(len(items) == 5 and not set(items) & set(history) for items in out["items"])


def test_every_model_is_registered_and_the_best_holds_the_champion_alias(pipeline_run):
    table, client = pipeline_run
    overall = table[table["slice"] == "all"].set_index("model")["ndcg@10"]
    for family in EVALUATED:
        assert client.get_registered_model(f"cinesync-{family}").aliases == {"champion": 1}, family
    champion = client.get_model_version_by_alias("cinesync-champion", "champion")
    assert champion.tags["family"] == overall.idxmax()


def test_the_ensemble_is_fitted_on_validation_and_reported_against_its_members(pipeline_run):
    _, client = pipeline_run
    run = next(r for r in _runs(client) if r.data.tags.get("model_family") == "ensemble")
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "fit_report.json")).read_text())
    weights = {k.removeprefix("weight/"): v for k, v in report["blend"].items() if k.startswith("weight/")}
    assert set(weights) == set(MODELS) and sum(weights.values()) == pytest.approx(1.0)
    assert report["blend"]["ndcg@10"] >= max(report["blend"][f"ndcg@10/{m}"] for m in MODELS) - 1e-12
