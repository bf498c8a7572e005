"""What every Flyte task here shares: table hashing for the cache, resources, typed results."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
from flytekit import Cache, HashMethod, Resources, current_context
from flytekit.extras.accelerators import A100, L4
from flytekit.types.file import FlyteFile
from flytekit.types.structured import StructuredDataset

# Bump when a task's behaviour changes, so cached results of the old code are not reused.
CACHE_VERSION = "2026.12.06-1"
DATA_CACHE = Cache(version=CACHE_VERSION)
TRAIN_CACHE = Cache(version=CACHE_VERSION)

# Data tasks ask for CPU and memory only; training tasks ask for what their family's spec says
# (models.registry.FamilySpec.resources): CPU only, or a GPU of a named kind.
DATA_RESOURCES = {"requests": Resources(cpu="2", mem="4Gi")}
CPU_TRAINING = {"requests": Resources(cpu="4", mem="8Gi"), "limits": Resources(mem="16Gi")}
SMALL_GPU = {
    "requests": Resources(cpu="4", mem="16Gi", gpu="1"),
    "limits": Resources(gpu="1", mem="24Gi"),
    "accelerator": L4,
}
LARGE_GPU = {
    "requests": Resources(cpu="8", mem="32Gi", gpu="1"),
    "limits": Resources(gpu="1", mem="64Gi"),
    "accelerator": A100,
}


def hash_frame(frame: pd.DataFrame) -> str:
    """Content hash of a table (parquet bytes), so Flyte's cache can key on DataFrame inputs."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# A DataFrame that carries its own content hash between tasks (cache hits downstream).
Table = Annotated[pd.DataFrame, HashMethod(hash_frame)]


def work_dir(name: str) -> Path:
    """A fresh folder inside the task's sandbox for files the task returns."""
    path = Path(current_context().working_directory) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def execution_id() -> str:
    """The Flyte execution id (``local`` under ``pyflyte run`` without a cluster)."""
    ex = current_context().execution_id
    return getattr(ex, "name", None) or str(ex)


@dataclass
class DatasetInfo:
    """Where the tables came from: reported with every number."""

    name: str
    source: str
    path: str
    checksum: str
    n_interactions: int = 0
    n_items: int = 0
    n_users: int = 0
    files_json: str = ""  # JSON {table: file it was read from}; "" for generated data


@dataclass
class TrainedModel:
    """One trained family: weights (state_dict + config, never a pickled module) and its curve."""

    family: str
    weights: FlyteFile
    fit_report: FlyteFile  # JSON of models.interface.FitReport
    device: str
    train_seconds: float


@dataclass
class ModelEvaluation:
    """Test metrics per slice (reported), validation metrics per slice (what the champion and the
    gate are chosen by) and each test case's ranked top-20 (parquet)."""

    family: str
    metrics_json: str  # test: {slice: {metric: value}}
    predictions: FlyteFile
    eval_seconds: float
    validation_json: str = "{}"  # validation cases of every slice: {slice: {metric: value}}

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """The test metrics: reported, never read by a choice."""
        return json.loads(self.metrics_json)

    @property
    def validation(self) -> dict[str, dict[str, float]]:
        return json.loads(self.validation_json)


@dataclass
class RunResults:
    """What ``full_pipeline`` returns: the results table (one row per model and slice) and the
    end-of-run summary (``tasks.register.end_of_run_summary``). Printed, it is the summary, so the
    last thing ``pyflyte run`` shows (its echo of the return value) is the readable table, the
    champion decision, and where MLflow and the Decks are."""

    table: StructuredDataset
    summary: str

    def __str__(self) -> str:
        return self.summary

    @property
    def frame(self) -> pd.DataFrame:
        """The results table as a DataFrame."""
        return self.table.open(pd.DataFrame).all()
