"""The plug-in point: a family added through its model class and its spec line alone runs end to
end in the real workflow (its logged pyfunc served back), through the Python API and through the
serving benchmark, sees no test case, and gets the side inputs its spec names, computed once for
all who need them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

import models.graph.interaction_graph as interaction_graph_module
from models.data import HistoryBatch, TrainingData
from models.graph.interaction_graph import InteractionGraph
from models.interface import EpochLog, FitReport
from models.registry import FAMILIES, FamilySpec
from pipeline import steps
from pipeline.options import DataOptions
from workflows.full import full_pipeline, prepared_data, train_only


@dataclass(frozen=True)
class SpyConfig:
    n_items: int
    record_to: str = ""  # where fit writes what it was given
    seed: int = 0


class Spy(nn.Module):
    """A toy family: item counts of the training part, plus a record of everything fit saw."""

    history_length = 1

    def __init__(self, config: SpyConfig):
        super().__init__()
        self.config = config
        self.register_buffer("counts", torch.zeros(config.n_items + 1))

    def fit(self, data, device, *, side_inputs=None, progress=True, on_epoch=None, checkpoint_dir=None) -> FitReport:
        started = time.perf_counter()
        graph = (side_inputs or {}).get("interaction_graph")
        record = {
            "data_type": type(data).__name__,
            "fields": sorted(vars(data)),
            "valid_stages": sorted(set(data.valid_cases["stage"])),
            "valid_case_ids": data.valid_cases["case_id"].tolist(),
            "train_events": data.train[["user_idx", "item_idx", "timestamp"]].values.tolist(),
            "side_inputs": sorted(side_inputs or {}),
            "graph_pairs": graph.n_pairs if isinstance(graph, InteractionGraph) else None,
        }
        Path(self.config.record_to).write_text(json.dumps(record))
        counts = np.bincount(data.train["item_idx"].to_numpy(np.int64), minlength=self.config.n_items + 1)
        self.counts.copy_(torch.as_tensor(counts[: self.config.n_items + 1], dtype=torch.float32))
        log = EpochLog(0, 0.0, {"ndcg@10": 0.0}, time.perf_counter() - started)
        return FitReport([log], 0, dict(log.valid), log.seconds)

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.counts.unsqueeze(0).repeat(batch.items.shape[0], 1)


@pytest.fixture
def spy_family(monkeypatch, tmp_path):
    """Register the toy family through its spec alone (cpu node, the interaction graph as side input)."""
    monkeypatch.setitem(FAMILIES, "spy", FamilySpec("spy", SpyConfig, Spy, "cpu", side_inputs=("interaction_graph",)))
    monkeypatch.setenv("CINESYNC_HOME", str(tmp_path / "cinesync"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "spy.json"


DATA = dict(data=DataOptions(synthetic_users=80, data_seed=5, split_seed=5))


def test_a_family_added_by_its_spec_alone_runs_end_to_end(spy_family):
    config = f"spy: {{record_to: {spy_family}}}"
    table = full_pipeline(**DATA, models=["popularity", "spy"], model_config=config).frame
    assert set(table["model"]) == {"popularity", "spy", "ensemble"}
    spy = table[(table["model"] == "spy") & (table["slice"] == "all")]
    popularity = table[(table["model"] == "popularity") & (table["slice"] == "all")]
    assert float(spy["ndcg@10"].iloc[0]) == pytest.approx(float(popularity["ndcg@10"].iloc[0]))  # same counts
    # the pyfunc the run logged for it, loaded back as `mlflow models serve` loads it, answers
    (run,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("cinesync").experiment_id], "tags.model_family = 'spy'"
    )
    assert_serves_the_most_counted_unseen_items(mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/spy"))


def assert_serves_the_most_counted_unseen_items(served, k: int = 5) -> None:
    """A served toy model's top-``k`` for a history of three items: the ``k`` highest training
    counts among the items not in it (ties in any order), in raw ids."""
    recommender = served.unwrap_python_model()
    raw, counts = recommender.raw_ids, recommender.model.counts.clone()
    history = raw[1:4].tolist()
    answer = served.predict(pd.DataFrame({"history": [history]}), params={"k": k})
    (items,) = answer["items"]
    index_of = {int(r): i for i, r in enumerate(raw) if i}
    counts[[0, *(index_of[h] for h in history)]] = float("-inf")
    assert len(items) == k and not set(items) & set(history)
    assert sorted(counts[[index_of[i] for i in items]].tolist(), reverse=True) == counts.topk(k).values.tolist()


def test_a_family_added_by_its_spec_alone_trains_through_the_python_api(spy_family):
    from models.api import split, train

    interactions = steps.read_tables(DATA["data"], progress=False).interactions
    data = split(interactions[["user_id", "item_id", "timestamp"]])
    model = train("spy", data, record_to=str(spy_family))
    seen = json.loads(spy_family.read_text())
    assert seen["data_type"] == "TrainingData" and seen["side_inputs"] == ["interaction_graph"]
    history = data.items["item_id"].head(3).tolist()
    recommended = model.recommend(history, k=5)
    assert len(recommended) == 5 and not set(recommended) & set(history)
    assert 0.0 <= model.evaluate(data)["all"]["ndcg@10"] <= 1.0


def test_a_family_added_by_its_spec_alone_is_measured_by_the_serving_benchmark(spy_family, tmp_path):
    """The latency benchmark's in-process path: built (fitted by the pipeline's step, with the
    side inputs its spec names), logged as the pipeline logs it, loaded and timed."""
    from serving.benchmarks import latency

    options = replace(DATA["data"], split_mode="standard")
    tables = steps.read_tables(options, progress=False)
    frames = steps.check_contracts(tables, options).frames
    data = steps.split_tables(frames["interactions"], frames["items"], frames["users"], options).data
    models, reports, _ = latency.build_models(data, ["spy"], overrides={"spy": {"record_to": str(spy_family)}})
    assert json.loads(spy_family.read_text())["side_inputs"] == ["interaction_graph"]
    folder = tmp_path / "serving"
    folder.mkdir()
    example = data.items.sort_values("item_idx")["item_id"].head(3).astype(int).tolist()
    uris = latency.log_models(models, reports, data, folder, example)
    assert_serves_the_most_counted_unseen_items(mlflow.pyfunc.load_model(uris["spy"]))
    requests = latency.test_requests(data, 12)
    timed = latency.in_process(uris["spy"], "spy", requests, warmup=2, quiet={"max_load": float("inf"), "max_wait": 0})
    assert timed["pyfunc_predict"]["n"] == 10 and timed["model_score"]["n"] == 10 and not timed["traced_single_row"]


def test_training_sees_no_test_case(spy_family):
    train_only(**DATA, models=["spy"], model_config=f"spy: {{record_to: {spy_family}}}")
    seen = json.loads(spy_family.read_text())
    assert seen["data_type"] == "TrainingData" and "cases" not in seen["fields"]
    assert seen["valid_stages"] == ["valid"]
    test = prepared_data(**DATA).test_cases
    assert len(test) > 0
    assert not set(seen["valid_case_ids"]) & set(test["case_id"])
    train_events = {tuple(event) for event in seen["train_events"]}
    test_events = set(zip(test["user_idx"], test["target_item"], test["target_timestamp"]))
    assert not train_events & test_events  # no test target is a training interaction


def test_side_inputs_reach_only_the_families_that_name_them_and_are_computed_once(spy_family, monkeypatch):
    builds = []
    real = interaction_graph_module.build_interaction_graph

    def counting(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(interaction_graph_module, "build_interaction_graph", counting)
    config = f"spy: {{record_to: {spy_family}}}\nlightgcn: {{dim: 8, n_layers: 1, max_epochs: 1, batch_size: 256}}"
    trained = train_only(**DATA, models=["popularity", "spy", "lightgcn"], model_config=config)
    assert [t.family for t in trained] == ["popularity", "spy", "lightgcn"]
    assert len(builds) == 1  # one graph for the two families that name it
    seen = json.loads(spy_family.read_text())
    assert seen["side_inputs"] == ["interaction_graph"] and seen["graph_pairs"] > 0


def test_a_misspelled_config_field_fails_before_any_data_moves(spy_family, monkeypatch):
    ingested = []
    import data_contracts.sources as sources

    monkeypatch.setattr(sources, "read_source", lambda *a, **k: ingested.append(1))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) 'dimm' for model 'sasrec'; its fields: n_items, dim"):
        full_pipeline(**DATA, models=["popularity", "sasrec"], model_config="sasrec: {dimm: 64}")
    assert not ingested


def test_no_test_case_is_scored_for_the_ensemble_and_the_held_out_slices_are(spy_family, monkeypatch):
    """The ensemble's member scores and its fit see validation cases only, by the wiring: a spy on
    the member scorer records every case it is given during a whole run."""
    import models.member_scores as member_scores_module

    seen = []
    real = member_scores_module.member_scores

    def spy(models, cases, *args, **kwargs):
        seen.append(cases.copy())
        return real(models, cases, *args, **kwargs)

    monkeypatch.setattr(member_scores_module, "member_scores", spy)
    full_pipeline(**DATA, models=["popularity", "spy"], model_config=f"spy: {{record_to: {spy_family}}}")
    (cases,) = seen
    test = prepared_data(**DATA).test_cases
    assert set(cases["stage"]) == {"valid"}
    assert not set(cases["case_id"]) & set(test["case_id"])
    assert {"warm", "cold_user", "cold_item"} <= set(cases["slice"])  # the held-out slices' validation cases too
