"""benchmarks/serving.py: the latency of each history-length band is the latency of its requests."""

from benchmarks.serving import by_history_length


def test_each_request_counts_in_the_band_of_its_history_length():
    ms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    lengths = [10, 60, 300, 800, 50, 51]
    bands = by_history_length(ms, lengths)
    assert {band: p["n"] for band, p in bands.items()} == {"0-50": 2, "51-200": 2, "201-500": 1, "501+": 1}
    assert bands["0-50"]["max_ms"] == 5.0 and bands["51-200"]["max_ms"] == 6.0 and bands["501+"]["p50_ms"] == 4.0


def test_an_empty_band_is_left_out():
    assert set(by_history_length([1.0, 2.0], [3, 7])) == {"0-50"}
