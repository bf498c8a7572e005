"""benchmarks/plugin_families.py end to end on the tiny synthetic dataset (60 users), twice: the
second run loads the side inputs from the disk cache and records both runs."""

import json

import pytest

from benchmarks.plugin_families import main

FAMILIES = ["popularity", "ease", "lightgcn", "content_knn"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("plugin")
    argv = [
        "--source", "synthetic", "--synthetic-users", "60", "--name", "tiny", "--split-mode", "pipeline",
        "--models", ",".join(FAMILIES), "--ensemble", "--reference", "content_knn", "--encoder", tiny_encoder, "--device", "cpu",
        "--models-config", json.dumps({"lightgcn": {"dim": 8, "n_layers": 1, "max_epochs": 2, "batch_size": 256}}),
        "--text-cache-dir", str(root / "cache"), "--out", str(root / "out"), "--md-out", str(root / "out"),
    ]  # fmt: skip
    main(argv)
    first = json.loads((root / "out" / "plugin-tiny-pipeline-cpu.json").read_text())
    main(argv)
    second = json.loads((root / "out" / "plugin-tiny-pipeline-cpu.json").read_text())
    return root, first, second


def test_every_family_is_scored_per_slice(two_runs):
    _, first, _ = two_runs
    assert [r["model"] for r in first["results"]] == FAMILIES
    assert first["split"]["mode"] == "pipeline" and first["split"]["seed"] == 0 and len(first["dataset_sha256"]) == 64
    assert first["hardware"]["cpu_threads"] == 1
    slices = set(first["test_cases_per_slice"])
    assert {"warm", "cold_user", "cold_item"} <= slices
    for row in first["results"]:
        assert {"all", *slices} <= set(row["test"])
        for metrics in row["test"].values():
            assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0 and 0.0 <= metrics["coverage@10"] <= 1.0
        assert row["test"]["all"]["n_cases"] == first["n_test_cases"]
        assert row["best_valid_ndcg@10"] is not None and row["train_seconds"] >= 0
    by_model = {r["model"]: r for r in first["results"]}
    assert by_model["lightgcn"]["epochs_run"] == 2 and by_model["lightgcn"]["capped_at_max_epochs"]
    assert by_model["lightgcn"]["config"]["num_threads"] == 1  # one thread where the family has the field
    assert by_model["lightgcn"]["side_inputs"] == ["interaction_graph"]
    assert by_model["content_knn"]["config"]["dim"] == 16  # the tiny encoder's width, taken from the embeddings
    assert "recency_decay" in by_model["content_knn"]["chosen"] and "l2" in by_model["ease"]["chosen"]


def test_ensemble_weights_and_paired_interval(two_runs):
    _, first, _ = two_runs
    ens = first["ensemble"]
    assert set(ens["weights"]) == set(FAMILIES) and abs(sum(ens["weights"].values()) - 1) < 1e-6
    assert ens["fit_cases"] == sum(first["selection_cases_per_slice"].values()) + first["n_valid_cases"]
    best = max(first["results"], key=lambda r: r["selection_valid"]["all"]["ndcg@10"])
    assert ens["best_member_by_valid"] == best["model"]
    boot = ens["bootstrap_vs_best_member"]
    assert boot["ndcg@10_diff"] == pytest.approx(ens["test"]["all"]["ndcg@10"] - best["test"]["all"]["ndcg@10"])
    every = {r["model"]: r["selection_valid"]["all"]["ndcg@10"] for r in [*first["results"], ens]}
    assert first["champion"] == max(every, key=every.get)  # chosen on validation, the ensemble included
    assert boot["n_resamples"] == 2000 and boot["n_cases"] == first["n_test_cases"]
    lo, hi = boot["ndcg@10_diff_ci95"]
    assert lo <= hi


def test_every_model_is_compared_with_the_reference_per_slice(two_runs):
    root, first, _ = two_runs
    versus = first["versus_reference"]
    assert first["reference"] == "content_knn" and set(versus) == set(FAMILIES) - {"content_knn"}
    by_model = {r["model"]: r for r in first["results"]}
    for model, per_slice in versus.items():
        assert set(per_slice) == {"all", *first["test_cases_per_slice"]}
        for name, boot in per_slice.items():
            n = first["n_test_cases"] if name == "all" else first["test_cases_per_slice"][name]
            assert boot["n_cases"] == n
            expected = by_model[model]["test"][name]["ndcg@10"] - by_model["content_knn"]["test"][name]["ndcg@10"]
            assert boot["ndcg@10_diff"] == pytest.approx(expected, abs=1e-9)
            lo, hi = boot["ndcg@10_diff_ci95"]
            assert lo - 1e-9 <= boot["ndcg@10_diff"] <= hi + 1e-9 or lo == hi
    table = (root / "out" / "plugin-tiny-pipeline-cpu.md").read_text()
    assert "minus content_knn's, per slice" in table and "| lightgcn |" in table


def test_side_inputs_cached_on_the_second_run(two_runs):
    root, first, second = two_runs
    assert {name: s["cache"] for name, s in first["side_inputs"].items()} == {"interaction_graph": "miss", "item_text_embeddings": "miss"}
    assert {s["cache"] for s in second["side_inputs"].values()} == {"hit"}
    assert [r["side_inputs"]["item_text_embeddings"]["cache"] for r in second["runs"]] == ["miss", "hit"]
    assert len(list((root / "cache").glob("*.pt"))) == 2
    # seeded: the second run gives the same numbers
    assert second["runs"][0]["test_ndcg@10"] == second["runs"][1]["test_ndcg@10"]
    md = (root / "out" / "plugin-tiny-pipeline-cpu.md").read_text()
    assert "| lightgcn |" in md and "| ensemble |" in md and "cold_item" in md and "95% interval" in md
    assert "item_text_embeddings: " in md and "(disk cache hit)" in md


def test_held_out_slices_get_validation_numbers_to_choose_by(two_runs):
    root, first, _ = two_runs
    counts = first["selection_cases_per_slice"]
    assert counts["cold_user"] > 0  # every cold user of the tiny data has >= 7 interactions
    assert counts.get("cold_item", 0) == first["split"]["cold_item_dropped_valid_cases"]
    for row in first["results"]:
        chosen_by = row["selection_valid"]
        assert chosen_by["warm"]["n_cases"] == first["n_valid_cases"]
        assert chosen_by["all"]["n_cases"] == first["n_valid_cases"] + sum(counts.values())
        assert chosen_by["cold_user"]["n_cases"] == counts["cold_user"]
    # for families without a validation_score of their own the warm slice is what early stopping read
    popularity = next(r for r in first["results"] if r["model"] == "popularity")
    assert popularity["selection_valid"]["warm"]["ndcg@10"] == pytest.approx(popularity["best_valid_ndcg@10"])
    assert "Validation NDCG@10 per slice, the held-out slices included" in (root / "out" / "plugin-tiny-pipeline-cpu.md").read_text()


def test_several_validation_targets_per_new_user_count_each_user_once(tmp_path, tiny_encoder):
    argv = [
        "--source", "synthetic", "--synthetic-users", "60", "--name", "tiny", "--split-mode", "pipeline",
        "--models", "popularity", "--encoder", tiny_encoder, "--device", "cpu", "--text-cache-dir", str(tmp_path / "cache"),
        "--out", str(tmp_path / "out"), "--md-out", str(tmp_path / "out"), "--tag", "targets",
    ]  # fmt: skip
    one = main(argv)
    every = main([*argv, "--cold-user-validation-targets", "all"])
    assert (one["cold_user_validation_targets"], every["cold_user_validation_targets"]) == (1, None)
    users = one["selection_cases_per_slice"]["cold_user"]
    assert every["selection_cases_per_slice"]["cold_user"] > users  # several targets per new user
    cold_users = every["results"][0]["selection_valid"]["cold_user"]
    assert (cold_users["n_users"], cold_users["n_cases"]) == (users, every["selection_cases_per_slice"]["cold_user"])
    # the other slices, and so the warm validation number, are the same cases either way
    assert every["results"][0]["selection_valid"]["warm"] == one["results"][0]["selection_valid"]["warm"]
    text = (tmp_path / "out" / "targets-tiny-pipeline-cpu.md").read_text()
    assert f"cold_user ({users:,} users, {cold_users['n_cases']:,} cases)" in text
    assert "every interaction of each cold user after the shown ones but the last" in text


def test_the_new_item_offset_is_chosen_on_validation_and_every_trial_is_recorded():
    """A stand-in model with a fixed ranking plus the offset on the held-out items: each offset is
    scored on the validation cases with the held-out slices (``pipeline.steps``, what the benchmark
    runs), and the best of those is kept; no test case is read."""
    from dataclasses import dataclass

    import numpy as np
    import pandas as pd
    import torch

    from pipeline.steps import choose_score_time_settings
    from models.split import cold_selection_cases, leave_one_out_split

    rng = np.random.default_rng(0)
    rows = [(u, int(i), t) for u in range(1, 81) for t, i in enumerate(rng.choice(np.arange(1, 41), 12, replace=False))]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    data, summary = leave_one_out_split(interactions, mode="pipeline", seed=0, cold_item_fraction=0.1)
    selection = cold_selection_cases(interactions, summary)
    assert (selection["slice"] == "cold_item").any()
    new = torch.zeros(data.n_items + 1, dtype=torch.bool)
    new[np.searchsorted(np.unique(interactions["item_id"]), summary.cold_item_ids) + 1] = True

    @dataclass(frozen=True)
    class Config:
        new_item_offset: float = 0.0
        short_history_popularity: float = 0.0  # read by nothing here: only the grid is checked

    class StandIn:
        config = Config()
        history_length = None

        def score(self, batch):
            base = torch.linspace(1.0, 0.0, data.n_items + 1).expand(len(batch.items), -1)
            return base + self.config.new_item_offset * new.float()

    model = StandIn()
    valid = pd.concat([data.stage("valid"), selection], ignore_index=True)
    grid = {"new_item_offset": [-5.0, 0.0, 5.0], "short_history_popularity": [1.0], "not_a_field": [3.0]}
    trials = choose_score_time_settings(model, valid, data.n_items, grid)
    # every combination of the two settings, the first one varying slowest
    assert [(t["new_item_offset"], t["short_history_popularity"]) for t in trials] == [(-5.0, 1.0), (0.0, 1.0), (5.0, 1.0)]
    chosen = [t for t in trials if t.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["valid_ndcg@10"]["all"] == max(t["valid_ndcg@10"]["all"] for t in trials)
    assert model.config.new_item_offset == chosen[0]["new_item_offset"]  # the model keeps the chosen one
    # the offset mattered: the cold-item targets are found only when new items are raised
    by_offset = {t["new_item_offset"]: t for t in trials}
    assert by_offset[5.0]["valid_ndcg@10"]["cold_item"] > by_offset[-5.0]["valid_ndcg@10"]["cold_item"] == 0.0
    with pytest.raises(ValueError, match="use the pipeline split"):
        choose_score_time_settings(model, data.stage("valid"), data.n_items, {"new_item_offset": [0.0]})
    assert choose_score_time_settings(model, data.stage("valid"), data.n_items, {"new_item_offset": []}) == []
