"""The weekly schedule of the retraining workflow: flytekit checks none of this, so it is tested here.

The kickoff time is bound to the workflow's ``cutoff`` input (a ``datetime``), the serialized
launch plan carries the cron string and the argument, and the data window is a function of the
cutoff alone (never of ``current_context().execution_date``, the wall clock: flyte#4191).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from datetime import datetime, timezone

from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.models.launch_plan import LaunchPlan as LaunchPlanModel
from flytekit.tools.translator import get_serializable

from workflows.retrain import SCHEDULE, retrain, retrain_weekly

SETTINGS = SerializationSettings(
    image_config=ImageConfig.auto_default_image(), project="cinesync", domain="development", version="test"
)


def test_the_kickoff_input_is_a_datetime_input_of_the_workflow():
    assert retrain.python_interface.inputs["cutoff"] is datetime
    assert retrain_weekly.schedule.kickoff_time_input_arg == "cutoff"
    assert SCHEDULE == "0 3 * * 1"  # Mondays at 03:00 UTC


def test_the_serialized_launch_plan_carries_the_cron_string_and_the_argument():
    entities = OrderedDict()
    get_serializable(entities, SETTINGS, retrain_weekly)
    plans = [model for model in entities.values() if isinstance(model, LaunchPlanModel)]
    assert len(plans) == 1
    spec = plans[0].spec
    schedule = spec.entity_metadata.schedule
    assert schedule.cron_schedule.schedule == "0 3 * * 1"
    assert schedule.kickoff_time_input_arg == "cutoff"
    assert spec.workflow_id.name.endswith("retrain.retrain") and plans[0].id.name == "retrain_weekly"


def test_no_task_of_the_retraining_reads_the_execution_date():
    import tasks.retrain
    import tasks.replay
    import pipeline.retrain
    import pipeline.replay
    import pipeline.window

    import ast

    for module in (tasks.retrain, tasks.replay, pipeline.retrain, pipeline.replay, pipeline.window):
        tree = ast.parse(inspect.getsource(module))
        reads = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("execution_date", "now", "utcnow", "today")]
        assert not reads, (module.__name__, [ast.unparse(n) for n in reads])


def test_two_runs_with_the_same_cutoff_read_digest_equal_rows_naive_as_utc():
    from pipeline import steps
    from pipeline.options import DataOptions
    from pipeline.window import before_cutoff

    tables = steps.read_tables(DataOptions(synthetic_users=60), progress=False)
    again = steps.read_tables(DataOptions(synthetic_users=60), progress=False)
    naive, aware = datetime(2023, 6, 5), datetime(2023, 6, 5, tzinfo=timezone.utc)
    first, second = before_cutoff(tables, naive), before_cutoff(again, aware)
    assert first.checksum == second.checksum and len(first.interactions) == len(second.interactions) > 0
    later = before_cutoff(tables, datetime(2023, 7, 5))
    assert later.checksum != first.checksum and len(later.interactions) > len(first.interactions)
