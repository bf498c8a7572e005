"""What `pyflyte run workflows/full.py full_pipeline` prints last, driven through the real command:
the readable table, the champion decision and where MLflow and the Decks are — and not pyflyte's
echo of a pandas frame cut to a few columns."""

from __future__ import annotations

from tests.workflows.conftest import pyflyte


def test_pyflyte_run_ends_with_the_summary_and_nothing_after_it(sandbox):
    args = ("--models", '["popularity", "ease"]', "--data", '{"synthetic_users": 80}', "--no-ensemble")
    run = pyflyte(sandbox, "full_pipeline", *args, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    end = out[out.index("Test NDCG@10 and HR@10 per slice") :]
    assert out.rstrip().endswith("(open in a browser; on a Flyte cluster, each task's Flyte Deck in the console)")
    for model in ("popularity", "ease"):
        assert f" {model} " in end
    assert "champion  cinesync-champion v1" in end
    assert "rows x" not in out and "train_seconds" not in out  # no pandas repr of the results frame
    assert out.count("Test NDCG@10 and HR@10 per slice") == 1
