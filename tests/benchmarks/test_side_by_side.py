"""side_by_side.py: pairing, time to the peer's best validation, bars, and refusals."""

import json

import pytest

from benchmarks.side_by_side import compare, main, markdown, seconds_to_reach


def _ours(sha="a" * 64):
    return {
        "dataset_sha256": sha,
        "hardware": {"device": "cpu", "cpu_threads": 1},
        "results": [{
            "model": "sasrec", "ndcg@10": 0.11, "hr@10": 0.2, "mrr": 0.09, "best_valid_ndcg@10": 0.12,
            "best_epoch": 3, "epochs_run": 5, "seconds_to_best_valid": 40.0, "seconds_per_epoch": 10.0,
            "peak_memory_mib": 900.0, "valid_curve": [[0, 10.0, 0.03], [1, 20.0, 0.07], [2, 30.0, 0.08], [3, 40.0, 0.12]],
        }],
    }


def _recbole(sha="a" * 64):
    return {
        "dataset_sha256": sha,
        "results": [{
            "model": "SASRec", "ndcg@10": 0.08, "hr@10": 0.15, "mrr": 0.07, "best_valid_ndcg@10": 0.075,
            "best_epoch": 18, "epochs_run": 24, "seconds_to_best_valid": 3000.0, "seconds_per_epoch": 165.0,
            "peak_rss_mib": 4000.0,
            "epochs": [{"elapsed_seconds": 300.0, "valid_ndcg@10": 0.05}, {"elapsed_seconds": 600.0, "valid_ndcg@10": 0.075}],
            "environment": {"recbole": "1.2.1", "device": "cpu", "torch_threads": 1},
        }],
    }


def test_seconds_to_reach_is_the_first_epoch_at_or_above_the_target():
    curve = [[0, 5.0, 0.01], [1, 9.0, 0.05], [2, 14.0, 0.04], [3, 20.0, 0.06]]
    assert seconds_to_reach(curve, 0.05) == 9.0
    assert seconds_to_reach(curve, 0.06) == 20.0
    assert seconds_to_reach(curve, 0.2) is None


def test_compare_pairs_models_and_checks_the_bars():
    result = compare([_ours()], _recbole(), "ml-100k")
    (pair,) = result["pairs"]
    assert pair["ours_seconds_to_recbole_best_valid"] == 30.0  # 0.08 is the first value >= 0.075
    assert pair["time_ratio"] == pytest.approx(30.0 / 3000.0)
    assert pair["ndcg@10_ratio"] == pytest.approx(0.11 / 0.08)
    assert pair["bars"] == {"test NDCG@10 >= 0.1": True, "NDCG@10 >= 1.3 x RecBole": True,
                            "time to RecBole's best valid <= 0.1 x RecBole's": True}
    assert "| sasrec | RecBole | 0.0800 |" in markdown(result)


def test_compare_refuses_results_from_different_data():
    with pytest.raises(SystemExit, match="different data"):
        compare([_ours("b" * 64)], _recbole(), "ml-100k")


def test_main_writes_json_and_table(tmp_path, monkeypatch):
    (tmp_path / "ours.json").write_text(json.dumps(_ours()))
    (tmp_path / "recbole.json").write_text(json.dumps(_recbole()))
    monkeypatch.setattr("sys.argv", ["side_by_side.py", "--name", "ml-100k", "--ours", str(tmp_path / "ours.json"),
                                     "--recbole", str(tmp_path / "recbole.json"), "--out", str(tmp_path),
                                     "--md-out", str(tmp_path)])
    main()
    written = json.loads((tmp_path / "side-by-side-ml-100k.json").read_text())
    assert written["pairs"][0]["model"] == "sasrec"
    assert "bar: test NDCG@10 >= 0.1: met" in (tmp_path / "side-by-side-ml-100k.md").read_text()
    assert written["pairs"][0]["curves"]["ours"][0] == [10.0, 0.03]
    assert written["pairs"][0]["curves"]["recbole"] == [[300.0, 0.05], [600.0, 0.075]]
    assert (tmp_path / "side-by-side-ml-100k.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_bootstrap_intervals():
    from benchmarks import paired_bootstrap

    ranks = {str(u): (u % 15) + 1 for u in range(200)}
    same = paired_bootstrap(ranks, dict(ranks), n_resamples=200)
    assert same["ndcg@10_diff_ci95"] == [0.0, 0.0] and same["ndcg@10_ratio_ci95"] == [1.0, 1.0]
    better = paired_bootstrap({u: 1 for u in ranks}, ranks, n_resamples=200)
    assert better["ndcg@10_ratio_ci95"][0] > 1.0 and better["share_of_resamples_ours_better"] == 1.0


def test_paired_bootstrap_refuses_different_test_users():
    from benchmarks import paired_bootstrap

    with pytest.raises(SystemExit, match="different test users"):
        paired_bootstrap({"1": 1, "2": 3}, {"1": 1, "3": 2})


def test_compare_adds_the_bootstrap_when_both_sides_have_ranks():
    ours, recbole = _ours(), _recbole()
    ours["results"][0]["test_ranks_by_user"] = {"1": 1, "2": 5, "3": 40}
    recbole["results"][0]["test_ranks_by_user"] = {"1": 2, "2": 5, "3": 90}
    pair = compare([ours], recbole, "ml-100k")["pairs"][0]
    assert pair["bootstrap"]["n_cases"] == 3
    assert "paired bootstrap over the 3 test users" in markdown(compare([ours], recbole, "ml-100k"))


def test_outputs_are_named_after_the_peer_file_so_both_selections_coexist(tmp_path, monkeypatch):
    from benchmarks.side_by_side import output_stem

    assert output_stem(tmp_path / "recbole-ml-100k.json", "ml-100k") == "side-by-side-ml-100k"
    assert output_stem(tmp_path / "recbole-ml-100k-select-ours.json", "ml-100k") == "side-by-side-ml-100k-select-ours"
    assert output_stem(tmp_path / "peer.json", "ml-100k") == "side-by-side-ml-100k"

    peer = _recbole()
    peer["results"][0]["selected_on"] = "our protocol"
    (tmp_path / "ours.json").write_text(json.dumps(_ours()))
    (tmp_path / "recbole-ml-100k-select-ours.json").write_text(json.dumps(peer))
    monkeypatch.setattr("sys.argv", ["side_by_side.py", "--name", "ml-100k", "--ours", str(tmp_path / "ours.json"),
                                     "--recbole", str(tmp_path / "recbole-ml-100k-select-ours.json"), "--out", str(tmp_path),
                                     "--md-out", str(tmp_path)])
    main()
    table = (tmp_path / "side-by-side-ml-100k-select-ours.md").read_text()
    assert "best epoch chosen on our protocol" in table
    assert not (tmp_path / "side-by-side-ml-100k.md").exists()
