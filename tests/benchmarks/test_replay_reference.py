"""The replay's popularity numbers equal an independent implementation of the protocol that reads
the raw files itself (``benchmarks/replay_reference.py``), on a small MovieLens-format folder."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from benchmarks.replay_reference import read_movielens, reference_popularity
from pipeline.options import DataOptions
from pipeline.replay import replay

START, STEP, WINDOWS = datetime(2020, 3, 2), timedelta(days=14), 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A ml-latest-small style folder: 80 users over 90 days, 60 movies (some never rated, some
    first rated late), ties in time, half stars; users arriving over the weeks."""
    rng = np.random.default_rng(3)
    start = int(datetime(2020, 1, 1).timestamp())
    rows = []
    for user in range(1, 81):
        joined = start + int(rng.integers(0, 80)) * 86_400
        for _ in range(int(rng.integers(2, 15))):
            item = int(rng.zipf(1.6)) % 55 + 1
            when = joined + int(rng.integers(0, 30 * 86_400)) // 3600 * 3600  # whole hours: ties happen
            rows.append((user, item if when > start + 40 * 86_400 or item < 50 else item - 10, float(rng.integers(1, 11)) / 2, when))
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"]).drop_duplicates(["userId", "movieId"])
    path = tmp_path_factory.mktemp("ml-tiny")
    ratings.to_csv(path / "ratings.csv", index=False)
    pd.DataFrame({"movieId": range(1, 61), "title": [f"Movie {i} (2000)" for i in range(1, 61)],
                  "genres": ["Drama"] * 60}).to_csv(path / "movies.csv", index=False)  # fmt: skip
    return path


def test_popularity_in_the_replay_equals_the_independent_reference(folder):
    result = replay(DataOptions(source="movielens", path=str(folder)), ["popularity"], start=START, step=STEP,
                    windows=WINDOWS, strategies=("scratch",), device="cpu")  # fmt: skip
    events, items = read_movielens(str(folder))
    reference = reference_popularity(events, items, start=START, step=STEP, windows=WINDOWS, validation=STEP)
    compared = 0
    for window, ref in zip(result.windows, reference):
        assert window.n_cases == ref["n_cases"]
        ours = window.per_family["scratch"]["popularity"]
        for name in ref["ndcg@10"]:
            assert ours[name]["ndcg@10"] == pytest.approx(ref["ndcg@10"][name], abs=1e-6)
            assert ours[name]["hr@10"] == pytest.approx(ref["hr@10"][name], abs=1e-6)
            compared += 1
    assert compared >= 6 and any("cold_user" in r["n_cases"] for r in reference)


def test_the_replay_benchmark_writes_its_report_with_the_reference_check(folder, tmp_path):
    import json

    from benchmarks.replay import main

    main(["--path", str(folder), "--name", "tiny", "--start", "2020-03-02", "--step-days", "14", "--windows", "2",
          "--models", "popularity,ease", "--config-json", '{"ease": {"l2_grid": [10.0]}}', "--device", "cpu",
          "--out", str(tmp_path), "--md-out", str(tmp_path)])  # fmt: skip
    result = json.loads((tmp_path / "replay-tiny.json").read_text())
    assert result["popularity_check"]["max_abs_difference"] < 1e-6
    assert set(result["comparisons"]) == {"warm - scratch", "warm - frozen", "scratch - frozen"}
    assert len(result["windows"]) == 2 and result["commands"]
    report = (tmp_path / "replay-tiny.md").read_text()
    assert "independent implementation" in report and "replay-tiny.png" in report
    assert (tmp_path / "replay-tiny.png").stat().st_size > 0
