import copy
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from models.data import HistoryBatch, TrainingData, history_batches
from models.ensemble import Ensemble, EnsembleConfig, fit_blend
from models.member_scores import member_batch, member_scores, score_column
from models.metrics import evaluate
from models.registry import build_model


# ----- fit_blend on hand-made scores ----------------------------------------------------------


@dataclass(frozen=True)
class FixedConfig:
    n_items: int


class FixedScores(nn.Module):
    """score(batch)[b] = table[batch.users[b]]: one hand-written score row per user."""

    history_length = None

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
        self.config = FixedConfig(self.table.shape[1] - 1)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.table[batch.users]


N_ITEMS, N_CASES = 30, 20


def _cases(targets, stage="valid", first_id=0):
    """Case u (user u + 1) has an empty history and target ``targets[u]``."""
    n = len(targets)
    return pd.DataFrame({
        "case_id": np.arange(first_id, first_id + n), "stage": stage,
        "user_idx": np.arange(1, n + 1), "target_item": targets, "target_timestamp": 0,
        "history": [[] for _ in range(n)], "history_timestamps": [[] for _ in range(n)],
        "slice": "warm", "activity_bucket": "1-10",
    })  # fmt: skip


def _scores(targets, right, seed):
    """Uniform (0.01, 1) noise; the target scores 10 in the cases where ``right``, else 0 (last)."""
    table = np.random.default_rng(seed).uniform(0.01, 1.0, (len(targets) + 1, N_ITEMS + 1))
    table[0] = 0.0
    rows = np.arange(1, len(targets) + 1)
    table[rows, targets] = np.where(right, 10.0, 0.0)
    return table


TARGETS = np.random.default_rng(0).integers(1, N_ITEMS + 1, N_CASES)
FIRST_HALF = np.arange(N_CASES) < N_CASES // 2


def _table(right_a, right_b, stage="valid", first_id=0, top_k=N_ITEMS):
    members = {
        "a": FixedScores(_scores(TARGETS, right_a, seed=1)),
        "b": FixedScores(_scores(TARGETS, right_b, seed=2)),
    }
    return member_scores(members, _cases(TARGETS, stage, first_id), N_ITEMS, top_k=top_k)


def test_fit_blend_puts_all_weight_on_a_perfect_member():
    fit = fit_blend(_table(np.ones(N_CASES, bool), np.zeros(N_CASES, bool)), ["a", "b"])
    assert fit.weights == {"a": 1.0, "b": 0.0}
    assert fit.blend == 1.0 and fit.member_alone == {"a": 1.0, "b": 0.0}
    assert fit.n_cases == N_CASES


def test_fit_blend_beats_members_that_are_right_on_different_halves():
    fit = fit_blend(_table(FIRST_HALF, ~FIRST_HALF), ["a", "b"])
    assert fit.member_alone == {"a": 0.5, "b": 0.5}
    assert fit.blend == 1.0 > max(fit.member_alone.values())
    assert min(fit.weights.values()) > 0 and sum(fit.weights.values()) == pytest.approx(1.0)


def test_fit_blend_is_deterministic():
    table = _table(FIRST_HALF, ~FIRST_HALF)
    assert fit_blend(table, ["a", "b"]).weights == fit_blend(table, ["a", "b"]).weights


def test_fit_blend_ignores_test_rows():
    valid = _table(np.ones(N_CASES, bool), np.zeros(N_CASES, bool))
    # on the test cases b is perfect and a always wrong: fitting on them would pick b
    test = _table(np.zeros(N_CASES, bool), np.ones(N_CASES, bool), "test", first_id=N_CASES)
    both = fit_blend(pd.concat([valid, test], ignore_index=True), ["a", "b"])
    assert both.weights == fit_blend(valid, ["a", "b"]).weights == {"a": 1.0, "b": 0.0}
    assert both.n_cases == N_CASES
    with pytest.raises(ValueError, match="no validation rows"):
        fit_blend(test, ["a", "b"])
    with pytest.raises(ValueError, match="stage"):
        fit_blend(valid.drop(columns="stage"), ["a", "b"])


