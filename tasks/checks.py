"""Fail in the first second, not after an hour of ingest: check the run's inputs up front."""

from __future__ import annotations

from flytekit import task

from tasks.train import check_model_names, load_model_config

SOURCES = ("synthetic", "movielens", "movielens-download", "generic")
SPLIT_MODES = ("standard", "pipeline")


@task
def check_run_inputs(models: list[str], model_config: str, split_mode: str, source: str) -> list[str]:
    """Return ``models`` unchanged if every name, the config, the split mode and the source are known."""
    check_model_names(models)
    load_model_config(model_config)
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {split_mode!r}; known: {', '.join(SPLIT_MODES)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return models
