"""The champion gate against a real SQLite MLflow registry: who gets the alias, and why."""

from __future__ import annotations

import json
from dataclasses import asdict

import mlflow
import pytest

from tasks.promotion import Candidate, register_and_promote

CHECKSUM = "ab" * 32


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: list[str], params=None) -> list[str]:
        return model_input




def candidate(family: str, ndcg: float, pyfunc: bool = False, **slices: float) -> Candidate:
    """A run with a logged model named "model" (a tiny servable pyfunc if asked, else an empty
    one: registering needs no files) and validation metrics: ``all`` plus the given slices'
    ndcg@10. Its test metrics are the opposite ranking (1 - each number): a choice that read them
    would pick the other way."""
    with mlflow.start_run(run_name=family) as run:
        if pyfunc:
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
        else:
            mlflow.finalize_logged_model(mlflow.initialize_logged_model("model", run.info.run_id).model_id, "READY")
    metrics = {"all": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, **{s: {"ndcg@10": v} for s, v in slices.items()}}
    test = {s: {k: 1.0 - v for k, v in m.items()} for s, m in metrics.items()}
    return Candidate(family, f"runs:/{run.info.run_id}/model", run.info.run_id, metrics, test)


def promote(client, candidates, key, **kwargs):
    kwargs = {"dataset_checksum": CHECKSUM, "protocol": "pipeline", **kwargs}
    return {d.name: d for d in register_and_promote(client, candidates=candidates, execution_key=key, **kwargs)}


def aliases(client, name):
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_first_models_become_champions_and_the_best_one_also_of_cinesync_champion(client):
    sasrec, ensemble = candidate("sasrec", 0.30, warm=0.32), candidate("ensemble", 0.35, pyfunc=True, warm=0.36)
    decisions = promote(client, [sasrec, ensemble], "exec-1")
    assert list(decisions) == ["cinesync-sasrec", "cinesync-ensemble", "cinesync-champion"]
    assert all(d.promoted and d.version == "1" and d.previous_champion is None for d in decisions.values())
    assert "no champion yet" in decisions["cinesync-champion"].reason
    json.dumps([asdict(d) for d in decisions.values()])  # JSON-able
    version = client.get_model_version("cinesync-champion", "1")
    assert version.run_id == ensemble.run_id and aliases(client, "cinesync-champion") == {"champion": "1"}
    assert version.tags["family"] == "ensemble" and version.tags["dataset_checksum"] == CHECKSUM
    assert version.tags["protocol"] == "pipeline" and version.tags["execution_key"] == "exec-1"
    assert json.loads(version.tags["validation_metrics"]) == ensemble.validation
    assert json.loads(version.tags["test_metrics"]) == ensemble.test  # recorded, for the report
    assert client.get_run(ensemble.run_id).data.tags["promotion.cinesync-champion"].startswith("v1 champion: first version")
    served = mlflow.pyfunc.load_model("models:/cinesync-champion@champion")
    assert served.predict(["tt0111161"]) == ["tt0111161"]


def test_better_model_takes_the_alias_and_the_old_version_keeps_none(client):
    promote(client, [candidate("sasrec", 0.30, warm=0.32, cold_item=0.10)], "exec-1")
    decision = promote(client, [candidate("sasrec", 0.33, warm=0.33, cold_item=0.095)], "exec-2")["cinesync-sasrec"]
    assert decision.promoted and decision.version == "2" and decision.previous_champion == "1"
    assert "gain +0.0300" in decision.reason and "no slice dropped more than 0.0100" in decision.reason
    assert aliases(client, "cinesync-sasrec") == {"champion": "2"}
    assert client.get_model_version("cinesync-sasrec", "1").aliases == []


def test_worse_model_becomes_challenger_and_its_run_records_why(client):
    promote(client, [candidate("sasrec", 0.30)], "exec-1")
    worse = candidate("sasrec", 0.28)
    decision = promote(client, [worse], "exec-2")["cinesync-sasrec"]
    assert not decision.promoted and decision.previous_champion == "1"
    assert decision.reason == "validation ndcg@10 on all 0.2800 vs champion v1's 0.3000 (gain -0.0200, margin 0.0000): not better by the margin"
    assert aliases(client, "cinesync-sasrec") == {"champion": "1", "challenger": "2"}
    assert client.get_run(worse.run_id).data.tags["promotion.cinesync-sasrec"] == f"v2 challenger: {decision.reason}"
    assert client.get_model_version("cinesync-sasrec", "2").tags["promotion.reason"] == decision.reason


def test_a_slice_regressing_past_the_tolerance_blocks_promotion_even_if_all_improves(client):
    promote(client, [candidate("sasrec", 0.30, warm=0.32, cold_item=0.12)], "exec-1")
    decision = promote(client, [candidate("sasrec", 0.34, warm=0.36, cold_item=0.09)], "exec-2")["cinesync-sasrec"]
    assert not decision.promoted
    assert "slice cold_item dropped 0.0300 (0.1200 -> 0.0900), past the tolerance 0.0100" in decision.reason
    assert "warm" not in decision.reason
    assert aliases(client, "cinesync-sasrec") == {"champion": "1", "challenger": "2"}


