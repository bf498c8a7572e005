"""The serialized DAG (what a cluster receives) asks for GPUs on training nodes only."""

from collections import OrderedDict

import pytest
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.python_function_task import PythonFunctionTask
from flytekit.tools.translator import get_serializable

from models.registry import FAMILIES, SIDE_INPUTS
from tasks.common import CPU_TRAINING, LARGE_GPU, SMALL_GPU
from tasks.side_inputs import SIDE_INPUT_TASKS
from tasks.train import TRAINING_TASKS
import workflows.full
from workflows.full import full_pipeline

SETTINGS = SerializationSettings(
    image_config=ImageConfig.auto_default_image(), project="cinesync", domain="development", version="test"
)


@pytest.fixture(scope="module")
def serialized_tasks():
    entities = OrderedDict()
    get_serializable(entities, SETTINGS, full_pipeline)
    for fanned_out in (*TRAINING_TASKS.values(), *SIDE_INPUT_TASKS.values()):  # the dynamic's, at run time
        get_serializable(entities, SETTINGS, fanned_out)
    return {entity.name: spec.template for entity, spec in entities.items() if isinstance(entity, PythonFunctionTask)}


def _requests(template) -> dict[str, str]:
    return {r.name: r.value for r in template.container.resources.requests}


def _limits(template) -> dict[str, str]:
    return {r.name: r.value for r in template.container.resources.limits}


GPU = 2  # flytekit.models.task.Resources.ResourceName.GPU


PROFILES = {"cpu": CPU_TRAINING, "small_gpu": SMALL_GPU, "large_gpu": LARGE_GPU}


@pytest.mark.parametrize("family", [name for name, spec in FAMILIES.items() if spec.trainable])
def test_every_family_trains_on_the_node_its_spec_names(serialized_tasks, family):
    """The dynamic sends a family to TRAINING_TASKS[spec.resources]: that task's serialized
    resources are the spec's, with a GPU and a named accelerator for the GPU profiles."""
    spec = FAMILIES[family]
    template = serialized_tasks[f"tasks.train.{TRAINING_TASKS[spec.resources].name.split('.')[-1]}"]
    profile = PROFILES[spec.resources]
    if "accelerator" in profile:
        assert _requests(template).get(GPU) == "1", family
        assert _limits(template).get(GPU) == "1", family
        assert template.extended_resources.gpu_accelerator.device == profile["accelerator"].to_flyte_idl().device
    else:
        assert GPU not in _requests(template) and GPU not in _limits(template), family
        assert not template.extended_resources or not template.extended_resources.HasField("gpu_accelerator")
    assert template.metadata.retries.retries >= 1, family
    assert template.metadata.discoverable and template.metadata.discovery_version, family


def test_one_training_task_per_resource_profile(serialized_tasks):
    training = {name for name in serialized_tasks if name.startswith("tasks.train.train_on_")}
    assert training == {"tasks.train.train_on_cpu", "tasks.train.train_on_small_gpu", "tasks.train.train_on_large_gpu"}
    assert {spec.resources for spec in FAMILIES.values()} <= set(TRAINING_TASKS)


@pytest.mark.parametrize("name", ["tasks.ingest.ingest", "tasks.validate.validate", "tasks.split.split"])
def test_data_tasks_declare_no_gpu_and_no_accelerator(serialized_tasks, name):
    template = serialized_tasks[name]
    assert GPU not in _requests(template)
    assert GPU not in _limits(template)
    assert not template.extended_resources or not template.extended_resources.HasField("gpu_accelerator")
    assert template.metadata.discoverable, "data tasks are cached"


@pytest.mark.parametrize("name", list(SIDE_INPUTS))
def test_each_side_input_is_built_on_the_node_its_spec_names(serialized_tasks, name):
    """The text encoder asks for a GPU and its accelerator; the graph of the training rows does not."""
    resources = SIDE_INPUTS[name].resources
    template = serialized_tasks[f"tasks.side_inputs.{SIDE_INPUT_TASKS[resources].name.split('.')[-1]}"]
    if resources == "cpu":
        assert GPU not in _requests(template) and GPU not in _limits(template), name
    else:
        assert _requests(template).get(GPU) == "1" and template.extended_resources.gpu_accelerator.device, name
    assert template.metadata.discoverable, "side inputs are cached"


def test_workflow_reads_like_the_design_diagram(serialized_tasks):
    stages = ("ingest", "validate", "split", "train_models", "score_members", "fit_ensemble", "evaluate_models",
              "track_in_mlflow", "promote_models")  # fmt: skip
    for stage in stages:
        assert any(name.endswith("." + stage) for name in serialized_tasks), stage


def test_no_launch_plan_reruns_the_full_pipeline_on_a_schedule():
    # the nightly plan retrained the same model on the same data; workflows/retrain.py schedules now
    from flytekit import LaunchPlan

    assert not [v for v in vars(workflows.full).values() if isinstance(v, LaunchPlan) and v.schedule is not None]
