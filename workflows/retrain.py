"""Scheduled retraining (DESIGN.md, "Retraining and replay"): each run trains on the data before
its ``cutoff``, warm-starts every family from the version of its family serving now, compares
candidate and champion on the same fresh validation cases, and registers every model with its
lineage; ``champion`` moves only past the gate.

    pyflyte run workflows/retrain.py retrain --cutoff 2023-10-02T00:00:00      # one retrain
    pyflyte run workflows/retrain.py replay                                     # the timeline, every strategy

On a cluster the launch plan ``retrain_weekly`` runs ``retrain`` every Monday at 03:00 UTC with
the kickoff time as ``cutoff`` (``kickoff_time_input_arg``): the data window is a function of that
input, never of the clock a task reads. Activate it with ``pyflyte register`` and
``flytectl update launchplan``.
"""

from __future__ import annotations

import warnings
from datetime import datetime

from flytekit import CronSchedule, LaunchPlan, workflow

from pipeline.options import DataOptions
from tasks.checks import check_run_inputs
from tasks.replay import replay_timeline
from tasks.retrain import execution_key, register_retrained, retrain_window, serving_versions

warnings.filterwarnings("ignore", message=r"The parameter --\S+ is used more than once")

RETRAIN_MODELS = ["popularity", "ease", "sasrec"]
# The embedded synthetic data spans 2021-01-01 to 2024-01-01: a cutoff inside it by default.
DEFAULT_CUTOFF = datetime(2023, 10, 2)
SCHEDULE = "0 3 * * 1"  # every Monday, 03:00 UTC


@workflow
def retrain(
    data: DataOptions = DataOptions(),
    cutoff: datetime = DEFAULT_CUTOFF,
    models: list[str] = RETRAIN_MODELS,
    model_config: str = "laptop",
    warm_start: bool = True,
    validation_days: float = 7.0,
    margin: float = 0.0,
) -> str:
    """One retrain at ``cutoff`` (a naive datetime is UTC); returns the registry decisions (JSON).
    ``--no-warm_start`` trains every family from scratch."""
    checked = check_run_inputs(models=models, model_config=model_config, data=data)
    key = execution_key(data=checked.data, cutoff=cutoff, models=checked.models, model_config=checked.model_config,
                        warm_start=warm_start, validation_days=validation_days, margin=margin)  # fmt: skip
    baselines = serving_versions(key=key, models=checked.models)
    window = retrain_window(
        data=checked.data, cutoff=cutoff, models=checked.models, model_config=checked.model_config,
        warm_start=warm_start, validation_days=validation_days, margin=margin, baselines=baselines,
    )  # fmt: skip
    return register_retrained(models=window.models, report=window.report, key=key)


@workflow
def replay(
    data: DataOptions = DataOptions(),
    start: datetime = datetime(2023, 3, 6),
    step_days: float = 28.0,
    windows: int = 3,
    models: list[str] = RETRAIN_MODELS,
    model_config: str = "laptop",
) -> str:
    """The timeline replayed (``pipeline.replay``): the retrain step once per cutoff, in order, with
    the strategies frozen / scratch / warm scored on each window's cases; the table, the plot and
    the pooled comparisons in a Deck and in MLflow (experiment ``cinesync-replay``). Returns the
    per-window table as Markdown."""
    checked = check_run_inputs(models=models, model_config=model_config, data=data)
    return replay_timeline(data=checked.data, start=start, step_days=step_days, windows=windows,
                           models=checked.models, model_config=checked.model_config)  # fmt: skip


# Replaces the nightly full_pipeline launch plan, which retrained the same model on the same data.
retrain_weekly = LaunchPlan.get_or_create(
    retrain,
    name="retrain_weekly",
    schedule=CronSchedule(schedule=SCHEDULE, kickoff_time_input_arg="cutoff"),
)
