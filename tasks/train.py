"""Training: one Flyte task per resource profile (CPU, small GPU, large GPU); CUDA when present.

The ``train_models`` dynamic reads each requested family's spec (``models.registry.FAMILIES``):
it computes the side inputs the requested families name, once each, and sends every family to the
training task of its resource profile with exactly the side inputs its spec names. Each training
task is the same few lines: rebuild the training data (training part + validation cases; no
test case reaches it), build the family from its config (defaults in ``models/``, overridden by
the run's YAML), ``fit`` with early stopping on validation, and return the weights as a file.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd
from flytekit import Deck, current_context, dynamic, task
from flytekit.types.file import FlyteFile

from tasks.common import (
    CACHE_VERSION,
    CPU_TRAINING,
    DATA_RESOURCES,
    LARGE_GPU,
    SMALL_GPU,
    TRAIN_CACHE,
    Table,
    TrainedModel,
    hash_frame,
    work_dir,
)
from tasks.errors import user_errors
from tasks.decks import own_deck
from tasks.local_state import checkpoint_dir
from tasks.side_inputs import SIDE_INPUT_TASKS
from tasks.system_metrics import SystemSampler


def training_data(train: pd.DataFrame, valid_cases: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame):
    """Rebuild what ``fit`` sees (``models.data.TrainingData``) from the split task's tables."""
    from models.data import TrainingData

    return TrainingData(
        n_users=int(users["user_idx"].max()) if len(users) else 0,
        n_items=int(items["item_idx"].max()),
        train=train,
        valid_cases=valid_cases,
        items=items,
        users=users,
    )


def load_side_inputs(files: dict[str, FlyteFile]) -> dict:
    """Side-input files (by name) -> the objects ``fit`` takes (``models.registry.SIDE_INPUTS``)."""
    from models.registry import SIDE_INPUTS

    return {name: SIDE_INPUTS[name].load(file.download()) for name, file in files.items()}


