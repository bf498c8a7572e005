"""One retrain and its successor in process (pipeline.retrain): warm starts from the previous
week's models, the gate on the same fresh cases, and a drifted window stopped before training."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from pipeline import steps
from pipeline.drift import UnseenValuesError
from pipeline.options import DataOptions
from pipeline.retrain import retrain

DATA = DataOptions(synthetic_users=150)
TINY = {"ease": {"l2_grid": [100.0]}, "sasrec": {"dim": 16, "n_layers": 1, "max_len": 20, "max_epochs": 3, "patience": 2, "num_threads": 1}}
FIRST, SECOND = datetime(2023, 9, 4), datetime(2023, 9, 11)


@pytest.fixture(scope="module")
def tables():
    return steps.read_tables(DATA, progress=False)


@pytest.fixture(scope="module")
def first(tables):
    return retrain(tables, DATA, FIRST, ["popularity", "ease", "sasrec"], model_config=TINY, device="cpu")


def test_the_first_retrain_serves_its_candidates_ungated(first):
    assert first.gates == {"popularity": None, "ease": None, "sasrec": None, "champion": None}
    assert first.served["champion"].family == first.champion
    assert set(first.warm_started.values()) == {"scratch"}
    assert (first.split.cases["stage"] == "valid").all() and first.drift is None


def test_the_next_week_warm_starts_and_serves_what_the_gate_chose(tables, first):
    out = retrain(tables, DATA, SECOND, ["popularity", "ease", "sasrec"], model_config=TINY, previous=first.as_previous(), device="cpu")
    assert out.warm_started == {"popularity": "scratch", "ease": "scratch", "sasrec": first.label}
    assert out.fitted["sasrec"].warm_started.item_rows_kept == out.split.n_items  # the item table did not change
    assert out.drift is not None and out.drift.current["n_events"] > 0
    for name, gate in out.gates.items():
        family = out.champion if name == "champion" else name
        assert gate.n_cases == len(out.split.cases)
        assert gate.candidate_mean == pytest.approx(float(np.mean(out.per_case[family])))
        assert gate.promote == (gate.delta > 0)
        expected = out.fitted[family].model if gate.promote else first.served[name].model
        assert out.served[name].model is expected  # a worse candidate never serves
    scratch = retrain(tables, DATA, SECOND, ["sasrec"], model_config=TINY, previous=first.as_previous(), warm_start=False, device="cpu")
    assert scratch.warm_started == {"sasrec": "scratch"}


def test_a_rating_value_the_reference_never_had_stops_the_retrain_before_training(tables, first):
    interactions = tables.interactions.copy()
    late = np.flatnonzero(interactions["timestamp"].to_numpy() >= int(FIRST.timestamp()) + 3600)[:3]
    interactions.loc[late, "rating"] = 3.5  # half stars: whole stars only until the previous cutoff
    drifted = replace(tables, interactions=interactions, checksum=tables.checksum + "-drifted")
    with pytest.raises(UnseenValuesError, match=r"rating.*3\.5"):
        retrain(drifted, DATA, SECOND, ["popularity"], previous=first.as_previous(), device="cpu")


def test_a_retrain_resumes_its_training_from_the_checkpoints_it_left(tables, first, tmp_path):
    import torch

    folders = []

    def checkpoints(family, inputs):
        folder = tmp_path / f"{family}-{abs(hash(str(sorted(inputs.items()))))}"
        folders.append(folder)
        return folder

    args = dict(model_config=TINY, previous=first.as_previous(), device="cpu", checkpoints=checkpoints)
    once = retrain(tables, DATA, SECOND, ["sasrec"], **args)
    assert (folders[0] / "checkpoint.pt").exists()
    again = retrain(tables, DATA, SECOND, ["sasrec"], **args)  # as after a kill at the end of training
    assert folders[0] == folders[1]  # the same inputs find the same folder
    assert again.validation == once.validation
    for a, b in zip(once.fitted["sasrec"].model.state_dict().values(), again.fitted["sasrec"].model.state_dict().values()):
        assert torch.equal(a, b)
    assert [e.epoch for e in again.fitted["sasrec"].report.epochs] == [e.epoch for e in once.fitted["sasrec"].report.epochs]
