"""Fail in the first seconds, not after an hour of ingest: check the run's inputs up front.

Every workflow starts with one of these tasks. They check every data option
(``pipeline.options.DataOptions.check``: the source and split mode against the lists
``data_contracts.sources`` and ``models.split`` own), and for a training run every model name and
config field (``pipeline.config``). They are never cached, so they also run the local
housekeeping a re-run needs (``tasks.local_state.forget_missing_outputs``) before any cached task
is looked up.
"""

from __future__ import annotations

from typing import NamedTuple

import yaml
from flytekit import task

from pipeline.options import DataOptions
from tasks.errors import user_errors
from tasks.local_state import forget_missing_outputs


class CheckedInputs(NamedTuple):
    models: list[str]
    model_config: str  # the resolved YAML text, so caches key on the config's content, not its name
    data: DataOptions


@task(cache=False)
def check_run_inputs(models: list[str], model_config: str, data: DataOptions) -> CheckedInputs:
    """Check every model name, every config field of every requested family and every data
    option; resolve the config. Runs before any data moves."""
    from pipeline.config import check_models, load_model_config

    forget_missing_outputs()
    with user_errors():
        resolved = load_model_config(model_config)
        check_models(models, resolved)
        data.check()
    return CheckedInputs(models, yaml.safe_dump(resolved, sort_keys=True), data)


@task(cache=False)
def check_data_inputs(data: DataOptions) -> DataOptions:
    """Every data option of a stage without training; returns them (so later tasks wait for it)."""
    forget_missing_outputs()
    with user_errors():
        return data.check()
