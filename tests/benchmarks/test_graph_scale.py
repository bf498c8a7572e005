"""graph_scale.py: a child process per measurement, each parsing the parent's own options."""

import json


def test_large_runs_its_child_with_the_parents_options(tmp_path, monkeypatch):
    from benchmarks import graph_scale

    argv = ["graph_scale.py", "large", "--scale", "1", "--steps", "2", "--batch-size", "512", "--sampling-only",
            "--out", str(tmp_path), "--md-out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    graph_scale.main()
    (row,) = json.loads((tmp_path / "graph-scale-ml-1m-u2999-cpu.json").read_text())["large"]
    assert (row["steps"], row["batch_size"], row["users"]) == (2, 512, 2_999) and row["mode"].startswith("sampling")
    assert "| sampling (10, 5, 5), 1x ml-1m-u2999 | 2,999 |" in (tmp_path / "graph-scale-ml-1m-u2999-cpu.md").read_text()
