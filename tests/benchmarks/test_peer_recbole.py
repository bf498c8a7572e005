"""The RecBole peer runner's conversion, re-evaluation and subprocess env (no RecBole needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import peer_recbole, recbole_worker
from benchmarks.peer_recbole import (
    INTER_HEADER,
    PEER_ENV,
    evaluate_predictions,
    rank_check,
    recbole_sequences,
    worker_command,
    write_atomic_files,
)
from models.split import leave_one_out_split

FLAG = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def split_of(rows):
    """Standard split of (user_id, item_id, timestamp) rows given in file order."""
    users, items, ts = zip(*rows)
    interactions = pd.DataFrame({
        "user_id": np.array(users, dtype=np.int64),
        "item_id": np.array(items, dtype=np.int64),
        "rating": np.ones(len(rows), dtype=np.float32),
        "timestamp": np.array(ts, dtype=np.int64),
    })
    item_table = pd.DataFrame({"item_id": sorted(set(items))})
    user_table = pd.DataFrame({"user_id": sorted(set(users))})
    data, _ = leave_one_out_split(interactions, item_table, user_table, mode="standard", seed=0)
    return data


# Raw ids deliberately unlike their indices; user 7 has timestamp ties (file order decides) and
# rows out of time order; user 3 has 2 interactions (train only), user 9 exactly 3.
ROWS = [
    (7, 50, 100), (7, 40, 100), (5, 11, 1), (7, 30, 90), (5, 12, 2), (7, 20, 300),
    (5, 13, 3), (7, 10, 200), (5, 14, 4), (3, 50, 5), (3, 40, 6), (9, 30, 1), (9, 20, 2),
    (9, 10, 3), (5, 15, 5), (7, 60, 100),
]


def recbole_order(inter: pd.DataFrame) -> dict[int, list[int]]:
    """Per-user item sequences as RecBole orders them (sort by user, then timestamp)."""
    ordered = inter.sort_values(["user_id", "timestamp"], kind="stable")
    return {int(u): g["item_id"].astype(int).tolist() for u, g in ordered.groupby("user_id")}


def raw_maps(data):
    users = dict(zip(data.users["user_idx"], data.users["user_id"]))
    items = dict(zip(data.items["item_idx"], data.items["item_id"]))
    return users, items


def test_converted_sequences_end_with_our_valid_and_test_targets():
    data = split_of(ROWS)
    inter, sequences, counts = recbole_sequences(data)
    users, items = raw_maps(data)
    ordered = recbole_order(inter)
    test = data.stage("test").set_index("user_idx")
    valid = data.stage("valid").set_index("user_idx")
    assert set(test.index) == set(valid.index) and len(test) == 3  # users 5, 7, 9
    for user_idx, case in test.iterrows():
        seq = ordered[users[user_idx]]
        assert seq[-1] == items[case["target_item"]]
        assert seq[-2] == items[valid.loc[user_idx, "target_item"]]
        assert seq[:-1] == [items[i] for i in case["history"]]  # the test input, in our order
        assert sequences[str(users[user_idx])] == seq
    # Ties at t=100 keep file order: 50, 40, 60; then 10 (t=200), 20 (t=300).
    assert ordered[7] == [30, 50, 40, 60, 10, 20]
    for _, group in inter.groupby("user_id"):
        assert group["timestamp"].is_unique
    assert counts == {"users": 4, "users_with_cases": 3, "users_train_only": 1,
                      "users_with_3_interactions": 1, "rows": len(ROWS)}


def test_train_only_users_are_written_but_have_no_cases():
    data = split_of(ROWS)
    inter, sequences, _ = recbole_sequences(data)
    assert recbole_order(inter)[3] == [50, 40]
    assert "3" not in sequences


def test_atomic_inter_file_round_trips(tmp_path):
    data = split_of(ROWS)
    write_atomic_files(data, tmp_path, "cinesync_toy")
    path = tmp_path / "cinesync_toy" / "cinesync_toy.inter"
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(INTER_HEADER)
    back = pd.read_csv(path, sep="\t")
    back.columns = ["user_id", "item_id", "timestamp"]
    inter, sequences, _ = recbole_sequences(data)
    assert recbole_order(back) == recbole_order(inter)
    assert json.loads((tmp_path / "sequences.json").read_text()) == sequences


def test_recbole_dataset_name_avoids_recbole_presets():
    assert peer_recbole.recbole_dataset_name("ml-100k") == "cinesync_ml_100k"


def predictions_for(data, ranks, tops):
    """Worker-style predictions (raw ids) for every test case, in test-case order."""
    users, items = raw_maps(data)
    test = data.stage("test")
    return [
        {"user_id": int(users[u]), "target_item_id": int(items[t]), "rank": int(r),
         "top_item_ids": [int(items[i]) for i in top]}
        for u, t, r, top in zip(test["user_idx"], test["target_item"], ranks, tops)
    ]


def test_reevaluation_reproduces_hand_computed_metrics():
    data = split_of(ROWS)  # 3 test cases, 11 items
    ranks = [1, 3, 15]
    tops = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 3, 4, 5, 6, 7, 8, 9, 10, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    metrics = evaluate_predictions(predictions_for(data, ranks, tops), data)
    assert metrics["hr@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(4)) / 3)
    assert metrics["mrr"] == pytest.approx((1.0 + 1 / 3 + 1 / 15) / 3)
    assert metrics["hr@20"] == pytest.approx(1.0)
    assert metrics["ndcg@20"] == pytest.approx((1.0 + 0.5 + 1.0 / math.log2(16)) / 3)
    assert metrics["coverage@10"] == pytest.approx(10 / 11)
    assert metrics["n_cases"] == 3


def test_reevaluation_rejects_predictions_for_other_targets():
    data = split_of(ROWS)
    predictions = predictions_for(data, [1, 1, 1], [list(range(1, 11))] * 3)
    predictions[0]["target_item_id"] = next(
        i for i in data.items["item_id"] if i != predictions[0]["target_item_id"])
    with pytest.raises(ValueError, match="wrong targets"):
        evaluate_predictions(predictions, data)
    with pytest.raises(ValueError, match="missing"):
        evaluate_predictions(predictions_for(data, [1, 1, 1], [list(range(1, 11))] * 3)[:2], data)


class FakeInteraction(dict):
    """A RecBole ``Interaction``: fields by name, ``columns`` and ``to(device)``."""

    columns = property(lambda self: list(self))

    def to(self, device):
        return self


def test_worker_ranks_a_recbole_loader_under_our_protocol():
    """``ProtocolScorer.run`` (the worker's ranking, through ``models.metrics``) on a fake full-sort
    loader: ranks and top lists checked against a brute-force count, mismatches counted."""
    n_columns = 12  # RecBole's internal ids: column 0 padding, items 1..11 (raw ids 101..111)
    item_tokens = ["[PAD]", *(str(100 + i) for i in range(1, n_columns))]
    dataset = SimpleNamespace(field2id_token={"user_id": ["[PAD]", "7", "5", "9"], "item_id": item_tokens},
                              field2token_id={"item_id": {t: i for i, t in enumerate(item_tokens)}}, item_num=n_columns)
    config = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
              "ITEM_LIST_LENGTH_FIELD": "item_length", "MAX_ITEM_LIST_LENGTH": 3}
    # user 5 re-watches its target (106): it stays a candidate; raw ids as peer_recbole writes them
    sequences = {"7": [101, 102, 103, 104, 105], "5": [106, 101, 107, 106], "9": [108, 109]}
    histories = [[1, 2, 3, 4], [6, 1, 7], [8]]  # internal ids, the test target cut off
    scores = torch.randint(0, 4, (3, n_columns), generator=torch.Generator().manual_seed(0)).float()  # many ties
    inputs = torch.tensor([[2, 3, 4], [6, 1, 7], [9, 0, 0]])  # user 9's input is wrong: counted
    batch = FakeInteraction(user_id=torch.tensor([1, 2, 3]), item_id_list=inputs, item_length=torch.tensor([3, 3, 1]))
    model = SimpleNamespace(eval=lambda: None, full_sort_predict=lambda interaction: scores.flatten())
    loader = [(batch, None, torch.arange(3), torch.tensor([5, 6, 10]))]  # user 9's target is 109, not 110
    out = recbole_worker.ProtocolScorer(dataset, config, sequences).run(model, loader, "test", "cpu")
    assert (out["target_mismatch"], out["input_mismatch"]) == (1, 1)
    assert out["users"].tolist() == ["7", "5", "9"] and out["targets"].tolist() == [5, 6, 10]
    for row, (history, target) in enumerate(zip(histories, out["targets"].tolist())):
        candidates = (set(range(1, n_columns)) - set(history)) | {target}
        assert out["ranks"][row] == sum(scores[row, c] >= scores[row, target] for c in candidates)
        top = [int(i) for i in out["top"][row] if i]
        assert set(top) == candidates and top[out["ranks"][row] - 1] == target  # ties against the target
        assert all(scores[row, a] >= scores[row, b] for a, b in zip(top, top[1:]))
        assert not out["top"][row][len(top):].any()  # 0 pads the right


def test_worker_imports_our_evaluator_from_the_repository_root(tmp_path):
    """As in .venv-recbole: the third-party packages but no install of this project."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p.endswith("site-packages"))}
    isolated = [sys.executable, "-S"]  # no .pth files: the project's editable install is not seen
    assert subprocess.run([*isolated, "-c", "import models"], cwd=tmp_path, env=env, capture_output=True).returncode
    done = subprocess.run([*isolated, str(peer_recbole.WORKER), "--check"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(str(peer_recbole.REPO / "models" / "metrics.py"))


def test_rank_check_recomputes_ranks_with_project_evaluator(tmp_path):
    data = split_of(ROWS)
    users, items = raw_maps(data)
    test = data.stage("test")
    rng = np.random.default_rng(0)
    # RecBole's columns: 0 = padding, then the raw items in some other order.
    column_ids = np.array([0] + list(rng.permutation(data.items["item_id"].to_numpy())), dtype=np.int64)
    scores = rng.integers(0, 4, size=(len(test), len(column_ids))).astype(np.float32)
    path = tmp_path / "test_scores.npz"
    user_ids = np.array([users[u] for u in test["user_idx"]], dtype=np.int64)
    np.savez(path, scores=scores, column_item_ids=column_ids, user_ids=user_ids)
    # Ranks by hand, under our rule, in raw-id space.
    ranks = []
    for row, (_, case) in enumerate(test.iterrows()):
        target = items[case["target_item"]]
        history = {items[i] for i in case["history"]} - {target}
        by_item = dict(zip(column_ids[1:], scores[row, 1:]))
        ranks.append(sum(1 for i, s in by_item.items() if i not in history and s >= by_item[target]))
    predictions = predictions_for(data, ranks, [list(range(1, 11))] * len(test))
    assert rank_check(path, predictions, data) == 0
    predictions[1]["rank"] += 1
    assert rank_check(path, predictions, data) == 1


def test_worker_command_sets_weights_only_flag_in_its_own_env_only(monkeypatch, tmp_path):
    monkeypatch.delenv(FLAG, raising=False)
    argv, env = worker_command(tmp_path / "spec.json", python=tmp_path / "python")
    assert argv == [str(tmp_path / "python"), str(peer_recbole.WORKER), str(tmp_path / "spec.json")]
    assert env[FLAG] == "1" and PEER_ENV == {FLAG: "1"}
    assert FLAG not in os.environ


def test_worker_subprocess_sees_flag_and_parent_does_not(monkeypatch, tmp_path):
    monkeypatch.delenv(FLAG, raising=False)
    fake_worker = tmp_path / "fake_worker.py"
    fake_worker.write_text(
        "import json, os, pathlib, sys\n"
        "spec = json.loads(pathlib.Path(sys.argv[1]).read_text())\n"
        "pathlib.Path(spec['out_dir'], 'flag.txt').write_text(os.environ.get('%s', 'unset'))\n" % FLAG
    )
    monkeypatch.setattr(peer_recbole, "WORKER", fake_worker)
    out_dir = tmp_path / "out"
    peer_recbole.run_worker({"model": "SASRec", "out_dir": str(out_dir)}, out_dir, python=sys.executable)
    assert (out_dir / "flag.txt").read_text() == "1"
    assert FLAG not in os.environ


def test_failed_worker_raises_with_log_tail(monkeypatch, tmp_path):
    fake_worker = tmp_path / "fake_worker.py"
    fake_worker.write_text("raise SystemExit('RecBole exploded')\n")
    monkeypatch.setattr(peer_recbole, "WORKER", fake_worker)
    with pytest.raises(RuntimeError, match="RecBole exploded"):
        peer_recbole.run_worker({"model": "SASRec"}, tmp_path / "out", python=sys.executable)


def test_runs_selected_on_our_validation_get_their_own_folder_and_results(tmp_path):
    from benchmarks.peer_recbole import result_stem, worker_dir

    assert worker_dir(tmp_path, "SASRec") == tmp_path / "SASRec"
    assert worker_dir(tmp_path, "SASRec", "ours") == tmp_path / "SASRec-select-ours"
    assert result_stem("ml-100k") == "recbole-ml-100k"
    assert result_stem("ml-100k", "ours") == "recbole-ml-100k-select-ours"


def test_a_stale_stop_request_is_cleared_before_a_worker_starts(monkeypatch, tmp_path):
    fake_worker = tmp_path / "fake_worker.py"
    fake_worker.write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(json.loads(pathlib.Path(sys.argv[1]).read_text())['out_dir'])\n"
        "(out / 'saw_stop.txt').write_text(str((out / 'STOP').exists()))\n"
    )
    monkeypatch.setattr(peer_recbole, "WORKER", fake_worker)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "STOP").touch()  # left by an earlier run that was killed before it saw it
    peer_recbole.run_worker({"model": "SASRec", "out_dir": str(out_dir)}, out_dir, python=sys.executable)
    assert (out_dir / "saw_stop.txt").read_text() == "False"


def test_table_marks_a_run_cut_short_on_request():
    row = {
        "model": "SASRec", "hr@10": 0.2, "ndcg@10": 0.1, "mrr": 0.09, "best_valid_ndcg@10": 0.11,
        "best_valid_ndcg@10_recbole": 0.06, "epochs_run": 8, "best_epoch": 7, "seconds_to_best_valid": 900.0,
        "seconds_per_epoch": 110.0, "peak_rss_mib": 3000.0, "recbole_test_result": {"ndcg@10": 0.05, "hit@10": 0.1},
        "environment": {"recbole": "1.2.1", "torch": "2.13.0", "device": "cpu", "torch_threads": 1},
    }
    result = {"dataset": "ml-100k", "dataset_sha256": "a" * 64, "n_test_cases": 943, "results": [row]}
    assert "\\*" not in peer_recbole.markdown(result)
    row["stopped_on_request_after_epoch"] = 7
    table = peer_recbole.markdown(result)
    assert "| 8 (7) \\* |" in table and "cut short on request" in table


def test_collect_reads_our_split_through_the_pipeline_and_waits_for_unfinished_workers(tmp_path, monkeypatch, capsys):
    from tests.benchmarks.test_baselines import _write_ml1m

    _write_ml1m(tmp_path / "ml")
    monkeypatch.setattr("sys.argv", ["peer_recbole.py", "collect", "--path", str(tmp_path / "ml"), "--name", "tiny",
                                     "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out")])  # fmt: skip
    peer_recbole.main()
    said = capsys.readouterr().out
    assert "'users_with_cases': 40" in said and "RecBole SASRec: not finished" in said
    assert not (tmp_path / "work" / "tiny" / "data").exists()  # collect never rewrites a worker's input