def test_rerunning_the_same_execution_registers_nothing_and_moves_no_alias(client):
    first_run = [candidate("sasrec", 0.30), candidate("ease", 0.31)]
    second_run = [candidate("sasrec", 0.33), candidate("ease", 0.29)]
    first, second = promote(client, first_run, "exec-1"), promote(client, second_run, "exec-2")
    assert promote(client, second_run, "exec-2") == second
    assert not second["cinesync-ease"].promoted and second["cinesync-sasrec"].promoted
    assert promote(client, first_run, "exec-1") == first
    assert sorted(str(v.version) for v in client.search_model_versions("name = 'cinesync-sasrec'")) == ["1", "2"]
    assert aliases(client, "cinesync-sasrec") == {"champion": "2"}
    assert aliases(client, "cinesync-ease") == {"champion": "1", "challenger": "2"}
    assert aliases(client, "cinesync-champion") == {"champion": "2"}  # sasrec 0.33 beat ease 0.31


@pytest.mark.parametrize("failing_call", ["set_registered_model_alias", "set_tag"])
def test_a_retry_after_a_crash_part_way_finishes_the_same_version(client, monkeypatch, failing_call):
    promote(client, [candidate("sasrec", 0.30)], "exec-1")
    better = candidate("sasrec", 0.33)

    def store_gone(*args):
        raise ConnectionError("store gone")

    with monkeypatch.context() as patch:
        patch.setattr(client, failing_call, store_gone)
        with pytest.raises(ConnectionError):
            promote(client, [better], "exec-2")
    champion = "1" if failing_call == "set_registered_model_alias" else "2"
    assert aliases(client, "cinesync-sasrec") == {"champion": champion}  # a champion serves throughout
    decision = promote(client, [better], "exec-2")["cinesync-sasrec"]
    assert decision.promoted and decision.version == "2"
    assert len(client.search_model_versions("name = 'cinesync-sasrec'")) == 2
    assert aliases(client, "cinesync-sasrec") == {"champion": "2"}


def test_a_different_dataset_checksum_is_not_compared(client):
    promote(client, [candidate("sasrec", 0.30)], "exec-1")
    decision = promote(client, [candidate("sasrec", 0.90)], "exec-2", dataset_checksum="cd" * 32)["cinesync-sasrec"]
    assert not decision.promoted
    assert decision.reason == (
        "different dataset checksum: no comparison (champion v1 was measured on abababababab, this version on cdcdcdcdcdcd)"
    )
    assert aliases(client, "cinesync-sasrec") == {"champion": "1", "challenger": "2"}


def test_a_different_protocol_is_not_compared(client):
    promote(client, [candidate("sasrec", 0.30)], "exec-1")
    decision = promote(client, [candidate("sasrec", 0.90)], "exec-2", protocol="standard")["cinesync-sasrec"]
    assert not decision.promoted
    assert decision.reason.startswith("different protocol: no comparison (champion v1 under 'pipeline'")


def test_the_margin_must_be_met(client):
    promote(client, [candidate("sasrec", 0.30)], "exec-1")
    short = promote(client, [candidate("sasrec", 0.305)], "exec-2", margin=0.01)["cinesync-sasrec"]
    assert not short.promoted and "not better by the margin" in short.reason
    exact = promote(client, [candidate("sasrec", 0.31)], "exec-3", margin=0.01)["cinesync-sasrec"]
    assert exact.promoted and exact.previous_champion == "1"


def test_registers_through_the_given_client_whatever_the_global_tracking_uri(client, tmp_path):
    sasrec = candidate("sasrec", 0.30)
    sasrec.model_uri = mlflow.search_logged_models(output_format="list")[0].model_uri  # models:/m-...
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    promote(client, [sasrec], "exec-1")
    version = client.get_model_version("cinesync-sasrec", "1")
    assert version.run_id == sasrec.run_id and version.source.endswith("/artifacts")


def test_no_choice_reads_a_test_metric(client, monkeypatch):
    """The champion and the gate with every test number poisoned: a spy on the test metrics of
    every candidate records any read, and the decisions are those the validation numbers give."""
    reads = []

    class Spy(dict):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

        def get(self, key, default=None):
            reads.append(key)
            return super().get(key, default)

    first = [candidate("sasrec", 0.30, warm=0.30), candidate("ease", 0.20, warm=0.20)]
    better = [candidate("sasrec", 0.32, warm=0.31), candidate("ease", 0.19, warm=0.20)]
    for c in first + better:
        c.test = Spy({s: Spy(m) for s, m in c.test.items()})
    promote(client, first, "exec-1")
    decisions = promote(client, better, "exec-2")
    assert reads == []  # serialising them for the version tag reads no key
    assert decisions["cinesync-sasrec"].promoted and not decisions["cinesync-ease"].promoted
    champion = client.get_model_version("cinesync-champion", decisions["cinesync-champion"].version)
    assert champion.tags["family"] == "sasrec"  # best on validation; its test numbers are the worse
    assert decisions["cinesync-champion"].promoted
