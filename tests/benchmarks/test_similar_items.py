"""The similar-items measures of benchmarks/similar_items.py on hand-made cases."""

import pandas as pd
import pytest
import torch

from benchmarks.similar_items import MISS, attribute_overlap, cowatch_ranks, nearest, ndcg, random_neighbours


def test_nearest_excludes_the_item_itself_and_padding():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    neighbours = nearest(emb, k=2)
    assert neighbours[1].tolist() == [2, 3]  # 2 is nearly parallel, 3 orthogonal, 4 opposite
    assert neighbours[3, 0].item() == 2
    for item in range(1, 5):
        assert item not in neighbours[item].tolist() and 0 not in neighbours[item].tolist()


def test_random_neighbours_are_distinct_other_items():
    neighbours = random_neighbours(12, k=10, seed=3)
    for item in range(1, 13):
        row = neighbours[item].tolist()
        assert len(set(row)) == 10 and item not in row and all(1 <= j <= 12 for j in row)
    assert torch.equal(neighbours, random_neighbours(12, k=10, seed=3))


def test_cowatch_reads_the_latest_history_item_and_ranks_the_held_out_one():
    neighbours = torch.zeros(6, 10, dtype=torch.long)
    neighbours[2, :3] = torch.tensor([5, 4, 3])
    neighbours[1, :3] = torch.tensor([4, 5, 2])
    cases = pd.DataFrame({"case_id": [7, 8, 9], "history": [[1, 2], [2, 1], [1]], "target_item": [4, 3, 3],
                          "slice": ["warm"] * 3})  # fmt: skip
    ranks = cowatch_ranks(neighbours, cases)
    assert ranks == {"7": 2, "8": MISS, "9": MISS}  # case 8 queries item 1, whose list lacks 3
    assert abs(ndcg(ranks) - (1 / 1.5849625007211563) / 3) < 1e-12


def test_attribute_overlap_counts_genres_and_shared_cast():
    items = pd.DataFrame({"item_idx": [1, 2, 3], "genres": ["A|B", "B", ""], "cast": ["x|y", "y", "z"]})
    neighbours = torch.tensor([[0, 0], [2, 3], [1, 3], [1, 2]])
    out = attribute_overlap(neighbours, items)
    # item 1: J(AB,B)=1/2, J(AB,{})=0 -> 1/4; item 2: J(B,AB)=1/2, J(B,{})=0 -> 1/4; item 3 has no genres
    assert out["items_with_genres"] == 2 and abs(out["genre_jaccard"] - 0.25) < 1e-12
    # cast shared: item 1 -> [yes, no], item 2 -> [yes, no], item 3 -> [no, no]
    assert out["items_with_cast"] == 3 and abs(out["cast_shared"] - (0.5 + 0.5 + 0) / 3) < 1e-12


def test_the_benchmark_compares_clt_v_text_and_random_neighbours_end_to_end(tmp_path, tiny_encoder):
    from benchmarks.similar_items import main

    result = main(["--synthetic-users", "60", "--name", "tiny", "--encoder", tiny_encoder, "--device", "cpu",
                   "--contrastive-config", '{"max_epochs": 1}', "--text-cache-dir", str(tmp_path / "cache"),
                   "--out", str(tmp_path), "--md-out", str(tmp_path)])  # fmt: skip
    assert set(result["methods"]) == {"random", "text", "contrastive"} and result["contrastive"]["epochs_run"] == 1
    diff = result["contrastive_minus_text"]
    assert diff["n_cases"] == result["n_test_cases"]
    assert diff["cowatch_ndcg@10_diff"] == pytest.approx(
        result["methods"]["contrastive"]["cowatch_ndcg@10"] - result["methods"]["text"]["cowatch_ndcg@10"])
    assert "| contrastive |" in (tmp_path / "similar-items-tiny-cpu.md").read_text()
