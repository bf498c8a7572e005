"""The one pipeline's steps: what the wiring guarantees (no test case reaches a choice or the
ensemble), the champion on validation, the side-input cache, the registry check, and a whole
in-process run on tiny synthetic data."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from models.registry import FAMILIES, ConfigError, check_registry
from pipeline import steps
from pipeline.config import check_models
from pipeline.options import DataOptions, OptionsError
from pipeline.run import run

DATA = DataOptions(synthetic_users=80, data_seed=4, split_seed=4)


@pytest.fixture(scope="module")
def tiny_run():
    return run(DATA, ["popularity", "ease"], model_config={"ease": {"l2_grid": [50.0, 500.0]}})


def test_the_champion_is_the_best_on_validation_of_every_slice(tiny_run):
    assert set(tiny_run.validation) == {"popularity", "ease", "ensemble"}
    scores = {family: m["all"]["ndcg@10"] for family, m in tiny_run.validation.items()}
    assert tiny_run.champion == max(scores, key=scores.get)
    for metrics in tiny_run.validation.values():  # the held-out slices' validation cases are read
        assert {"all", "warm", "cold_user", "cold_item"} <= set(metrics)
    assert set(tiny_run.test) == {"popularity", "ease", "ensemble"}  # reported


def test_choose_champion_reads_only_what_it_is_given_and_keeps_the_first_of_equals():
    validation = {"a": {"all": {"ndcg@10": 0.2}}, "b": {"all": {"ndcg@10": 0.3}}, "c": {"all": {"ndcg@10": 0.3}}}
    assert steps.choose_champion(validation) == "b"
    with pytest.raises(ValueError, match=r"no validation ndcg@10 on slice 'all' for \['d'\]"):
        steps.choose_champion({**validation, "d": {"warm": {"ndcg@10": 1.0}}})


def test_the_split_step_gives_the_held_out_slices_validation_cases(tiny_run):
    split = tiny_run.split
    assert set(split.selection_cases["stage"]) == {"valid"}
    assert set(split.selection_cases["slice"]) == {"cold_user", "cold_item"}
    assert len(split.validation_cases) == len(split.data.stage("valid")) + len(split.selection_cases)
    assert not set(split.validation_cases["case_id"]) & set(split.test_cases["case_id"])
    standard = steps.split_tables(*_frames(tiny_run), replace(DATA, split_mode="standard"))
    assert standard.selection_cases.empty and list(standard.selection_cases.columns) == list(split.selection_cases.columns)


def _frames(tiny_run):
    frames = tiny_run.contracts.frames
    return frames["interactions"], frames["items"], frames["users"]


def test_member_scores_and_validation_metrics_refuse_test_cases(tiny_run):
    models, n_items = tiny_run.models, tiny_run.split.data.n_items
    mixed = pd.concat([tiny_run.split.validation_cases, tiny_run.split.test_cases.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match=r"score_members takes validation cases only, got stages \['test', 'valid'\]"):
        steps.score_members({k: models[k] for k in ("popularity", "ease")}, mixed, n_items)
    with pytest.raises(ValueError, match="validation_metrics takes validation cases only"):
        steps.validation_metrics(models["ease"], mixed, n_items)


def test_side_inputs_are_cached_by_what_they_are_built_from(tiny_run, tmp_path):
    training = tiny_run.split.data.training_data()
    record = {}
    first = steps.build_side_inputs(["interaction_graph"], training, cache_dir=tmp_path, record=record)
    assert record["interaction_graph"]["cache"] == "miss" and len(list(tmp_path.glob("*.pt"))) == 1
    again = steps.build_side_inputs(["interaction_graph"], training, cache_dir=tmp_path, record=record)
    assert record["interaction_graph"]["cache"] == "hit"
    assert again["interaction_graph"].edge_index.equal(first["interaction_graph"].edge_index)
    fewer = replace(training, train=training.train.iloc[:-5])
    steps.build_side_inputs(["interaction_graph"], fewer, cache_dir=tmp_path, record=record)
    assert record["interaction_graph"]["cache"] == "miss"  # other training rows, another key


def test_a_spec_naming_an_unknown_side_input_or_field_fails_the_input_check(monkeypatch):
    check_registry()
    spec = FAMILIES["content_knn"]
    monkeypatch.setitem(FAMILIES, "content_knn", replace(spec, side_inputs=("item_text_embedings",)))
    with pytest.raises(ConfigError, match=r"names unknown side input\(s\) \['item_text_embedings'\]"):
        check_models(["popularity"], {})
    monkeypatch.setitem(FAMILIES, "content_knn", replace(spec, sized_by=(("item_text_embeddings", "width"),)))
    with pytest.raises(ConfigError, match="sizes config field 'width'"):
        check_models(["popularity"], {})


@pytest.mark.parametrize(
    "options, message",
    [
        (DataOptions(source="parquet"), "unknown source 'parquet'; known: synthetic, movielens, generic, movielens-download"),
        (DataOptions(split_mode="loo"), "unknown split mode 'loo'; known: pipeline, standard"),
        (DataOptions(source="generic"), "source generic needs a path"),
        (DataOptions(synthetic_users=-1), "synthetic_users must be >= 1"),
    ],
)
def test_data_options_name_what_cannot_work(options, message):
    with pytest.raises(OptionsError, match=message):
        options.check()
