"""The claims benchmark's own logic: comparisons read only the claim's slice, and every claim's
variants are real config fields of their family."""

import pytest

from benchmarks import paired_bootstrap, slice_ranks
from benchmarks.sequential_claims import CLAIMS
from models.registry import build_model


def compare(variant: dict, reference: dict, slice_name: str) -> dict:
    """What the claims benchmark computes for a variant against the reference."""
    return paired_bootstrap(slice_ranks(variant, slice_name), slice_ranks(reference, slice_name))


def test_compare_pairs_only_the_cases_of_the_slice():
    slices = {"1": "warm", "2": "cold_user", "3": "warm", "4": "cold_user"}
    reference = {"test_ranks_by_user": {"1": 1, "2": 50, "3": 1, "4": 50}, "test_slices_by_user": slices}
    variant = {"test_ranks_by_user": {"1": 50, "2": 1, "3": 50, "4": 1}, "test_slices_by_user": slices}
    cold = compare(variant, reference, "cold_user")
    assert cold["n_cases"] == 2 and cold["ndcg@10_diff_ci95"][0] == pytest.approx(1.0)  # better on every cold case
    warm = compare(variant, reference, "warm")
    assert warm["ndcg@10_diff_ci95"][1] == pytest.approx(-1.0)  # worse on every warm case
    assert compare(variant, reference, "all")["n_cases"] == 4


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_every_variant_is_a_valid_config(claim):
    spec = CLAIMS[claim]
    for overrides in spec["variants"].values():
        model = build_model(spec["family"], 10, overrides, n_users=5)
        assert all(getattr(model.config, key) == value for key, value in overrides.items())


def test_a_claim_runs_end_to_end_and_a_rerun_of_one_variant_keeps_the_other(tmp_path, monkeypatch):
    import json

    from benchmarks import sequential_claims

    tiny = {"dim": 16, "n_layers": 1, "max_len": 10, "max_epochs": 1}
    argv = ["sequential_claims.py", "--claim", "bert4rec-user-embedding", "--synthetic-users", "60", "--name", "tiny",
            "--device", "cpu", "--models-config", json.dumps(tiny), "--out", str(tmp_path), "--md-out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    sequential_claims.main()
    monkeypatch.setattr("sys.argv", [*argv, "--variants", "with user embedding"])
    sequential_claims.main()
    result = json.loads((tmp_path / "claims-bert4rec-user-embedding-tiny-cpu.json").read_text())
    reference, variant = result["variants"].values()
    assert result["split"]["mode"] == "pipeline" and variant["config"]["use_user_embedding"]
    assert variant["versus_reference"]["n_cases"] == reference["test"]["cold_user"]["n_cases"] > 0
    assert len(result["commands"]) == 2 and "with user embedding" in (tmp_path / "claims-bert4rec-user-embedding-tiny-cpu.md").read_text()
