"""The end of a run: the models x slices table (every model and slice), the champion decision,
where MLflow and the Decks are — the workflow's return value prints as exactly that; the
champion decision written on the parent run."""

from __future__ import annotations

import click
import pandas as pd
from click.testing import CliRunner
from flytekit import task, workflow
from flytekit.types.structured import StructuredDataset
from mlflow import MlflowClient

from tasks.common import RunResults

from tasks.plots import render, results_matrix
from tasks.promotion import PromotionDecision
from tasks.register import end_of_run_summary, log_decision

SLICES = ["all", "warm", "cold_user", "cold_item", "activity:1-10", "activity:11-50", "activity:51-200", "activity:201+"]
MODELS = ["popularity", "ease", "sasrec", "bert4rec", "temporal_attention", "lightgcn", "content_knn", "ensemble"]


def _metrics():
    return {
        model: {s: {"ndcg@10": 0.01 * i + 0.001 * j, "hr@10": 0.02 * i + 0.001 * j, "n_cases": 100 + j} for j, s in enumerate(SLICES)}
        for i, model in enumerate(MODELS)
    }


def test_the_end_table_shows_every_model_and_every_slice_with_both_metrics():
    metrics = _metrics()
    text = render(results_matrix(metrics, "title"))
    for model in MODELS:
        assert model in text
    for label in ("all", "warm", "cold user", "cold item", "history 1-10", "history 11-50", "history 51-200", "history 201+"):
        assert label in text
    for model in MODELS:
        for s in SLICES:
            assert f"{metrics[model][s]['ndcg@10']:.4f}" in text and f"{metrics[model][s]['hr@10']:.4f}" in text
    assert text.count("NDCG@10") == len(MODELS) and text.count("HR@10") == len(MODELS)
    lines = text.splitlines()
    assert lines.index(next(line for line in lines if "ensemble" in line)) < lines.index(next(line for line in lines if "popularity" in line))


def test_the_end_of_a_run_names_the_champion_mlflow_ui_and_decks(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    monkeypatch.chdir(tmp_path)
    decision = PromotionDecision("cinesync-champion", "3", False, "not better by the margin", "2")
    text = end_of_run_summary(_metrics(), decision, "ease", {"parent_run_id": "abc", "experiment_id": "1"}, MODELS)
    assert "history 201+" in text and "content_knn" in text
    assert "cinesync-champion v3 (ease) challenger" in text
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in text
    assert "#/experiments/1/runs/abc" in text
    assert "train sasrec" in text and "evaluate" in text and "validate" in text


@task
def _summarised(frame: pd.DataFrame) -> RunResults:
    return RunResults(table=StructuredDataset(dataframe=frame), summary="TABLE\nchampion  ...")


@workflow
def _returns_results(frame: pd.DataFrame) -> RunResults:
    return _summarised(frame=frame)


def test_a_workflow_returning_run_results_prints_as_its_summary_and_keeps_the_table():
    frame = pd.DataFrame({"model": ["ease", "ease"], "slice": ["all", "warm"], "ndcg@10": [0.25, 0.5]})
    result = _returns_results(frame=frame)  # through Flyte's type engine, as a workflow output is

    @click.command()
    def run():
        click.echo(result)  # what `pyflyte run` does with a workflow's return value

    assert CliRunner().invoke(run).output == "TABLE\nchampion  ...\n"
    pd.testing.assert_frame_equal(result.frame, frame)


def test_the_champion_decision_is_written_on_the_parent_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("cinesync")
    run = client.create_run(experiment, tags={"mlflow.note.content": "Pipeline on tiny."})
    first = PromotionDecision("cinesync-champion", "1", True, "first version of cinesync-champion: no champion yet")
    log_decision(client, run.info.run_id, first, "ease")
    second = PromotionDecision("cinesync-champion", "2", False, "not better by the margin", "1")
    log_decision(client, run.info.run_id, second, "sasrec")  # a retry that decided otherwise replaces the line
    data = client.get_run(run.info.run_id).data
    assert data.tags["champion.family"] == "sasrec" and data.tags["champion.promoted"] == "false"
    assert data.tags["champion.version"] == "2" and data.tags["champion.previous_version"] == "1"
    assert data.tags["mlflow.note.content"] == (
        "Pipeline on tiny.\n\nChampion decision: cinesync-champion v2 (sasrec) challenger (champion unchanged): "
        "not better by the margin."
    )
    assert data.metrics["champion_promoted"] == 0.0