def test_fit_blend_counts_a_target_outside_the_candidates_as_zero():
    # a puts the target first in half the cases and last in the others; top-1 candidates drop those
    table = _table(FIRST_HALF, np.zeros(N_CASES, bool), top_k=1)
    fit = fit_blend(table, ["a", "b"])
    assert fit.n_target_in_candidates == N_CASES // 2
    assert fit.member_alone["a"] == 0.5 and fit.blend == 0.5


def test_fit_blend_reports_flat_numbers():
    fit = fit_blend(_table(np.ones(N_CASES, bool), np.zeros(N_CASES, bool)), ["a", "b"])
    flat = fit.to_dict()
    assert flat["weight/a"] == 1.0 and flat["ndcg@10"] == 1.0 and flat["ndcg@10/b"] == 0.0


# ----- the Ensemble module, with real registry members ----------------------------------------


@pytest.fixture(scope="module")
def members(planted_split):
    data = TrainingData(
        n_users=planted_split.n_users,
        n_items=planted_split.n_items,
        train=planted_split.train,
        valid_cases=planted_split.stage("valid"),
        items=planted_split.items,
        users=planted_split.users,
    )
    cpu = torch.device("cpu")
    popularity = build_model("popularity", planted_split.n_items)
    popularity.fit(data, cpu, progress=False)
    ease = build_model("ease", planted_split.n_items, {"l2_grid": [50.0]})
    ease.fit(data, cpu, progress=False)
    torch.manual_seed(0)  # an untrained SASRec: random but fixed scores that read 5 items
    sasrec = build_model("sasrec", planted_split.n_items, {"dim": 16, "n_layers": 1, "max_len": 5})
    return {"popularity": popularity, "ease": ease, "sasrec": sasrec.eval()}


def _hand_blend(members, weights, batch, n_items):
    """Σ w_m z_m by numpy, z over items 1..n_items not in the batch's history, row by row."""
    out = np.zeros((batch.items.shape[0], n_items + 1))
    for name, weight in weights.items():
        model = members[name]
        scores = model.score(member_batch(batch, model.history_length)).double().numpy()
        for row, history in enumerate(batch.items.tolist()):
            kept = sorted(set(range(1, n_items + 1)) - set(history))
            values = scores[row, kept]
            out[row] += weight * (scores[row] - values.mean()) / values.std()
    out[:, 0] = 0.0
    return out


def _first_batch(cases, max_len):
    batch, _ = next(history_batches(cases, 64, max_len))
    return batch


def test_history_length_is_the_longest_members_or_none(members):
    pick = {m: members[m] for m in ("popularity", "sasrec")}
    assert Ensemble.from_members(pick, {"popularity": 0.5, "sasrec": 0.5}).history_length == 5
    weights = {m: 1 / 3 for m in members}
    assert Ensemble.from_members(members, weights).history_length is None  # ease reads it all


