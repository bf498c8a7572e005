"""Training: one Flyte task per model family, each on a GPU node; CUDA when present, else CPU.

Every task is the same few lines: rebuild the split, build the family from its config (defaults
in ``models/``, overridden by the run's YAML), ``fit`` with early stopping on validation, and
return the weights as a file. The ``train_models`` dynamic fans the requested families out into
parallel branches.
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
    unknown = sorted(set(config) - set(TRAIN_TASKS))
    if unknown:
        raise UserError(f"model config names unknown model(s) {unknown}; known: {sorted(TRAIN_TASKS)}")
    return {family: dict(overrides or {}) for family, overrides in config.items()}


def split_data(train: pd.DataFrame, cases: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame):
    """Rebuild the in-memory split (``models.data.SplitData``) from the four tables the split task wrote."""
    from models.data import SplitData

    return SplitData(
        n_users=int(users["user_idx"].max()) if len(users) else 0,
        n_items=int(items["item_idx"].max()),
        train=train,
        cases=cases,
        items=items,
        users=users,
    )


def fit_family(
    family: str,
    train: pd.DataFrame,
    cases: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    model_config: str,
) -> TrainedModel:
    """Train ``family`` and return its weights file and learning curve.

    Checkpoints go to a folder named after the family and a hash of everything that determines
    the run (config, tables, code version), outside the task's temporary folder: a re-run of the
    same inputs after a kill resumes from the last completed epoch.
    """
    from models.device import pick_device, seed_everything
    from models.registry import build_model, save_model

    overrides = load_model_config(model_config).get(family, {})
    data = split_data(train, cases, items, users)
    device = pick_device()
    seed_everything(int(overrides.get("seed", 0)))
    with user_errors():
        model = build_model(family, data.n_items, overrides, n_users=data.n_users).to(device)
    checkpoints = _checkpoint_folder(family, overrides, (train, cases, items, users))
    started = time.perf_counter()
    report = model.fit(
        data, device, progress=True, checkpoint_dir=checkpoints, on_epoch=lambda _: _save_checkpoints(checkpoints)
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


@task(cache=TRAIN_CACHE, retries=2, **SMALL_GPU)
def train_popularity(train: Table, cases: Table, items: Table, users: Table, model_config: str = "") -> TrainedModel:
    """Most-popular baseline: item counts in the training part."""
    return fit_family("popularity", train, cases, items, users, model_config)


@task(cache=TRAIN_CACHE, retries=2, **SMALL_GPU)
def train_ease(train: Table, cases: Table, items: Table, users: Table, model_config: str = "") -> TrainedModel:
    """EASE item-item baseline (closed form, L2 chosen on validation)."""
    return fit_family("ease", train, cases, items, users, model_config)


@task(cache=TRAIN_CACHE, retries=2, **LARGE_GPU)
def train_sasrec(train: Table, cases: Table, items: Table, users: Table, model_config: str = "") -> TrainedModel:
    """SASRec: causal transformer over item sequences, full-softmax cross-entropy."""
    return fit_family("sasrec", train, cases, items, users, model_config)


@task(cache=TRAIN_CACHE, retries=2, **LARGE_GPU)
def train_bert4rec(train: Table, cases: Table, items: Table, users: Table, model_config: str = "") -> TrainedModel:
    """BERT4Rec: bidirectional transformer trained with Cloze masking."""
    return fit_family("bert4rec", train, cases, items, users, model_config)


@task(cache=TRAIN_CACHE, retries=2, **LARGE_GPU)
def train_temporal_attention(
    train: Table, cases: Table, items: Table, users: Table, model_config: str = ""
) -> TrainedModel:
    """TAT-TV: causal attention with seasonal encodings, time-interval bias and activity profile."""
    return fit_family("temporal_attention", train, cases, items, users, model_config)


TRAIN_TASKS = {
    "popularity": train_popularity,
    "ease": train_ease,
    "sasrec": train_sasrec,
    "bert4rec": train_bert4rec,
    "temporal_attention": train_temporal_attention,
}


def check_model_names(models: list[str]) -> None:
    unknown = [m for m in models if m not in TRAIN_TASKS]
    if unknown or not models:
        raise UserError(f"unknown model(s) {unknown or '(none given)'}; known: {', '.join(TRAIN_TASKS)}")


@dynamic(cache=TRAIN_CACHE, **DATA_RESOURCES)
def train_models(
    models: list[str], train: Table, cases: Table, items: Table, users: Table, model_config: str = ""
) -> list[TrainedModel]:
    """One parallel training branch per requested family."""
    check_model_names(models)
    return [
        TRAIN_TASKS[name](train=train, cases=cases, items=items, users=users, model_config=model_config)
        for name in models
    ]
