"""serving/benchmarks/latency.py: the latency of each history-length band is the latency of its requests; the
configs validation chose, read from the sweeps on file (the results folder outside the checkout)."""

import json

import pytest

from serving.benchmarks.latency import by_history_length, validated_configs


def test_each_request_counts_in_the_band_of_its_history_length():
    ms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    lengths = [10, 60, 300, 800, 50, 51]
    bands = by_history_length(ms, lengths)
    assert {band: p["n"] for band, p in bands.items()} == {"0-50": 2, "51-200": 2, "201-500": 1, "501+": 1}
    assert bands["0-50"]["max_ms"] == 5.0 and bands["51-200"]["max_ms"] == 6.0 and bands["501+"]["p50_ms"] == 4.0


def test_an_empty_band_is_left_out():
    assert set(by_history_length([1.0, 2.0], [3, 7])) == {"0-50"}


def _sweep(folder, family, name, checksum, chosen, configs):
    trials = [{"config": {"n_items": 3615, "n_users": 2999, **c}} for c in configs]
    (folder / f"sweep-{family}-{name}-cpu.json").write_text(
        json.dumps({"family": family, "dataset_sha256": checksum, "chosen": chosen, "trials": trials})
    )


def test_validated_configs_are_the_chosen_trials_without_the_dataset_sizes(tmp_path):
    _sweep(tmp_path, "temporal_attention", "ml-1m-u2999", "abc", 1, [{"max_len": 200}, {"max_len": 100, "dim": 64}])
    _sweep(tmp_path, "sasrec", "ml-100k", "other", 0, [{"dim": 128}])  # another dataset's sweep: not read
    configs = validated_configs("ml-1m-u2999", "abc", ["temporal_attention", "sasrec", "popularity"], results=tmp_path)
    assert configs == {"temporal_attention": {"max_len": 100, "dim": 64}}


def test_a_sweep_of_other_data_under_the_served_name_is_an_error(tmp_path):
    _sweep(tmp_path, "sasrec", "ml-1m-u2999", "stale", 0, [{"dim": 128}])
    with pytest.raises(ValueError, match="swept on data with sha256 stale"):
        validated_configs("ml-1m-u2999", "abc", ["sasrec"], results=tmp_path)


def test_validated_configs_are_read_from_the_results_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CINESYNC_RESULTS", str(tmp_path))
    _sweep(tmp_path, "sasrec", "ml-1m-u2999", "abc", 0, [{"dim": 128}])
    assert validated_configs("ml-1m-u2999", "abc", ["sasrec"]) == {"sasrec": {"dim": 128}}
