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
import yaml
from flytekit import current_context, dynamic, task
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
from tasks.errors import UserError, user_errors
from tasks.local_state import checkpoint_dir
from tasks.side_inputs import interaction_graph, item_text_embeddings

CONFIG_DIR = Path(__file__).resolve().parent.parent / "workflows" / "configs"


def load_model_config(spec: str) -> dict[str, dict]:
    """Per-family config overrides from ``spec``: "" (none), a bundled name such as "laptop"
    (workflows/configs/laptop.yaml), a path to a YAML file, or inline YAML/JSON text."""
    if not spec.strip():
        return {}
    looks_like_path = "\n" not in spec and len(spec) < 256
    if looks_like_path and (CONFIG_DIR / f"{spec}.yaml").is_file():
        text = (CONFIG_DIR / f"{spec}.yaml").read_text()
    elif looks_like_path and Path(spec).is_file():
        text = Path(spec).read_text()
    else:
        text = spec
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"model config {spec!r} is neither a file nor valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(
            f"model config {spec!r} must map family names to overrides, e.g. 'sasrec: {{dim: 64}}'"
        )
    from models.registry import FAMILIES

    unknown = sorted(set(config) - set(FAMILIES))
    if unknown:
        raise UserError(f"model config names unknown model(s) {unknown}; known: {sorted(FAMILIES)}")
    return {family: dict(overrides or {}) for family, overrides in config.items()}


def check_model_names(models: list[str]) -> None:
    from models.registry import trainable_families

    known = trainable_families()
    unknown = [m for m in models if m not in known]
    if unknown or not models:
        hint = "; the ensemble is fitted on the members by itself" if "ensemble" in unknown else ""
        raise UserError(f"unknown model(s) {unknown or '(none given)'}; known: {', '.join(known)}{hint}")


def check_model_configs(models: list[str], config: dict[str, dict]) -> None:
    """Every field of every requested family's overrides, checked before any data moves."""
    from models.registry import check_config

    for family in models:
        with user_errors():
            check_config(family, config.get(family, {}))


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
    """Side-input files (by name) -> the objects ``fit`` takes."""
    from models.content.item_text import ItemTextEmbeddings
    from models.graph.interaction_graph import InteractionGraph

    loaders = {"interaction_graph": InteractionGraph.load, "item_text_embeddings": ItemTextEmbeddings.load}
    return {name: loaders[name](file.download()) for name, file in files.items()}


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
    from models.device import pick_device, seed_everything
    from models.registry import build_model, save_model

    overrides = load_model_config(model_config).get(family, {})
    data = training_data(train, valid_cases, items, users)
    device = pick_device()
    seed_everything(int(overrides.get("seed", 0)))
    with user_errors():
        model = build_model(family, data.n_items, overrides, n_users=data.n_users).to(device)
    checkpoints = _checkpoint_folder(family, overrides, (train, valid_cases, items, users))
    started = time.perf_counter()
    report = model.fit(
        data,
        device,
        side_inputs=load_side_inputs(side_inputs),
        progress=True,
        checkpoint_dir=checkpoints,
        on_epoch=lambda _: _save_checkpoints(checkpoints),
    )
    seconds = time.perf_counter() - started
    out = work_dir(f"trained-{family}")
    save_model(out / "weights.pt", family, model)
    (out / "fit_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    best = report.best_valid.get("ndcg@10", float("nan"))
    print(f"{family}: best validation NDCG@10 {best:.4f} at epoch {report.best_epoch} ({seconds:.1f}s on {device})")
    return TrainedModel(
        family=family,
        weights=FlyteFile(str(out / "weights.pt")),
        fit_report=FlyteFile(str(out / "fit_report.json")),
        device=str(device),
        train_seconds=seconds,
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


@task(cache=TRAIN_CACHE, retries=2, **CPU_TRAINING)
def train_on_cpu(
    family: str, train: Table, valid_cases: Table, items: Table, users: Table, model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:  # fmt: skip
    """Train a family whose spec runs on CPU nodes (counting and nearest-neighbour baselines)."""
    return fit_family(family, train, valid_cases, items, users, model_config, side_inputs)


@task(cache=TRAIN_CACHE, retries=2, **SMALL_GPU)
def train_on_small_gpu(
    family: str, train: Table, valid_cases: Table, items: Table, users: Table, model_config: str,
    side_inputs: dict[str, FlyteFile],
) -> TrainedModel:  # fmt: skip
    """Train a family whose spec asks for a small GPU (closed-form and graph models)."""
    return fit_family(family, train, valid_cases, items, users, model_config, side_inputs)


@task(cache=TRAIN_CACHE, retries=2, **LARGE_GPU)
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
    from models.registry import FAMILIES

    check_model_names(models)
    needed = {name for family in models for name in FAMILIES[family].side_inputs}
    computed = {}
    if "interaction_graph" in needed:
        computed["interaction_graph"] = interaction_graph(train=train, items=items, users=users)
    if "item_text_embeddings" in needed:
        computed["item_text_embeddings"] = item_text_embeddings(items=items, encoder=text_encoder)
    return [
        TRAINING_TASKS[FAMILIES[family].resources](
            family=family, train=train, valid_cases=valid_cases, items=items, users=users,
            model_config=model_config,
            side_inputs={name: computed[name] for name in FAMILIES[family].side_inputs},
        )  # fmt: skip
        for family in models
    ]
