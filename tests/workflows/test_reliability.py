"""Nothing lost, nothing repeated: the promises of RELIABILITY.md, driven through `pyflyte run`.

Each test runs the real command line in a subprocess with its own HOME (so its own Flyte local
cache), its own CINESYNC_HOME (checkpoints, quarantine) and its own TMPDIR (Flyte's temporary
task folders), with the local cache on, as a user has it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.options import DataOptions

from tests.workflows.conftest import PYFLYTE, ROOT, output, pyflyte

# Small enough to run in seconds, slow enough (many steps an epoch) that a kill lands mid-run.
SASREC = (
    "sasrec: {dim: 16, n_layers: 1, n_heads: 1, max_len: 20, batch_size: 8, max_epochs: 40, "
    "patience: 100, num_threads: 1, eval_every: 1}"
)


def _checkpoint(env: dict) -> Path | None:
    found = list(Path(env["CINESYNC_HOME"]).glob("checkpoints/sasrec-*/checkpoint.pt"))
    return found[0] if found else None


def _fit_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["fit"]


# --- a killed training run resumes ------------------------------------------------------------


def test_a_killed_training_resumes_from_its_last_epoch_and_ends_where_an_unbroken_run_does(sandbox, tmp_path):
    args = ("--models", '["sasrec"]', "--data", '{"synthetic_users": 200}', "--model_config", SASREC)
    command = [PYFLYTE, "run", "workflows/full.py", "train_only", *args]
    killed = subprocess.Popen(
        command, cwd=ROOT, env=sandbox, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    state_at_kill = None
    while time.monotonic() < deadline and killed.poll() is None:
        path = _checkpoint(sandbox)
        if path is not None:
            try:
                state = _fit_state(path)
            except (EOFError, RuntimeError):  # caught between write and rename: read again
                state = None
            if state is not None and state["epoch"] >= 3:
                os.killpg(killed.pid, signal.SIGKILL)
                killed.wait()
                state_at_kill = _fit_state(path)  # what the kill left behind
                break
        time.sleep(0.05)
    assert state_at_kill is not None, "the run finished or stalled before its third epoch: nothing to resume"
    done_before_kill = state_at_kill["epoch"]
    assert done_before_kill < 40

    resumed = pyflyte(sandbox, "train_only", *args)
    assert resumed.returncode == 0, output(resumed)
    assert "resuming from the checkpoint" in output(resumed)
    final = _fit_state(_checkpoint(sandbox))
    # The epochs done before the kill were not repeated: their log (wall seconds included) is the
    # one the killed process wrote.
    assert final["history"][:done_before_kill] == state_at_kill["history"]
    assert final["epoch"] == 40

    unbroken_env = {**sandbox, "CINESYNC_HOME": str(tmp_path / "unbroken"), "HOME": str(tmp_path / "home2")}
    Path(unbroken_env["HOME"]).mkdir()
    unbroken = pyflyte(unbroken_env, "train_only", *args)
    assert unbroken.returncode == 0, output(unbroken)
    reference = _fit_state(next(Path(unbroken_env["CINESYNC_HOME"]).glob("checkpoints/sasrec-*/checkpoint.pt")))
    # Every random state is checkpointed, so the resumed run is bit-identical to the unbroken one.
    assert final["best_metric"] == reference["best_metric"]
    assert final["best_epoch"] == reference["best_epoch"]
    assert [h["train_loss"] for h in final["history"]] == [h["train_loss"] for h in reference["history"]]


# --- the local cache survives a cleaned /tmp --------------------------------------------------


def test_a_rerun_after_tmp_was_cleaned_recomputes_instead_of_crashing(sandbox):
    args = ("--models", '["popularity"]', "--data", '{"synthetic_users": 150}')
    first = pyflyte(sandbox, "train_only", *args)
    assert first.returncode == 0, output(first)
    assert "ingested synthetic" in output(first)

    cached = pyflyte(sandbox, "train_only", *args)
    assert cached.returncode == 0, output(cached)
    assert "ingested synthetic" not in output(cached)  # served from the cache

    for child in Path(sandbox["TMPDIR"]).iterdir():  # what a reboot does to /tmp
        shutil.rmtree(child)
    after_clean = pyflyte(sandbox, "train_only", *args)
    assert after_clean.returncode == 0, output(after_clean)
    assert "pointed at deleted files; they will run again" in output(after_clean)
    assert "ingested synthetic" in output(after_clean)
    assert "Traceback" not in output(after_clean)


# --- quarantine: exact, and easy to find ------------------------------------------------------


def _generic_folder(folder: Path, n_duplicates: int) -> Path:
    """A small valid dataset in the generic format, with ``n_duplicates`` exact repeats appended."""
    rng = np.random.default_rng(0)
    rows = [
        (user, int(item), 4.0, 1_000_000_000 + 60 * k)
        for user in range(1, 41)
        for k, item in enumerate(rng.choice(np.arange(1, 61), size=8, replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame = pd.concat([frame, frame.iloc[::7].head(n_duplicates)], ignore_index=True)
    folder.mkdir(parents=True)
    frame.to_csv(folder / "interactions.csv", index=False)
    return folder


def test_quarantine_keeps_first_occurrences_and_prints_where_the_repeats_went(sandbox, tmp_path):
    folder = _generic_folder(tmp_path / "dups", n_duplicates=10)
    run = pyflyte(sandbox, "validate_data", "--data", json.dumps({"source": "generic", "path": str(folder), "quarantine": True}))
    assert run.returncode == 0, output(run)
    line = next(l for l in output(run).splitlines() if l.startswith("quarantined rows: "))
    quarantine = Path(line.removeprefix("quarantined rows: ").split(" (")[0])
    assert quarantine.is_relative_to(sandbox["CINESYNC_HOME"])  # outlives the run's /tmp folder
    rows = pd.read_parquet(quarantine / "interactions.parquet")
    assert len(rows) == 10
    assert (rows["source_row"] >= 320).all()  # only the appended repeats
    assert (rows["duplicate_of"] == (rows["source_row"] - 320) * 7).all()
    reports = list(Path(sandbox["TMPDIR"]).rglob("validation.html"))
    assert reports and str(quarantine) in reports[0].read_text()


def test_full_pipeline_logs_the_quarantined_rows_to_mlflow(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from workflows.full import full_pipeline

    folder = _generic_folder(tmp_path / "dups", n_duplicates=4)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CINESYNC_HOME", str(tmp_path / "cinesync"))
    monkeypatch.chdir(tmp_path)
    full_pipeline(data=DataOptions(source="generic", path=str(folder), quarantine=True, split_mode="standard"), models=["popularity"])
    client = MlflowClient(tracking_uri=uri)
    (parent,) = [
        r
        for r in client.search_runs([client.get_experiment_by_name("cinesync").experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "quarantine")}
    assert logged == {"quarantine/interactions.parquet"}
    rows = pd.read_parquet(client.download_artifacts(parent.info.run_id, "quarantine/interactions.parquet"))
    assert len(rows) == 4 and rows["duplicate_of"].notna().all()


# --- user errors: a few lines, no traceback ---------------------------------------------------


def _bad_rating_folder(folder: Path) -> Path:
    folder.mkdir()
    pd.DataFrame(
        {"user_id": [1, 1, 2, 2], "item_id": [10, 11, 10, 12], "rating": [4.0, 9.0, 3.0, 5.0],
         "timestamp": [10**9, 10**9 + 1, 10**9, 10**9 + 2]}  # fmt: skip
    ).to_csv(folder / "interactions.csv", index=False)
    return folder


@pytest.mark.parametrize(
    "case, args, expected",
    [
        ("unknown model", ("full_pipeline", "--models", '["nope"]'), "unknown model(s) ['nope']"),
        (
            "missing folder",
            ("validate_data", "--data", '{"source": "movielens", "path": "/nonexistent/ml-100k"}'),
            "MovieLens folder /nonexistent/ml-100k does not exist",
        ),
        (
            "misspelled config field",
            ("train_only", "--models", '["sasrec"]', "--data", '{"synthetic_users": 60}', "--model_config", "sasrec: {dimm: 8}"),
            "unknown config key(s) 'dimm' for model 'sasrec'",
        ),
        ("bad data", ("validate_data",), "rating between 0.0 and 5.0"),
    ],
)
def test_a_user_error_is_a_few_lines_naming_what_and_where(sandbox, tmp_path, case, args, expected):
    if case == "bad data":
        args = (*args, "--data", json.dumps({"source": "generic", "path": str(_bad_rating_folder(tmp_path / "bad"))}))
    run = pyflyte(sandbox, *args)
    squashed = "".join(output(run).replace("│", "").split())  # the error box wraps long lines anywhere
    assert run.returncode == 1, output(run)
    assert "".join(expected.split()) in squashed
    assert "Traceback" not in output(run)
    box = output(run)[output(run).index("Error") :].splitlines()
    assert len(box) <= 12, output(run)
    if case == "bad data":
        assert f"{tmp_path}/bad/interactions.csv" in squashed  # the file, not only the table
