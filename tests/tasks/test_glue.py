"""The tasks' own glue: config resolution, input checks, metric names, tables and plots."""

import json

import pytest

from tasks.checks import check_run_inputs
from tasks.common import ModelEvaluation, hash_frame
from tasks.plots import learning_curve, results_table
from tasks.tracking import _key
from pipeline.config import load_model_config
from pipeline.options import DataOptions


def test_bundled_laptop_config_overrides_sasrec_fields():
    config = load_model_config("laptop")
    assert config["sasrec"]["max_len"] == 50


def test_config_file_path_and_inline_yaml_give_the_same_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sasrec:\n  dim: 32\n")
    assert load_model_config(str(path)) == load_model_config("sasrec: {dim: 32}") == {"sasrec": {"dim": 32}}


def test_empty_config_means_code_defaults():
    assert load_model_config("") == {}


def test_config_naming_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['gpt5'\]"):
        load_model_config("gpt5: {dim: 3}")


def test_config_that_is_not_a_mapping_is_refused():
    with pytest.raises(ValueError, match="must map family names"):
        load_model_config("just-a-word")


def test_run_inputs_resolve_the_config_to_its_content():
    checked = check_run_inputs(models=["sasrec"], model_config="laptop", data=DataOptions(split_mode="standard"))
    assert checked.models == ["sasrec"]
    assert load_model_config(checked.model_config) == load_model_config("laptop")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"models": ["nope"]}, r"unknown model\(s\) \['nope'\]"),
        ({"models": []}, r"unknown model\(s\) \(none given\)"),
        ({"data": DataOptions(split_mode="random")}, "unknown split mode 'random'; known: pipeline, standard"),
        ({"data": DataOptions(source="kaggle")}, "unknown source 'kaggle'; known: synthetic, movielens"),
        ({"data": DataOptions(source="movielens")}, "source movielens needs a path"),
        ({"data": DataOptions(path="/data")}, "source synthetic reads no path"),
        ({"data": DataOptions(synthetic_users=0)}, "synthetic_users must be >= 1, got 0"),
        ({"data": DataOptions(min_history_length=0)}, "min_history_length must be >= 1, got 0"),
    ],
)
def test_run_inputs_name_what_is_unknown(kwargs, message):
    inputs = {"models": ["sasrec"], "model_config": "", "data": DataOptions(), **kwargs}
    with pytest.raises(ValueError, match=message):
        check_run_inputs(**inputs)


def test_stage_workflows_check_every_data_option_too():
    from tasks.checks import check_data_inputs

    assert check_data_inputs(data=DataOptions(split_mode="standard")) == DataOptions(split_mode="standard")
    with pytest.raises(ValueError, match="unknown split mode 'random'"):
        check_data_inputs(data=DataOptions(split_mode="random"))


def test_metric_keys_are_valid_mlflow_names():
    assert _key("activity:201+") == "activity/201plus"
    assert _key("ndcg@10") == "ndcg_at_10"


def test_frame_hash_follows_content_not_identity():
    import pandas as pd

    a = pd.DataFrame({"x": [1, 2], "h": [[1], [2, 3]]})
    assert hash_frame(a) == hash_frame(a.copy())
    assert hash_frame(a) != hash_frame(a.assign(x=[1, 3]))


def _report(values):
    return {"epochs": [{"epoch": i, "train_loss": 5 - i, "valid": {"ndcg@10": v}, "seconds": 1.0} for i, v in enumerate(values)],
            "best_epoch": 1, "best_valid": {"ndcg@10": max(values)}}


def test_results_table_has_a_row_per_model_and_slice(tmp_path):
    metrics = {"all": {"hr@10": 0.5, "ndcg@10": 0.25, "n_cases": 4}, "warm": {"hr@10": 1.0, "ndcg@10": 0.5, "n_cases": 2}}
    evaluation = ModelEvaluation(family="sasrec", metrics_json=json.dumps(metrics), predictions=str(tmp_path), eval_seconds=1.0)
    table = results_table([evaluation], {"sasrec": _report([0.1, 0.2])}, {"sasrec": 12.34})
    assert list(table["slice"]) == ["all", "warm"]
    assert table.loc[0, "best_valid_ndcg@10"] == 0.2 and table.loc[0, "train_seconds"] == 12.3


def test_learning_curve_is_written_as_png(tmp_path):
    path = learning_curve(_report([0.1, 0.3, 0.2]), "sasrec", tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
