"""sweep.py end to end on a tiny MovieLens-1M-format folder: choice by validation, no re-runs, and
the Markdown's command measures every trial on file again."""

import json
import shlex

import pytest

import benchmarks
from benchmarks import sweep
from tests.benchmarks.test_baselines import _write_ml1m


def _run(monkeypatch, tmp_path, grid):
    monkeypatch.setattr(
        "sys.argv",
        ["sweep.py", "--path", str(tmp_path / "ml"), "--name", "tiny", "--family", "sasrec", "--device", "cpu",
         "--base", json.dumps({"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 2}),
         "--grid", json.dumps(grid), "--out", str(tmp_path / "out"), "--md-out", str(tmp_path / "out")],
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
    monkeypatch.setattr(benchmarks, "train_and_test", lambda *a, **k: calls.append(a) or pytest.fail("re-ran a trial"))
    again = _run(monkeypatch, tmp_path, [{"lr": 1e-2}])
    assert len(again["trials"]) == 2 and not calls
    assert "**(chosen)**" in (tmp_path / "out" / "sweep-sasrec-tiny-cpu.md").read_text()


def test_the_summary_names_one_command_that_measures_every_trial_again(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    result = _run(monkeypatch, tmp_path, [{"lr": 1e-2}])
    result = _run(monkeypatch, tmp_path, [{"lr": 1e-5}])  # a second command adds a trial
    line = (tmp_path / "out" / "sweep-sasrec-tiny-cpu.md").read_text().splitlines()[-1]
    assert line.startswith("- command: `python benchmarks/sweep.py --path ")
    argv = shlex.split(line.removeprefix("- command: `").removesuffix("`"))
    grid = json.loads(argv[argv.index("--grid") + 1])
    assert [g["lr"] for g in grid] == [1e-2, 1e-5] and all(g["dim"] == 16 for g in grid)
    # run without --base, that grid asks for exactly the trials on file: nothing is trained again
    monkeypatch.setattr(benchmarks, "train_and_test", lambda *a, **k: pytest.fail("re-ran a trial"))
    monkeypatch.setattr("sys.argv", ["sweep.py", *argv[2:], "--out", str(tmp_path / "out"), "--md-out", str(tmp_path / "out")])
    sweep.main()
    assert len(json.loads((tmp_path / "out" / "sweep-sasrec-tiny-cpu.json").read_text())["trials"]) == 2


def test_by_default_the_json_goes_to_the_results_folder_and_the_table_beside_the_code(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    monkeypatch.setenv("CINESYNC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(benchmarks, "SUMMARIES", tmp_path / "summaries")
    monkeypatch.setattr(
        "sys.argv",
        ["sweep.py", "--path", str(tmp_path / "ml"), "--name", "tiny", "--family", "sasrec", "--device", "cpu",
         "--base", json.dumps({"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 1}), "--grid", "[{}]"],
    )
    sweep.main()
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["sweep-sasrec-tiny-cpu.json"]
    assert [p.name for p in (tmp_path / "summaries").iterdir()] == ["sweep-sasrec-tiny-cpu.md"]


def test_a_trial_differing_only_by_a_default_is_not_taken_for_a_measured_one(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    _run(monkeypatch, tmp_path, [{"lr": 1e-2}])
    result = _run(monkeypatch, tmp_path, [{}])  # the default lr (1e-3): a different config
    assert [t["config"]["lr"] for t in result["trials"]] == [1e-2, 1e-3]


def test_sweep_rejects_a_grid_that_is_not_a_list_of_objects(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    with pytest.raises(SystemExit, match="--grid must be a JSON list"):
        _run(monkeypatch, tmp_path, {"lr": 1e-3})


def test_table_gives_each_trial_its_paired_test_difference_to_the_chosen_one():
    def trial(ndcg, valid, ranks):
        return {"changed": {}, "best_valid_ndcg@10": valid, "ndcg@10": ndcg, "hr@10": 0.2, "mrr": 0.1,
                "epochs_run": 3, "best_epoch": 1, "seconds_to_best_valid": 1.0, "seconds_per_epoch": 1.0,
                "test_ranks_by_user": ranks}

    users = [str(u) for u in range(100)]
    good = {u: 1 for u in users}  # every target first: NDCG@10 = 1
    bad = {u: 1 if int(u) % 2 else 1000 for u in users}  # half the targets out of the top 10: 0.5
    result = {"family": "sasrec", "dataset": "tiny", "dataset_sha256": "a" * 64, "chosen": 0,
              "hardware": {"device": "cpu", "cpu_threads": 1},
              "trials": [trial(1.0, 0.3, good), trial(0.5, 0.2, bad)]}
    rows = sweep.markdown(result).splitlines()
    chosen_row = next(r for r in rows if r.startswith("| 0 **(chosen)**"))
    other_row = next(r for r in rows if r.startswith("| 1 |"))
    assert chosen_row.endswith("| – |")
    diff, interval = other_row.rstrip(" |").rsplit("| ", 1)[1].split(" ", 1)
    lo, hi = (float(x) for x in interval.strip("[]").split(", "))
    assert float(diff) == -0.5 and lo < -0.5 < hi < 0