def test_score_equals_the_hand_blend(members, planted_split):
    weights = {"popularity": 0.2, "ease": 0.5, "sasrec": 0.3}
    ensemble = Ensemble.from_members(members, weights)
    batch = _first_batch(planted_split.stage("test"), max_len=40)
    expected = _hand_blend(members, weights, batch, planted_split.n_items)
    np.testing.assert_allclose(ensemble.score(batch).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_score_matches_the_member_table_on_its_candidates(members, planted_split):
    pick = {m: members[m] for m in ("popularity", "sasrec")}  # the ensemble sees 5 items
    weights = {"popularity": 0.4, "sasrec": 0.6}
    ensemble = Ensemble.from_members(pick, weights)
    cases = planted_split.stage("valid")
    table = member_scores(pick, cases, planted_split.n_items, top_k=10)
    batch = _first_batch(cases, max_len=ensemble.history_length)
    scores = ensemble.score(batch).numpy()
    rows = table.set_index("case_id").index.map(dict(zip(cases["case_id"], range(len(cases)))))
    blended = sum(w * table[score_column(m)].to_numpy() for m, w in weights.items())
    np.testing.assert_allclose(scores[rows, table["item_idx"]], blended, rtol=1e-5, atol=1e-5)


def test_evaluator_ranks_the_ensemble_on_the_full_catalogue(members, planted_split):
    cases, n_items = planted_split.stage("test"), planted_split.n_items
    only_ease = Ensemble.from_members(members, {"popularity": 0, "ease": 1, "sasrec": 0})
    alone = evaluate(members["ease"].score, cases, n_items, max_len=None)
    blended = evaluate(only_ease.score, cases, n_items, max_len=only_ease.history_length)
    assert blended.per_case["rank"].tolist() == alone.per_case["rank"].tolist()
    mixed = Ensemble.from_members(members, {"popularity": 0.2, "ease": 0.5, "sasrec": 0.3})
    result = evaluate(mixed.score, cases, n_items, max_len=mixed.history_length)
    assert result.metrics["all"]["n_cases"] == len(cases)
    assert result.per_case["rank"].between(1, n_items).all()


def test_blend_fitted_on_member_scores_builds_an_ensemble(members, planted_split):
    table = member_scores(members, planted_split.cases, planted_split.n_items, top_k=20)
    fit = fit_blend(table, list(members))
    assert fit.n_cases == len(planted_split.stage("valid"))
    assert fit.blend >= max(fit.member_alone.values())
    ensemble = Ensemble.from_members(members, fit.weights)
    assert ensemble.config.weights == pytest.approx(tuple(fit.weights.values()))


def test_state_dict_and_config_round_trip(members, planted_split, tmp_path):
    ensemble = Ensemble.from_members(members, {"popularity": 0.2, "ease": 0.5, "sasrec": 0.3})
    torch.save({"config": asdict(ensemble.config), "state_dict": ensemble.state_dict()},
               tmp_path / "ensemble.pt")  # fmt: skip
    saved = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    fresh = Ensemble(EnsembleConfig(**saved["config"]))
    fresh.load_state_dict(saved["state_dict"])
    batch = _first_batch(planted_split.stage("test"), max_len=40)
    assert torch.equal(fresh.score(batch), ensemble.score(batch))


def test_from_members_copies_the_member_weights(members, planted_split):
    popularity = copy.deepcopy(members["popularity"])
    ensemble = Ensemble.from_members({"popularity": popularity}, {"popularity": 1.0})
    before = ensemble.members["popularity"].counts.clone()
    popularity.counts.add_(1.0)
    assert torch.equal(ensemble.members["popularity"].counts, before)


def test_fit_says_how_an_ensemble_is_made(members):
    ensemble = Ensemble.from_members({"ease": members["ease"]}, {"ease": 1.0})
    with pytest.raises(NotImplementedError, match="fit_blend"):
        ensemble.fit(None, torch.device("cpu"))


def test_weights_must_lie_on_the_simplex_and_name_the_members(members):
    with pytest.raises(ValueError, match="sum to 1"):
        EnsembleConfig(n_items=3, members=("a",), weights=(0.5,), member_configs=("{}",))
    with pytest.raises(ValueError, match="weights name"):
        Ensemble.from_members({"ease": members["ease"]}, {"sasrec": 1.0})


def test_fit_blend_counts_ties_against_the_target():
    # one case, three candidates a cannot tell apart: the target ranks 3rd, NDCG@10 = 1/log2(4)
    table = pd.DataFrame({
        "case_id": [7, 7, 7], "stage": "valid", "item_idx": [1, 2, 3], "score_a": [0.0, 0.0, 0.0],
        "is_target": [False, True, False], "target_in_candidates": True,
    })  # fmt: skip
    fit = fit_blend(table, ["a"])
    assert fit.weights == {"a": 1.0} and fit.blend == pytest.approx(0.5)
