"""benchmarks/pooled_seeds.py on two hand-made result files."""

import json
import math

import pytest

from benchmarks.pooled_seeds import main


def result(seed, ranks):  # ranks: model -> {user: (slice, rank)}
    return {
        "dataset": f"draw{seed}", "split": {"seed": seed},
        "results": [{"model": m, "test_slices_by_user": {u: s for u, (s, _) in by_user.items()},
                     "test_ranks_by_user": {u: r for u, (_, r) in by_user.items()}} for m, by_user in ranks.items()],
    }  # fmt: skip


def gain(rank):
    return 1 / math.log2(rank + 1) if rank <= 10 else 0.0


def test_cases_of_one_slice_are_pooled_across_draws(tmp_path):
    first = result(0, {
        "ref": {"1": ("cold_user", 1), "2": ("cold_user", 30), "3": ("warm", 1)},
        "net": {"1": ("cold_user", 3), "2": ("cold_user", 2), "3": ("warm", 50)},
        "only_here": {"1": ("cold_user", 1), "2": ("cold_user", 1), "3": ("warm", 1)},
    })  # fmt: skip
    second = result(1, {"ref": {"1": ("cold_user", 5), "9": ("warm", 2)}, "net": {"1": ("cold_user", 12), "9": ("warm", 2)}})
    files = []
    for i, r in enumerate((first, second)):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(r))
    summary = main([*map(str, files), "--reference", "ref", "--name", "t", "--out", str(tmp_path / "out"),
                    "--md-out", str(tmp_path / "out")])
    assert summary["models"] == ["ref", "net"]  # only the models of every file
    # user "1" of each draw is a separate case: three cold-user cases in all
    assert summary["pooled"]["n_cases"] == 3
    assert summary["pooled"]["ndcg@10"]["ref"] == pytest.approx((gain(1) + 0 + gain(5)) / 3)
    assert summary["pooled"]["ndcg@10"]["net"] == pytest.approx((gain(3) + gain(2) + 0) / 3)
    assert [d["n_cases"] for d in summary["draws"]] == [2, 1]
    assert summary["draws"][1]["versus_reference"]["net"]["ndcg@10_diff"] == pytest.approx(0 - gain(5))
    text = (tmp_path / "out" / "pooled-t.md").read_text()
    assert "| **pooled** (seed –) | 3 |" in text
    with pytest.raises(SystemExit, match="not in every file"):
        main([*map(str, files), "--reference", "only_here", "--name", "t", "--out", str(tmp_path / "out")])


def test_a_file_named_without_its_folder_is_read_from_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CINESYNC_RESULTS", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    draws = [result(s, {"ref": {"1": ("cold_user", 1)}, "net": {"1": ("cold_user", 2)}}) for s in (0, 1)]
    for i, r in enumerate(draws):
        (tmp_path / "results" / f"r{i}.json").write_text(json.dumps(r))
    # a bare name, and a path as commands wrote them when the results were kept in the checkout
    summary = main(["r0.json", "benchmarks/results/r1.json", "--reference", "ref", "--name", "t",
                    "--md-out", str(tmp_path / "md")])  # fmt: skip
    assert summary["pooled"]["n_cases"] == 2
    assert (tmp_path / "results" / "pooled-t.json").is_file() and (tmp_path / "md" / "pooled-t.md").is_file()
    with pytest.raises(SystemExit, match="no such result file"):
        main(["r9.json", "--reference", "ref", "--name", "t", "--md-out", str(tmp_path / "md")])
