"""The benchmark script end to end on a tiny MovieLens-1M-format folder written here."""

import json

import numpy as np

from benchmarks.baselines import main


def _write_ml1m(folder, n_users=40, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    (folder / "movies.dat").write_text("".join(f"{i}::Movie {i} (1999)::Drama\n" for i in range(1, n_items + 1)), encoding="latin-1")
    (folder / "users.dat").write_text("".join(f"{u}::M::25::4::12345\n" for u in range(1, n_users + 1)), encoding="latin-1")
    lines = []
    for u in range(1, n_users + 1):
        start = int(rng.integers(1, n_items))
        for t in range(8):  # each user walks the item ids in order: learnable "next item"
            lines.append(f"{u}::{(start + t - 1) % n_items + 1}::{int(rng.integers(1, 6))}::{978300000 + 60 * t}\n")
    (folder / "ratings.dat").write_text("".join(lines), encoding="latin-1")


def test_benchmark_writes_json_and_table_for_every_model(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    tiny = {f: {"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 2} for f in ("sasrec", "bert4rec")}
    argv = ["--path", str(tmp_path / "ml"), "--name", "tiny", "--models", "popularity,sasrec,bert4rec",
            "--models-config", json.dumps(tiny), "--out", str(tmp_path / "out"), "--md-out", str(tmp_path / "md"),
            "--device", "cpu"]  # fmt: skip
    monkeypatch.setattr("sys.argv", ["baselines.py", *argv])
    main()
    # the JSON in --out, the Markdown (naming the command that wrote it) in --md-out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["baselines-tiny-cpu.json"]
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == ["baselines-tiny-cpu.md"]
    assert "- command: `python benchmarks/baselines.py --path " in (tmp_path / "md" / "baselines-tiny-cpu.md").read_text()
    result = json.loads((tmp_path / "out" / "baselines-tiny-cpu.json").read_text())
    assert [r["model"] for r in result["results"]] == ["popularity", "sasrec", "bert4rec"]
    assert result["n_test_cases"] == 40 and len(result["dataset_sha256"]) == 64
    assert result["results"][1]["config"]["dim"] == 16 and result["results"][1]["epochs_run"] == 2
    assert all(0.0 <= r["ndcg@10"] <= 1.0 for r in result["results"])
    assert "| sasrec |" in (tmp_path / "md" / "baselines-tiny-cpu.md").read_text()


def test_benchmark_rows_carry_the_validation_curve_and_timings(tmp_path, monkeypatch):
    _write_ml1m(tmp_path / "ml")
    tiny = {"sasrec": {"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 3}}
    monkeypatch.setattr(
        "sys.argv",
        ["baselines.py", "--path", str(tmp_path / "ml"), "--name", "tiny", "--models", "sasrec",
         "--models-config", json.dumps(tiny), "--out", str(tmp_path / "out"), "--device", "cpu", "--tag", "seq"],
    )
    main()
    row = json.loads((tmp_path / "out" / "seq-tiny-cpu.json").read_text())["results"][0]
    curve = row["valid_curve"]
    assert [c[0] for c in curve] == [0, 1, 2]
    # cumulative seconds (rounded to 0.01 s, so a tiny epoch on a quiet machine may add nothing)
    assert all(b[1] >= a[1] for a, b in zip(curve, curve[1:])) and curve[-1][1] > 0
    best = max(curve, key=lambda c: c[2])
    assert row["best_epoch"] == best[0] and row["best_valid_ndcg@10"] == best[2]
    assert row["seconds_to_best_valid"] == round(best[1], 1)
    assert row["seconds_per_epoch"] > 0 and row["peak_memory_mib"] > 10
    ranks = row["test_ranks_by_user"]
    assert sorted(map(int, ranks)) == list(range(1, 41)) and all(r >= 1 for r in ranks.values())
