"""Fail in the first seconds, not after an hour of ingest: check the run's inputs up front.

Every workflow starts with one of these tasks. They are never cached, so they also run the local
housekeeping a re-run needs (``tasks.local_state.forget_missing_outputs``) before any cached task
is looked up.
"""

from __future__ import annotations

from typing import NamedTuple

import yaml
from flytekit import task

from tasks.errors import UserError
from tasks.local_state import forget_missing_outputs
from tasks.train import check_model_configs, check_model_names, load_model_config

SOURCES = ("synthetic", "movielens", "movielens-download", "generic")
SPLIT_MODES = ("standard", "pipeline")


class CheckedInputs(NamedTuple):
    models: list[str]
    model_config: str  # the resolved YAML text, so caches key on the config's content, not its name


def _check_data_options(source: str, split_mode: str) -> None:
    if split_mode not in SPLIT_MODES:
        raise UserError(f"unknown split mode {split_mode!r}; known: {', '.join(SPLIT_MODES)}")
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")


@task(cache=False)
def check_run_inputs(models: list[str], model_config: str, split_mode: str, source: str) -> CheckedInputs:
    """Check every model name, every config field of every requested family, the split mode and
    the source; resolve the config. Runs before any data moves."""
    forget_missing_outputs()
    check_model_names(models)
    resolved = load_model_config(model_config)
    check_model_configs(models, resolved)
    _check_data_options(source, split_mode)
    return CheckedInputs(models, yaml.safe_dump(resolved, sort_keys=True))


@task(cache=False)
def check_data_inputs(source: str, split_mode: str = "standard") -> str:
    """The data options of a stage without training; returns ``source`` (so later tasks wait for it)."""
    forget_missing_outputs()
    _check_data_options(source, split_mode)
    return source
