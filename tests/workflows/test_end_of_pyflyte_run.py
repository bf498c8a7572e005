"""What `pyflyte run workflows/full.py full_pipeline` prints last, driven through the real command:
the readable table, the champion decision and where MLflow and the Decks are — and not pyflyte's
echo of a pandas frame cut to a few columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYFLYTE = str(Path(sys.executable).with_name("pyflyte"))


def test_pyflyte_run_ends_with_the_summary_and_nothing_after_it(tmp_path):
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "CINESYNC_HOME": str(tmp_path / "cinesync"),
        "TMPDIR": str(tmp_path),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    args = ["--models", '["popularity", "ease"]', "--synthetic_users", "80", "--no-ensemble"]
    run = subprocess.run(
        [PYFLYTE, "run", "workflows/full.py", "full_pipeline", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    end = out[out.index("Test NDCG@10 and HR@10 per slice") :]
    assert out.rstrip().endswith("(open in a browser; on a Flyte cluster, each task's Flyte Deck in the console)")
    for model in ("popularity", "ease"):
        assert f" {model} " in end
    assert "champion  cinesync-champion v1" in end
    assert "rows x" not in out and "train_seconds" not in out  # no pandas repr of the results frame
    assert out.count("Test NDCG@10 and HR@10 per slice") == 1
