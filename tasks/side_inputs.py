"""Side inputs: what some families need besides the split, built once per run and cached.

Thin tasks over ``pipeline.steps.build_side_inputs``, one per resource profile a side input's
spec names (``models.registry.SIDE_INPUTS``); ``tasks.train.train_models`` calls the one of each
side input a requested family's spec names, once, and hands the file to exactly those families.
"""

from __future__ import annotations

from flytekit import task
from flytekit.types.file import FlyteFile

from tasks.common import DATA_CACHE, DATA_RESOURCES, SMALL_GPU, Table, work_dir
from tasks.errors import user_errors


def build_side_input(name: str, train, valid_cases, items, users, text_encoder: str) -> FlyteFile:
    """The side input ``name`` of the training data (the user-item graph of the training part; the
    sentence embeddings of every item's text by ``text_encoder``, a sentence-transformers name or
    local path), saved as a file."""
    from models.device import pick_device
    from pipeline.steps import build_side_inputs
    from tasks.train import training_data

    with user_errors():
        built = build_side_inputs(
            [name], training_data(train, valid_cases, items, users), text_encoder=text_encoder, device=str(pick_device())
        )[name]
    path = work_dir(f"side-input-{name}") / f"{name}.pt"
    built.save(path)
    return FlyteFile(str(path))


# One task per resource profile a side input's spec can name (models.registry.SideInputSpec.resources).


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def side_input_on_cpu(
    name: str, train: Table, valid_cases: Table, items: Table, users: Table, text_encoder: str = "all-MiniLM-L6-v2"
) -> FlyteFile:
    """Build a side input whose spec runs on CPU nodes (the interaction graph)."""
    return build_side_input(name, train, valid_cases, items, users, text_encoder)


@task(cache=DATA_CACHE, retries=1, **SMALL_GPU)
def side_input_on_small_gpu(
    name: str, train: Table, valid_cases: Table, items: Table, users: Table, text_encoder: str = "all-MiniLM-L6-v2"
) -> FlyteFile:
    """Build a side input whose spec asks for a small GPU (the text encoder)."""
    return build_side_input(name, train, valid_cases, items, users, text_encoder)


SIDE_INPUT_TASKS = {"cpu": side_input_on_cpu, "small_gpu": side_input_on_small_gpu}
