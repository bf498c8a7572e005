"""The stage workflows through the real `pyflyte run` command: `split_data` returns the split's
accounting, `evaluate_only` evaluates weights trained by another execution on the same data
options, and a data option that cannot work stops either before ingest, in a few lines."""

from __future__ import annotations

import json

import pytest

from tests.workflows.conftest import output, pyflyte

DATA = '{"synthetic_users": 60, "data_seed": 2, "split_seed": 2}'


def test_split_data_prints_the_split_summary_with_every_row_accounted_for(sandbox):
    run = pyflyte(sandbox, "split_data", "--data", DATA)
    assert run.returncode == 0, output(run)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "pipeline" and summary["seed"] == 2
    warm_targets = summary["test_cases"]["warm"] + summary["test_cases"]["cold_item"]
    accounted = summary["train_rows"] + summary["valid_cases"] + warm_targets + summary["cold_item_removed_rows"] + summary["cold_user_rows"]
    assert accounted == summary["rows_in"]
    # the catalogue is the whole item table: items nobody of the 60 users rated are candidates too
    assert 0 < summary["items_without_interactions"] < summary["n_items"]


def test_evaluate_only_scores_weights_trained_by_another_execution(sandbox, tmp_path):
    from pipeline.options import DataOptions
    from workflows.full import train_only

    trained = train_only(data=DataOptions(**json.loads(DATA)), models=["popularity"])
    given = [
        {"family": t.family, "weights": {"path": t.weights.path}, "fit_report": {"path": t.fit_report.path},
         "device": t.device, "train_seconds": t.train_seconds}
        for t in trained
    ]  # fmt: skip
    run = pyflyte(sandbox, "evaluate_only", "--trained", json.dumps(given), "--data", DATA)
    assert run.returncode == 0, output(run)
    line = next(line for line in run.stdout.splitlines() if line.startswith("popularity: validation NDCG@10"))
    assert "test NDCG@10" in line


@pytest.mark.parametrize("workflow", ["split_data", "evaluate_only"])
def test_a_bad_split_mode_stops_before_ingest_in_a_few_lines(sandbox, workflow):
    args = ("--trained", "[]") if workflow == "evaluate_only" else ()
    run = pyflyte(sandbox, workflow, *args, "--data", '{"split_mode": "random"}')
    assert run.returncode == 1, output(run)
    squashed = "".join(output(run).replace("│", "").split())
    assert "unknownsplitmode'random';known:pipeline,standard" in squashed
    assert "Traceback" not in output(run) and "ingested" not in output(run)
