"""Fail in the first second, not after an hour of ingest: check the run's inputs up front."""

from __future__ import annotations

from typing import NamedTuple

import yaml
from flytekit import task

from tasks.train import check_model_names, load_model_config

SOURCES = ("synthetic", "movielens", "movielens-download", "generic")
SPLIT_MODES = ("standard", "pipeline")


class CheckedInputs(NamedTuple):
    models: list[str]
    model_config: str  # the resolved YAML text, so caches key on the config's content, not its name


@task
def check_run_inputs(models: list[str], model_config: str, split_mode: str, source: str) -> CheckedInputs:
    """Check every model name, the config, the split mode and the source; resolve the config."""
    check_model_names(models)
    resolved = load_model_config(model_config)
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {split_mode!r}; known: {', '.join(SPLIT_MODES)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return CheckedInputs(models, yaml.safe_dump(resolved, sort_keys=True))