def fit_family(
    family: str,
    train: pd.DataFrame,
    valid_cases: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:
    """Train ``family`` and return its weights file and learning curve.

    Checkpoints go to a folder named after the family and a hash of everything that determines
    the run (config, tables, code version), outside the task's temporary folder: a re-run of the
    same inputs after a kill resumes from the last completed epoch.
    """
    from models.device import pick_device
    from models.registry import save_model, sized_to_side_inputs
    from pipeline.config import load_model_config
    from pipeline.steps import fit_family as fit
    from tasks.plots import fit_html

    own_deck(timeline=False)  # the training tasks' Deck is their own tab only (deck_fields=())
    overrides = load_model_config(model_config).get(family, {})
    data = training_data(train, valid_cases, items, users)
    device = pick_device()
    loaded_side_inputs = load_side_inputs(side_inputs)
    sized = sized_to_side_inputs(family, overrides, loaded_side_inputs)  # the key: e.g. the text encoder's width
    checkpoints = _checkpoint_folder(family, sized, (train, valid_cases, items, users))
    with SystemSampler() as sampler, user_errors():
        fitted = fit(
            family, data, overrides, loaded_side_inputs, device=device, progress=True,
            checkpoint_dir=checkpoints, on_epoch=lambda _: _save_checkpoints(checkpoints),
        )  # fmt: skip
    model, report, seconds, started_at = fitted.model, fitted.report, fitted.seconds, fitted.started_at
    out = work_dir(f"trained-{family}")
    save_model(out / "weights.pt", family, model)
    fit_report = {**report.to_dict(), **training_facts(report.to_dict(), len(train), seconds, started_at)}
    fit_report["system"] = sampler.summary()
    (out / "fit_report.json").write_text(json.dumps(fit_report, indent=1))
    print(training_line(family, fit_report, str(device)))
    Deck(f"Training: {family}", fit_html(fit_report, family, out))
    return TrainedModel(
        family=family,
        weights=FlyteFile(str(out / "weights.pt")),
        fit_report=FlyteFile(str(out / "fit_report.json")),
        device=str(device),
        train_seconds=seconds,
    )


def training_facts(report: dict, train_rows: int, seconds: float, started_at: float) -> dict:
    """Timing for the fit report: wall-clock start and end (unix seconds), train seconds, the
    training part's rows and samples per second (rows x epochs / the epochs' seconds for epoch
    training, which stays right after a resume; rows / train seconds for a one-pass fit)."""
    epochs = report.get("epochs", [])
    if report.get("curve", "epoch") == "epoch" and epochs:
        rate = train_rows * len(epochs) / max(sum(e["seconds"] for e in epochs), 1e-9)
    else:
        rate = train_rows / max(seconds, 1e-9)
    return {
        "started_at": started_at,
        "finished_at": started_at + seconds,
        "train_seconds": seconds,
        "train_rows": train_rows,
        "samples_per_second": rate,
    }


def training_line(family: str, fit_report: dict, device: str) -> str:
    """'sasrec: stopped early at epoch 43, best epoch 34: validation NDCG@10 0.4857 (812.3s on
    cuda, 52,310 samples/s)'."""
    from tasks.plots import fit_choice

    return (
        f"{family}: {fit_choice(fit_report)} ({fit_report['train_seconds']:.1f}s on {device}, "
        f"{fit_report['samples_per_second']:,.0f} samples/s)"
    )


def run_key(family: str, overrides: dict, tables: tuple[pd.DataFrame, ...]) -> str:
    """A hash of everything that determines a training run: family, config, tables, code version."""
    digest = hashlib.sha256(f"{family}\n{CACHE_VERSION}\n{json.dumps(overrides, sort_keys=True)}\n".encode())
    for table in tables:
        digest.update(hash_frame(table).encode())
    return digest.hexdigest()


def _checkpoint_folder(family: str, overrides: dict, tables: tuple[pd.DataFrame, ...]) -> Path:
    """The run's durable checkpoint folder, pre-filled from Flyte's checkpoint on a cluster retry."""
    from models.training import CHECKPOINT_NAME

    folder = checkpoint_dir(family, run_key(family, overrides, tables))
    checkpoint = _flyte_checkpoint()
    if checkpoint is not None and checkpoint.restore(folder):
        print(f"{family}: restored the checkpoint of a previous attempt")
    if (folder / CHECKPOINT_NAME).exists():
        print(f"{family}: resuming from the checkpoint in {folder} (delete that folder to start over)")
    else:
        print(f"{family}: checkpoints in {folder}")
    return folder


def _save_checkpoints(folder: Path) -> None:
    checkpoint = _flyte_checkpoint()
    if checkpoint is not None and any(folder.iterdir()):
        checkpoint.save(folder)


def _flyte_checkpoint():
    try:
        return current_context().checkpoint
    except (NotImplementedError, AttributeError, ValueError):
        return None  # local runs without a checkpoint store


# One training task per resource profile: the same code, different nodes.


@task(cache=TRAIN_CACHE, retries=2, enable_deck=True, deck_fields=(), **CPU_TRAINING)
def train_on_cpu(
    family: str, train: Table, valid_cases: Table, items: Table, users: Table, model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:  # fmt: skip
    """Train a family whose spec runs on CPU nodes (counting and nearest-neighbour baselines)."""
    return fit_family(family, train, valid_cases, items, users, model_config, side_inputs)


@task(cache=TRAIN_CACHE, retries=2, enable_deck=True, deck_fields=(), **SMALL_GPU)
def train_on_small_gpu(
    family: str, train: Table, valid_cases: Table, items: Table, users: Table, model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:  # fmt: skip
    """Train a family whose spec asks for a small GPU (closed-form and graph models)."""
    return fit_family(family, train, valid_cases, items, users, model_config, side_inputs)


@task(cache=TRAIN_CACHE, retries=2, enable_deck=True, deck_fields=(), **LARGE_GPU)
def train_on_large_gpu(
    family: str, train: Table, valid_cases: Table, items: Table, users: Table, model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:  # fmt: skip
    """Train a family whose spec asks for a large GPU (transformers over sequences)."""
    return fit_family(family, train, valid_cases, items, users, model_config, side_inputs)


TRAINING_TASKS = {"cpu": train_on_cpu, "small_gpu": train_on_small_gpu, "large_gpu": train_on_large_gpu}


@dynamic(cache=TRAIN_CACHE, **DATA_RESOURCES)
def train_models(
    models: list[str], train: Table, valid_cases: Table, items: Table, users: Table, model_config: str = "",
    text_encoder: str = "all-MiniLM-L6-v2",
) -> list[TrainedModel]:  # fmt: skip
    """One parallel training branch per requested family, each on its spec's node, each handed
    the side inputs its spec names (computed once here, whichever families share them)."""
    from models.registry import FAMILIES, SIDE_INPUTS

    needed = dict.fromkeys(name for family in models for name in FAMILIES[family].side_inputs)
    computed = {
        name: SIDE_INPUT_TASKS[SIDE_INPUTS[name].resources](
            name=name, train=train, valid_cases=valid_cases, items=items, users=users, text_encoder=text_encoder
        )
        for name in needed
    }
    return [
        TRAINING_TASKS[FAMILIES[family].resources](
            family=family, train=train, valid_cases=valid_cases, items=items, users=users,
            model_config=model_config,
            side_inputs={name: computed[name] for name in FAMILIES[family].side_inputs},
        )  # fmt: skip
        for family in models
    ]
