"""Every list of families is the registry's (models.registry.FAMILIES): the README's table of
families, the laptop config, and the tiny sizes every test builds a family at. A family added by
its model file and its spec line is picked up by every test, the serving benchmark and the
pipeline with no other edit; these tests fail, naming it, where its documentation or its
laptop size is missing, or where the test sizes' rule cannot make it tiny."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from models.registry import FAMILIES, build_model, trainable_families
from pipeline.config import load_model_config
from tests.conftest import NOT_SIZES, TINY_LIMIT, TINY_SIZES, tiny_config

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = {"cpu": "CPU", "small_gpu": "small GPU", "large_gpu": "large GPU"}


def readme_family_rows() -> dict[str, list[str]]:
    """family -> the cells of its row in the README's table of model families, in table order."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| family | file | trains on | side inputs |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_readme_table_has_a_row_for_every_family_true_to_its_spec():
    rows = readme_family_rows()
    assert list(rows) == trainable_families(), "README's table of model families: one row per trainable family, in registry order"
    for family, (file, resources, side_inputs) in rows.items():
        spec = FAMILIES[family]
        module = spec.config_class if isinstance(spec.config_class, str) else spec.config.__module__
        path = module.partition(":")[0].replace(".", "/") + ".py"
        assert file.startswith(f"`{path}`"), (family, file)
        assert resources == RESOURCES[spec.resources], (family, resources)
        named = {name for name in ("interaction_graph", "item_text_embeddings") if name.replace("_", " ") in side_inputs}
        assert named == set(spec.side_inputs), (family, side_inputs)


def test_the_laptop_config_names_every_trainable_family():
    """``workflows/configs/laptop.yaml`` has a key for every trainable family: its laptop sizes,
    or ``{}`` where the code defaults suit a laptop (said there, not left out unnoticed)."""
    laptop = load_model_config("laptop")
    assert sorted(laptop) == sorted(trainable_families())


@pytest.mark.parametrize("family", trainable_families())
def test_every_family_can_be_made_tiny(family):
    """``tests.conftest.tiny_config`` sets every integer field over ``TINY_LIMIT`` (by the rule,
    ``TINY_SIZES``, or to ``TINY_LIMIT`` or less) except the few that size neither the model nor
    its training (``NOT_SIZES``), and the model it builds is small. A family with a size field the rule does not know fails here: name the field in
    ``TINY_SIZES`` (or, for one family's value, ``TINY_SPECIAL``)."""
    model = build_model(family, 60, tiny_config(family, side_input_width=8), n_users=60)
    config = model.config
    big = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if type(getattr(config, f.name)) is int and getattr(config, f.name) > TINY_LIMIT
        and f.name not in (*TINY_SIZES, *NOT_SIZES, "n_items", "n_users")
    }
    assert not big, f"{family}: fields the tiny rule does not shrink: {big}"
    size = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    assert size < 50_000, f"{family}: {size} parameters and buffers at its tiny config"


def test_tiny_config_takes_only_the_fields_a_family_has_and_leaves_side_input_widths_to_the_run():
    assert tiny_config("popularity") == {}
    assert "text_dim" not in tiny_config("graphsage") and tiny_config("graphsage", side_input_width=8)["text_dim"] == 8
    assert "dim" not in tiny_config("content_knn")  # its vectors are the text embeddings: the run sizes them
    assert tiny_config("sasrec", max_len=6, encoder="x")["max_len"] == 6 and "encoder" not in tiny_config("sasrec", encoder="x")
    assert tiny_config("t5_hybrid", encoder="x")["encoder"] == "x"
