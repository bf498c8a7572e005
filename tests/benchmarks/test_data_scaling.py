"""data_scaling.py: the user subsets and the comparison on the test users every subset shares."""

import gzip
import json

import pytest

from benchmarks import data_scaling


def test_subset_keeps_exactly_the_first_users_rows_byte_for_byte(tmp_path):
    lines = [b"1::10::5::100\n", b"2::11::3::101\n", b"10::12::4::102\n", b"3::13::1::103\n"]
    source = tmp_path / "ratings.dat.gz"
    with gzip.open(source, "wb") as f:
        f.writelines(lines)
    out = tmp_path / "sub" / "ratings-1-3.dat"
    assert data_scaling.subset(str(source), 3, str(out)) == 3
    assert out.read_bytes() == lines[0] + lines[1] + lines[3]  # user 10 is out, order kept
    data_scaling.subset(str(source), 3, str(tmp_path / "again.dat"))
    assert (tmp_path / "again.dat").read_bytes() == out.read_bytes()  # same input, same bytes


def test_subset_names_the_line_that_is_not_a_ratings_row(tmp_path):
    source = tmp_path / "ratings.dat"
    source.write_bytes(b"1::10::5::100\nuser,item\n")
    with pytest.raises(SystemExit, match=r"ratings\.dat, line 2"):
        data_scaling.subset(str(source), 5, str(tmp_path / "out.dat"))


def _sweep(out, name, n_users, ranks, trial):
    other = {"changed": {"dim": 1}, "test_ranks_by_user": {u: 1000 for u in ranks}}
    mine = {"changed": trial, "test_ranks_by_user": ranks, "ndcg@10": 0.0, "best_valid_ndcg@10": 0.1,
            "epochs_run": 3, "best_epoch": 1, "seconds_per_epoch": 1.0}
    (out / f"sweep-sasrec-{name}-cpu.json").write_text(json.dumps({
        "dataset_sha256": name, "split": {"n_users": n_users, "train_rows": 10 * n_users, "n_items": 50},
        "trials": [other, mine]}))


def test_compare_scores_every_subset_on_the_shared_users_and_pairs_them_with_the_largest(tmp_path):
    trial = {"dim": 8}
    # the small model ranks every shared user's target 1st; the large one half of them 1st, half 11th;
    # the large run's extra users (3, 4) must not count
    _sweep(tmp_path, "u2", 2, {"1": 1, "2": 1}, trial)
    _sweep(tmp_path, "u4", 4, {"1": 1, "2": 11, "3": 1, "4": 1}, trial)
    result = data_scaling.compare("sasrec", ["u4", "u2"], trial, tmp_path)
    assert result["shared_test_users"] == 2
    small, large = result["points"]  # sorted by users
    assert (small["dataset"], large["dataset"]) == ("u2", "u4")
    assert small["shared_test_ndcg@10"] == pytest.approx(1.0)
    assert large["shared_test_ndcg@10"] == pytest.approx(0.5)
    assert "largest_minus_this_ci95" in small and "largest_minus_this_ci95" not in large
    assert result["ndcg@10_per_doubling_of_users"] == pytest.approx(-0.5)
    assert "| u2 | 2 |" in data_scaling.markdown(result)


def test_compare_says_which_trial_is_missing(tmp_path):
    _sweep(tmp_path, "u2", 2, {"1": 1}, {"dim": 8})
    with pytest.raises(SystemExit, match="no trial with changed config"):
        data_scaling.compare("sasrec", ["u2"], {"dim": 16}, tmp_path)
