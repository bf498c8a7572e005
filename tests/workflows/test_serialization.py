"""The serialized DAG (what a cluster receives) asks for GPUs on training nodes only."""

from collections import OrderedDict

import pytest
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.python_function_task import PythonFunctionTask
from flytekit.tools.translator import get_serializable

from tasks.train import TRAIN_TASKS
from workflows.full import full_pipeline, nightly_retrain

SETTINGS = SerializationSettings(
    image_config=ImageConfig.auto_default_image(), project="cinesync", domain="development", version="test"
)


@pytest.fixture(scope="module")
def serialized_tasks():
    entities = OrderedDict()
    get_serializable(entities, SETTINGS, full_pipeline)
    for train_task in TRAIN_TASKS.values():  # the dynamic fans out to these at run time
        get_serializable(entities, SETTINGS, train_task)
    return {entity.name: spec.template for entity, spec in entities.items() if isinstance(entity, PythonFunctionTask)}


def _requests(template) -> dict[str, str]:
    return {r.name: r.value for r in template.container.resources.requests}


def _limits(template) -> dict[str, str]:
    return {r.name: r.value for r in template.container.resources.limits}


GPU = 2  # flytekit.models.task.Resources.ResourceName.GPU


def test_every_training_task_requests_and_limits_a_gpu_with_an_accelerator(serialized_tasks):
    training = {name: t for name, t in serialized_tasks.items() if name.startswith("tasks.train.train_") and name != "tasks.train.train_models"}
    assert set(training) == {f"tasks.train.train_{family}" for family in TRAIN_TASKS}
    for name, template in training.items():
        assert _requests(template).get(GPU) == "1", name
        assert _limits(template).get(GPU) == "1", name
        assert template.extended_resources.gpu_accelerator.device.startswith("nvidia-"), name
        assert template.metadata.retries.retries >= 1, name
        assert template.metadata.discoverable and template.metadata.discovery_version, name


@pytest.mark.parametrize("name", ["tasks.ingest.ingest", "tasks.validate.validate", "tasks.split.split"])
def test_data_tasks_declare_no_gpu_and_no_accelerator(serialized_tasks, name):
    template = serialized_tasks[name]
    assert GPU not in _requests(template)
    assert GPU not in _limits(template)
    assert not template.extended_resources or not template.extended_resources.HasField("gpu_accelerator")
    assert template.metadata.discoverable, "data tasks are cached"


def test_workflow_reads_like_the_design_diagram(serialized_tasks):
    for stage in ("ingest", "validate", "split", "train_models", "evaluate_models", "track_in_mlflow"):
        assert any(name.endswith("." + stage) for name in serialized_tasks), stage


def test_nightly_launch_plan_has_a_cron_schedule():
    assert nightly_retrain.schedule.cron_schedule.schedule == "0 3 * * *"
