"""The retraining workflow through the real `pyflyte run`: a first retrain registers every model,
the next week's warm-starts from those versions and is gated on fresh validation cases, every
version carries its lineage, and a re-run of the same week changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.workflows.conftest import output, pyflyte

DATA = '{"synthetic_users": 150}'
TINY = """
popularity: {}
ease: {l2_grid: [100.0]}
sasrec: {dim: 16, n_layers: 1, max_len: 20, max_epochs: 3, patience: 2, num_threads: 1}
"""


def retrain(env, config, cutoff):
    run = pyflyte(env, "retrain", "--data", DATA, "--cutoff", cutoff, "--model_config", str(config), script="workflows/retrain.py")
    assert run.returncode == 0, output(run)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def weeks(tmp_path_factory):
    from tests.workflows.conftest import sandbox_env

    tmp = tmp_path_factory.mktemp("retrain")
    env = sandbox_env(tmp)
    config = tmp / "tiny.yaml"
    config.write_text(TINY)
    first = retrain(env, config, "2023-09-04T00:00:00")
    second = retrain(env, config, "2023-09-11T00:00:00")
    again = retrain(env, config, "2023-09-11T00:00:00")
    return env, first, second, again


def client(env):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def test_the_first_retrain_registers_every_model_as_champion(weeks):
    _, first, _, _ = weeks
    assert {d["name"] for d in first} == {"cinesync-popularity", "cinesync-ease", "cinesync-sasrec", "cinesync-champion"}
    assert all(d["promoted"] and d["version"] == "1" for d in first)


def test_the_next_week_warm_starts_is_gated_on_fresh_cases_and_keeps_its_lineage(weeks):
    env, _, second, _ = weeks
    registry = client(env)
    for decision in second:
        version = registry.get_model_version(decision["name"], decision["version"])
        tags = version.tags
        assert decision["version"] == "2" and tags["baseline_version"] == "1"
        assert tags["cutoff"] == "2023-09-11T00:00:00Z" and tags["data_window"].endswith("2023-09-11T00:00:00Z)")
        assert tags["dataset_digest"] and tags["drift"] and "on" in tags["gate.reason"]
        # the gate: promoted exactly when the candidate beats the champion re-scored on the same cases
        assert decision["promoted"] == (float(tags["gate.delta"]) > 0), tags["gate.reason"]
        aliases = {k: str(v) for k, v in registry.get_registered_model(decision["name"]).aliases.items()}
        if decision["promoted"]:
            assert aliases["champion"] == "2" and aliases["previous_champion"] == "1"
            history = json.loads(registry.get_registered_model(decision["name"]).tags["champion_history"])
            assert [entry["version"] for entry in history] == ["1", "2"]
        else:
            assert aliases["champion"] == "1" and aliases["challenger"] == "2"
    tags = {d["name"]: registry.get_model_version(d["name"], d["version"]).tags for d in second}
    assert tags["cinesync-sasrec"]["warm_started_from"] == "v1"  # its own family's champion
    assert tags["cinesync-popularity"]["warm_started_from"] == "scratch"  # counts simply refit


def test_a_rerun_of_the_same_week_changes_nothing(weeks):
    env, _, second, again = weeks
    assert again == second
    registry = client(env)
    for decision in second:
        assert sorted(str(v.version) for v in registry.search_model_versions(f"name = '{decision['name']}'")) == ["1", "2"]
