"""Scheduled retraining against a real SQLite MLflow registry: the paired gate on fresh cases,
lineage on every version, champion history, and rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tasks.errors import UserError
from tasks.promotion import (
    MAX_TAG_VALUE,
    champion_history,
    main,
    paired_gate,
    register_retrain,
    rollback_champion,
)

NAME = "cinesync-champion"
REPO = Path(__file__).resolve().parents[2]




def scores(n: int = 400, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 0.2, n)


def logged_model() -> tuple[str, str]:
    """A run with an empty logged model named "model" (registering needs no files)."""
    with mlflow.start_run() as run:
        mlflow.finalize_logged_model(mlflow.initialize_logged_model("model", run.info.run_id).model_id, "READY")
    return f"runs:/{run.info.run_id}/model", run.info.run_id


def lineage(week: int, warm: str = "scratch") -> dict[str, str]:
    return {
        "cutoff": f"2024-01-{week:02d}T00:00:00",
        "data_window": f"[1995-01-09, 2024-01-{week:02d})",
        "dataset_digest": f"{week:012x}",
        "drift": "interactions +3.1%, new items 42",
        "warm_started_from": warm,
    }


def retrain(client, key, gate, baseline, week=1, warm="scratch"):
    uri, run_id = logged_model()
    return register_retrain(
        client, name=NAME, family="sasrec", model_uri=uri, run_id=run_id, lineage=lineage(week, warm),
        gate=gate, execution_key=key, baseline_version=baseline,
    )


def aliases(client, name=NAME):
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def better_gate(baseline="1"):
    champ = scores()
    return paired_gate(champ + 0.01, champ, champion_version=baseline)


def worse_gate(baseline="1"):
    champ = scores()
    return paired_gate(champ - 0.01, champ, champion_version=baseline)


# --- paired_gate ---------------------------------------------------------------------------


def test_a_worse_or_equal_candidate_is_never_promoted_whatever_the_margin():
    champ = scores()
    worse = paired_gate(champ - 0.005, champ, margin=-1.0)
    assert not worse.promote and worse.delta < 0
    assert "not better than the champion" in worse.reason
    equal = paired_gate(champ.copy(), champ, margin=-1.0)
    assert not equal.promote and equal.delta == 0.0


def test_a_better_candidate_is_promoted_and_the_margin_is_honoured():
    champ = scores()
    gate = paired_gate(champ + 0.01, champ, champion_version="v3")
    assert gate.promote and gate.delta == pytest.approx(0.01) and gate.n_cases == 400
    assert gate.candidate_mean == pytest.approx(champ.mean() + 0.01) and gate.champion_mean == pytest.approx(champ.mean())
    assert gate.reason.startswith(f"fresh validation NDCG@10 {champ.mean() + 0.01:.4f} vs champion v3's {champ.mean():.4f} on 400 cases: delta +0.0100 [95% CI ")
    assert gate.reason.endswith("margin 0.0000: promoted")
    assert paired_gate(champ + 0.01, champ, margin=0.01).promote  # an exact tie at the margin passes
    short = paired_gate(champ + 0.01, champ, margin=0.02)
    assert not short.promote and "short of the margin" in short.reason
    json.dumps(gate.to_dict())  # JSON-able


def test_the_interval_contains_delta_and_is_reproducible():
    rng = np.random.default_rng(7)
    champ = rng.uniform(0, 0.3, 300)
    cand = champ + rng.normal(0.003, 0.02, 300)
    a, b = paired_gate(cand, champ, seed=5), paired_gate(cand, champ, seed=5)
    assert a == b
    assert a.low < a.delta < a.high
    other = paired_gate(cand, champ, seed=6)
    assert (other.low, other.high) != (a.low, a.high) and other.delta == a.delta
    narrow = paired_gate(cand, champ, seed=5, confidence=0.5)
    assert a.low < narrow.low < narrow.high < a.high
    assert f"[95% CI {a.low:+.4f}, {a.high:+.4f}]" in a.reason and "[50% CI" in narrow.reason


def test_the_interval_is_paired_a_constant_shift_has_no_spread():
    champ = scores()
    gate = paired_gate(champ + 0.01, champ)
    assert gate.low == pytest.approx(0.01) and gate.high == pytest.approx(0.01)


def test_resampling_in_blocks_gives_the_same_interval_as_at_once():
    """Many cases are resampled a block of rows at a time (5000 cases: 838 resamples a block, so
    three blocks here); the numbers are those of one draw of all the indices."""
    champ, cand = scores(5000, 2), scores(5000, 3)
    gate = paired_gate(cand, champ, seed=9)
    diff = cand - champ
    means = diff[np.random.default_rng(9).integers(0, 5000, size=(2000, 5000))].mean(axis=1)
    assert (gate.low, gate.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


@pytest.mark.parametrize(
    "cand, champ, message",
    [
        ([0.1, 0.2], [0.1], "not aligned"),
        ([], [], "no validation cases"),
        ([0.1, float("nan")], [0.1, 0.2], "finite"),
        ([[0.1]], [[0.1]], "1-D"),
    ],
)
def test_misaligned_or_empty_scores_are_refused(cand, champ, message):
    with pytest.raises(ValueError, match=message):
        paired_gate(np.array(cand), np.array(champ))


# --- register_retrain ----------------------------------------------------------------------


def test_the_first_version_is_promoted_with_its_lineage(client):
    decision = retrain(client, "week-1", None, None)
    assert decision.promoted and decision.version == "1" and decision.previous_champion is None
    assert decision.reason == "first version: no champion yet"
    assert aliases(client) == {"champion": "1"}
    tags = client.get_model_version(NAME, "1").tags
    assert {k: tags[k] for k in lineage(1)} == lineage(1)
    assert tags["family"] == "sasrec" and tags["execution_key"] == "week-1" and tags["baseline_version"] == "none"
    assert tags["promotion.promoted"] == "true" and tags["promotion.applied"] == "true"
    assert not any(k.startswith("gate.") for k in tags)
    [entry] = champion_history(client, NAME)
    assert entry["version"] == "1" and entry["replaced"] is None and entry["execution_key"] == "week-1"
    assert entry["reason"] == "first version: no champion yet" and entry["at"].endswith("+00:00")


def test_a_better_candidate_is_promoted_and_the_old_champion_becomes_previous(client):
    retrain(client, "week-1", None, None)
    gate = better_gate("1")
    decision = retrain(client, "week-2", gate, "1", week=2, warm="v1")
    assert decision.promoted and decision.version == "2" and decision.previous_champion == "1"
    assert decision.reason == gate.reason
    assert aliases(client) == {"champion": "2", "previous_champion": "1"}
    tags = client.get_model_version(NAME, "2").tags
    assert tags["warm_started_from"] == "v1" and tags["baseline_version"] == "1"
    assert tags["gate.delta"] == f"{gate.delta:+.6f}" and tags["gate.n_cases"] == "400"
    assert tags["gate.interval"] == f"[{gate.low:+.6f}, {gate.high:+.6f}]" and tags["gate.reason"] == gate.reason
    assert json.loads(tags["promotion.gate"])["margin"] == 0.0
    history = champion_history(client, NAME)
    assert [(e["version"], e["replaced"], e["execution_key"]) for e in history] == [("1", None, "week-1"), ("2", "1", "week-2")]
    assert history[1]["reason"] == gate.reason


def test_a_worse_candidate_is_registered_as_challenger_with_its_lineage(client):
    retrain(client, "week-1", None, None)
    gate = worse_gate("1")
    decision = retrain(client, "week-2", gate, "1", week=2, warm="v1")
    assert not decision.promoted and decision.version == "2" and decision.previous_champion == "1"
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version(NAME, "2").tags
    assert {k: tags[k] for k in lineage(2, "v1")} == lineage(2, "v1")
    assert tags["promotion.promoted"] == "false" and tags["gate.reason"] == gate.reason
    assert "not promoted" in tags["promotion.reason"]
    assert len(champion_history(client, NAME)) == 1
    run_tag = client.get_run(client.get_model_version(NAME, "2").run_id).data.tags[f"promotion.{NAME}"]
    assert run_tag == f"v2 challenger: {gate.reason}"


def test_a_champion_moved_since_the_baseline_blocks_promotion(client):
    retrain(client, "week-1", None, None)
    retrain(client, "week-2", worse_gate("1"), "1", week=2)
    client.set_registered_model_alias(NAME, "champion", "2")  # moved by hand after week-3 re-scored v1
    decision = retrain(client, "week-3", better_gate("1"), "1", week=3)
    assert not decision.promoted and decision.version == "3"
    assert decision.reason == (
        "the champion moved from v1 to v2 since the candidate was compared: not promoted; re-run to compare with v2"
    )
    assert aliases(client) == {"champion": "2", "challenger": "3"}


def test_a_champion_appearing_after_a_first_run_scored_nothing_blocks_promotion(client):
    retrain(client, "week-1", None, None)
    decision = retrain(client, "week-1b", None, None)
    assert not decision.promoted and "moved from none to v1" in decision.reason
    assert aliases(client) == {"champion": "1", "challenger": "2"}


def test_rerunning_an_execution_registers_nothing_and_adds_no_history(client):
    retrain(client, "week-1", None, None)
    first = retrain(client, "week-2", better_gate("1"), "1", week=2)
    history = champion_history(client, NAME)
    again = retrain(client, "week-2", better_gate("1"), "1", week=2)
    assert again == first
    assert sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == ["1", "2"]
    assert champion_history(client, NAME) == history and len(history) == 2
    assert aliases(client) == {"champion": "2", "previous_champion": "1"}


@pytest.mark.parametrize("failing_alias", ["previous_champion", "champion"])
def test_a_retry_after_a_crash_part_way_finishes_the_same_version(client, monkeypatch, failing_alias):
    retrain(client, "week-1", None, None)
    uri, run_id = logged_model()
    kwargs = dict(name=NAME, family="sasrec", model_uri=uri, run_id=run_id, lineage=lineage(2),
                  gate=better_gate("1"), execution_key="week-2", baseline_version="1")
    real = client.set_registered_model_alias

    def store_gone(name, alias, version):
        if alias == failing_alias:
            raise ConnectionError("store gone")
        return real(name, alias, version)

    with monkeypatch.context() as patch:
        patch.setattr(client, "set_registered_model_alias", store_gone)
        with pytest.raises(ConnectionError):
            register_retrain(client, **kwargs)
    assert aliases(client)["champion"] == "1"  # a champion serves throughout
    decision = register_retrain(client, **kwargs)
    assert decision.promoted and decision.version == "2" and decision.previous_champion == "1"
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2
    assert aliases(client) == {"champion": "2", "previous_champion": "1"}
    assert [e["version"] for e in champion_history(client, NAME)] == ["1", "2"]


def test_inconsistent_arguments_are_refused(client):
    uri, run_id = logged_model()
    base = dict(name=NAME, family="sasrec", model_uri=uri, run_id=run_id, lineage=lineage(1), execution_key="k")
    with pytest.raises(UserError, match="pass both gate and baseline_version"):
        register_retrain(client, **base, gate=better_gate("1"), baseline_version=None)
    with pytest.raises(UserError, match="run against v1, not the baseline v2"):
        register_retrain(client, **base, gate=better_gate("1"), baseline_version="2")
    with pytest.raises(UserError, match="tag register_retrain writes itself"):
        register_retrain(client, **{**base, "lineage": {"family": "x"}}, gate=None, baseline_version=None)
    with pytest.raises(UserError, match="free of quotes"):
        register_retrain(client, **{**base, "execution_key": "it's"}, gate=None, baseline_version=None)
    assert client.search_model_versions(f"name = '{NAME}'") == []


def test_long_tag_values_are_truncated_and_history_stays_under_the_limit(client):
    uri, run_id = logged_model()
    long = {**lineage(1), "drift": "x" * 10_000}
    register_retrain(client, name=NAME, family="sasrec", model_uri=uri, run_id=run_id, lineage=long,
                     gate=None, execution_key="week-1", baseline_version=None)
    drift = client.get_model_version(NAME, "1").tags["drift"]
    assert len(drift) == MAX_TAG_VALUE and drift.endswith("...")
    retrain(client, "week-2", better_gate("1"), "1", week=2)
    for _ in range(30):  # rollbacks back and forth, each with a long reason
        rollback_champion(client, NAME, reason="r" * 1000)
    history = champion_history(client, NAME)
    assert len(client.get_registered_model(NAME).tags["champion_history"]) <= MAX_TAG_VALUE
    assert 1 < len(history) < 2 + 30 and history[-1]["reason"].endswith("...")  # the newest kept, some dropped
    assert history[0]["reason"] != "first version: no champion yet"  # the oldest entries went first
    assert len(history[-1]["reason"]) <= 300 and history[-1]["version"] == "2"  # 30 swaps: back to v2


# --- rollback -------------------------------------------------------------------------------


def test_rollback_restores_the_previous_champion_and_records_it(client):
    retrain(client, "week-1", None, None)
    retrain(client, "week-2", better_gate("1"), "1", week=2)
    decision = rollback_champion(client, NAME, reason="CTR fell 12% overnight")
    assert decision.promoted and decision.version == "1" and decision.previous_champion == "2"
    assert decision.reason == "rollback: v2 -> v1: CTR fell 12% overnight"
    assert aliases(client) == {"champion": "1", "previous_champion": "2"}
    history = champion_history(client, NAME)
    assert len(history) == 3 and history[-1]["version"] == "1" and history[-1]["replaced"] == "2"
    assert history[-1]["reason"].startswith("rollback: ") and history[-1]["execution_key"] is None
    assert "replaced by v1" in client.get_model_version(NAME, "2").tags["rollback.replaced"]
    assert "replacing v2" in client.get_model_version(NAME, "1").tags["rollback.restored"]
    served = client.get_model_version_by_alias(NAME, "champion")
    assert str(served.version) == "1"
    # a second rollback undoes the first
    assert rollback_champion(client, NAME).version == "2"
    assert aliases(client) == {"champion": "2", "previous_champion": "1"}
    assert [(e["version"], e["replaced"]) for e in champion_history(client, NAME)] == [
        ("1", None), ("2", "1"), ("1", "2"), ("2", "1"),  # every rollback recorded, even within a second
    ]


def test_rollback_to_a_named_version(client):
    retrain(client, "week-1", None, None)
    retrain(client, "week-2", better_gate("1"), "1", week=2)
    retrain(client, "week-3", better_gate("2"), "2", week=3)
    decision = rollback_champion(client, NAME, to_version="v1")
    assert decision.version == "1" and decision.previous_champion == "3"
    assert aliases(client) == {"champion": "1", "previous_champion": "3"}


def test_rollback_with_nothing_to_roll_back_is_a_user_error(client):
    with pytest.raises(UserError, match="no registered model"):
        rollback_champion(client, NAME)
    retrain(client, "week-1", None, None)
    with pytest.raises(UserError, match="no previous_champion"):
        rollback_champion(client, NAME)
    with pytest.raises(UserError, match="has no version '7'"):
        rollback_champion(client, NAME, to_version="7")
    with pytest.raises(UserError, match="already holds champion"):
        rollback_champion(client, NAME, to_version="1")
    client.create_registered_model("cinesync-ease")
    with pytest.raises(UserError, match="has no champion"):
        rollback_champion(client, "cinesync-ease")
    assert aliases(client) == {"champion": "1"} and len(champion_history(client, NAME)) == 1


# --- the command ------------------------------------------------------------------------------


def test_the_rollback_command(client, capsys):
    retrain(client, "week-1", None, None)
    retrain(client, "week-2", better_gate("1"), "1", week=2)
    assert main(["rollback", "--reason", "bad week"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["cinesync-champion: champion v2 -> v1, previous_champion now v2 (rollback: v2 -> v1: bad week)"]
    assert aliases(client) == {"champion": "1", "previous_champion": "2"}
    assert main(["rollback", "--name", NAME, "--to", "2"]) == 0
    assert aliases(client) == {"champion": "2", "previous_champion": "1"}
    assert main(["rollback", "--to", "9"]) == 1
    assert "Error: rollback: cinesync-champion has no version '9'" in capsys.readouterr().err


def test_the_command_refuses_a_missing_store_without_creating_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert main(["rollback"]) == 1
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere.db").exists()


def test_the_command_runs_as_a_module(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'nowhere.db'}"}
    done = subprocess.run([sys.executable, "-m", "tasks.promotion", "rollback"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no MLflow store at" in done.stderr
