"""The claims benchmark's own logic: comparisons read only the claim's slice, and every claim's
variants are real config fields of their family."""

import pytest

from benchmarks.sequential_claims import CLAIMS, compare
from models.registry import build_model


def test_compare_pairs_only_the_cases_of_the_slice():
    reference = {"ranks": [1, 50, 1, 50], "slices": ["warm", "cold_user", "warm", "cold_user"]}
    variant = {"ranks": [50, 1, 50, 1], "slices": reference["slices"]}
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
