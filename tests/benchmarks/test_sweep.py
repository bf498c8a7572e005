"""sweep.py end to end on a tiny MovieLens-1M-format folder: choice by validation, no re-runs."""

import json

import pytest

from benchmarks import sweep
from tests.benchmarks.test_baselines import _write_ml1m


def _run(monkeypatch, tmp_path, grid):
    monkeypatch.setattr(
        "sys.argv",
        ["sweep.py", "--path", str(tmp_path / "ml"), "--name", "tiny", "--family", "sasrec", "--device", "cpu",
         "--base", json.dumps({"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 2}),
         "--grid", json.dumps(grid), "--out", str(tmp_path / "out")],
    )
    sweep.main()
    return json.loads((tmp_path / "out" / "sweep-sasrec-tiny-cpu.json").read_text())


def test_sweep_chooses_the_best_validation_trial_and_skips_measured_ones(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    result = _run(monkeypatch, tmp_path, [{"lr": 1e-5}, {"lr": 1e-2}])
    assert [t["config"]["lr"] for t in result["trials"]] == [1e-5, 1e-2]
    valid = [t["best_valid_ndcg@10"] for t in result["trials"]]
    assert result["chosen"] == valid.index(max(valid))
    assert result["trials"][0]["changed"]["lr"] == 1e-5 and result["trials"][0]["changed"]["dim"] == 16

    calls = []
    monkeypatch.setattr(sweep, "train_and_score", lambda *a, **k: calls.append(a) or pytest.fail("re-ran a trial"))
    again = _run(monkeypatch, tmp_path, [{"lr": 1e-2}])
    assert len(again["trials"]) == 2 and not calls
    assert "**(chosen)**" in (tmp_path / "out" / "sweep-sasrec-tiny-cpu.md").read_text()


def test_a_trial_differing_only_by_a_default_is_not_taken_for_a_measured_one(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    _run(monkeypatch, tmp_path, [{"lr": 1e-2}])
    result = _run(monkeypatch, tmp_path, [{}])  # the default lr (1e-3): a different config
    assert [t["config"]["lr"] for t in result["trials"]] == [1e-2, 1e-3]


def test_sweep_rejects_a_grid_that_is_not_a_list_of_objects(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    with pytest.raises(SystemExit, match="--grid must be a JSON list"):
        _run(monkeypatch, tmp_path, {"lr": 1e-3})
