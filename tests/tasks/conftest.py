"""What the registry tests share: a real SQLite MLflow store per test."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from mlflow import MlflowClient


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An initialised SQLite store, copied by each test: creating the tables takes seconds."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def client(empty_store, tmp_path, monkeypatch):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # run artifacts land next to the store
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("cinesync")
    yield MlflowClient(uri)
    mlflow.set_tracking_uri(None)
