"""Basic two-tower: tower shapes and normalisation, the logQ-corrected in-batch loss against a
hand computation, same-item masking, features from the side tables, cold users from their
history, items without interactions from their metadata, save/load and resume."""

import math

import pandas as pd
import pytest
import torch

from models.hashing import stable_row
from models.content.two_tower import (
    AGE_BINS,
    NextItemExamples,
    TwoTower,
    TwoTowerConfig,
    in_batch_softmax_loss,
    item_attribute_rows,
    user_demographic_rows,
)
from models.data import HistoryBatch, TrainingData
from models.metrics import evaluate
from models.registry import build_model, load_model, save_model
from tests.models.conftest import CHAIN_LEN

CPU = torch.device("cpu")
COLD_ITEMS = [5, 25, 45]  # one per chain: no training row, no validation target
COLD_USERS = [58, 59, 60]  # one per chain: no training row, no validation case
TINY = dict(dim=16, history_length=20, dropout=0.0, lr=0.01, batch_size=64, num_threads=1)


def chain_of(item: int) -> int:
    return (item - 1) // CHAIN_LEN


def history_batch(users, items) -> HistoryBatch:
    items = torch.as_tensor(items)
    return HistoryBatch(items, torch.zeros_like(items), torch.as_tensor(users))


def planted_content(planted_split) -> TrainingData:
    """The planted chains with metadata that tells the chains apart, one cold item per chain
    and one cold user per chain."""
    data = planted_split.training_data()
    items = data.items.copy()
    chain = (items["item_idx"] - 1) // CHAIN_LEN
    items["kind"] = "movie"
    items["genres"] = [f"Genre{c}|Drama" for c in chain]
    items["release_date"] = [f"{1980 + 10 * c}-06-01" for c in chain]
    items["cast"] = [f"Actor{c}a|Actor{c}{i % 3}" for c, i in zip(chain, items["item_idx"])]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS) & ~data.train["user_idx"].isin(COLD_USERS)]
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS) & ~data.valid_cases["user_idx"].isin(COLD_USERS)]
    return TrainingData(data.n_users, data.n_items, train.reset_index(drop=True), valid.reset_index(drop=True), items, data.users)


@pytest.fixture(scope="module")
def planted(planted_split) -> TrainingData:
    return planted_content(planted_split)


@pytest.fixture(scope="module")
def untrained_and_trained(planted):
    config = TwoTowerConfig(planted.n_items, planted.n_users, **TINY, max_epochs=25, patience=5)
    untrained = TwoTower(config)
    untrained.attach(planted)
    untrained.eval()
    model = TwoTower(config)
    report = model.fit(planted, CPU, progress=False)
    return untrained, model, report


def valid_ndcg(model, data) -> float:
    return evaluate(model.score, data.valid_cases, data.n_items, max_len=model.history_length).metrics["all"]["ndcg@10"]


# ----- towers and loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_towers_give_unit_vectors_of_the_model_width(planted, pooling):
    model = TwoTower(TwoTowerConfig(planted.n_items, planted.n_users, **{**TINY, "dropout": 0.1}, pooling=pooling))
    model.attach(planted)
    model.train()
    items = torch.tensor([0, 1, 5, 60])
    item_vectors = model.embed_items(items)
    history = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6]])
    user_vectors = model.embed_users(torch.tensor([1, 0]), torch.tensor([1, 0]), history, model.embed_items(history.flatten()).view(2, 4, -1))
    assert item_vectors.shape == (4, 16) and user_vectors.shape == (2, 16)
    torch.testing.assert_close(item_vectors.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(user_vectors.norm(dim=1), torch.ones(2))
    model.eval()
    scores = model.score(history_batch([1, 0], history))
    assert scores.shape == (2, planted.n_items + 1)
    assert scores[:, 1:].abs().max() <= 1.0 + 1e-5  # cosines
    assert torch.all(scores[:, 0] == 0)  # the padding column


def test_logq_corrected_loss_matches_a_hand_computed_case():
    """3 rows, each positive a different item: logit[i][j] = <u_i, v_j> / t - log q_j."""
    u = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    v = [[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]]
    q = [0.7, 0.2, 0.1]
    t = 0.5
    expected = 0.0
    for i in range(3):
        logits = [sum(a * b for a, b in zip(u[i], v[j])) / t - math.log(q[j]) for j in range(3)]
        expected += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    expected /= 3
    loss = in_batch_softmax_loss(torch.tensor(u), torch.tensor(v), torch.tensor([7, 3, 9]), torch.tensor(q).log(), t)
    assert expected == pytest.approx(1.18191, abs=1e-5)  # rows' logits: [1.957 1.609 4.303], [1.557 3.609 2.303], [2.277 3.209 3.503]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    uncorrected = in_batch_softmax_loss(torch.tensor(u), torch.tensor(v), torch.tensor([7, 3, 9]), torch.zeros(3), t)
    assert uncorrected.item() == pytest.approx(0.98853, abs=1e-5)  # without logQ: another value


def test_in_batch_duplicate_positive_is_not_a_negative():
    """Rows 0 and 1 share their positive item: neither counts the other's column as a
    negative, so the loss is that of rows 0 and 1 seeing only {itself, row 2's item}."""
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    v = torch.tensor([[0.8, 0.6], [0.8, 0.6], [1.0, 0.0]])
    log_q = torch.tensor([0.4, 0.4, 0.2]).log()
    t = 0.5
    logits = (u @ v.T / t - log_q).tolist()

    def row_loss(i, columns):
        return -logits[i][i] + math.log(sum(math.exp(logits[i][j]) for j in columns))

    expected = (row_loss(0, [0, 2]) + row_loss(1, [1, 2]) + row_loss(2, [0, 1, 2])) / 3
    loss = in_batch_softmax_loss(u, v, torch.tensor([4, 4, 7]), log_q, t)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the same vectors with distinct item ids do count each other
    unmasked = in_batch_softmax_loss(u, v, torch.tensor([4, 5, 7]), log_q, t)
    assert unmasked.item() > loss.item() + 0.1


# ----- features and examples ---------------------------------------------------------------------


def test_item_features_are_hashed_per_field_and_absent_columns_give_none():
    items = pd.DataFrame({
        "item_idx": [2, 1, 3],
        "genres": ["Drama|Comedy", "", "Drama"],
        "release_date": ["1994-05-01", "", "not a date"],
        "network": pd.array(["HBO", None, "Drama"], dtype="string"),  # "Drama" as a network is not the genre
    })  # fmt: skip
    rows = item_attribute_rows(items, 4, ("year", "genres", "network", "cast"), buckets=1000, width=3)
    bucket = lambda field, value: stable_row(f"{field}={value}", 1000)  # noqa: E731
    assert rows.shape == (5, 3)
    assert rows[2].tolist() == [bucket("year", "1990s"), bucket("genres", "Drama"), bucket("genres", "Comedy")]  # cut at width
    assert rows[1].tolist() == [0, 0, 0]  # nothing known
    assert rows[3].tolist() == [bucket("genres", "Drama"), bucket("network", "Drama"), 0]
    assert bucket("genres", "Drama") != bucket("network", "Drama")
    assert rows[0].tolist() == rows[4].tolist() == [0, 0, 0]  # padding, and an item the table lacks
    assert bool((rows >= 0).all() and (rows < 1000).all())


def test_user_demographics_go_to_their_rows_and_absent_ones_stay_zero():
    users = pd.DataFrame({
        "user_idx": [1, 2, 3],
        "age": pd.array([17, None, 56], dtype="Int64"),
        "gender": pd.array(["F", "M", ""], dtype="string"),
    })  # fmt: skip
    rows = user_demographic_rows(users, 4, ("age", "gender", "occupation"), buckets=500)
    bucket = lambda field, value: stable_row(f"{field}={value}", 500)  # noqa: E731
    assert rows.shape == (5, 3)
    assert rows[1].tolist() == [bucket("age", "0"), bucket("gender", "F"), 0]
    assert rows[2].tolist() == [0, bucket("gender", "M"), 0]
    assert rows[3].tolist() == [bucket("age", str(len(AGE_BINS))), 0, 0]
    assert rows[0].tolist() == rows[4].tolist() == [0, 0, 0]  # unknown user, and a user the table lacks
    assert user_demographic_rows(users[["user_idx"]], 4, ("age", "gender"), 500).count_nonzero() == 0


def test_training_examples_are_each_event_after_the_first_with_the_events_before_it():
    train = pd.DataFrame({"user_idx": [1, 1, 1, 1, 2, 2, 3], "item_idx": [5, 6, 7, 8, 9, 5, 4]})
    examples = NextItemExamples(train, width=2)
    assert len(examples) == 4  # user 1: 3, user 2: 1, user 3 (one event): none
    batches = list(examples.epoch_batches(10, 0.0, torch.Generator().manual_seed(0)))
    assert len(batches) == 1
    id_rows, demo_rows, history, positives = batches[0]
    got = sorted((int(u), int(p), history[k].tolist()) for k, (u, p) in enumerate(zip(id_rows, positives)))
    assert got == [(1, 6, [0, 5]), (1, 7, [5, 6]), (1, 8, [6, 7]), (2, 5, [0, 9])]
    assert torch.equal(id_rows, demo_rows)
    counts = examples.item_counts(9)
    assert counts.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    # every user unknown: ids and demographics are replaced by 0, independently
    id_rows, demo_rows, _, _ = next(examples.epoch_batches(10, 0.999999, torch.Generator().manual_seed(0)))
    assert id_rows.count_nonzero() == 0 and demo_rows.count_nonzero() == 0


# ----- training and scores -----------------------------------------------------------------------


def test_fit_improves_validation_ndcg_over_the_untrained_model(untrained_and_trained, planted):
    untrained, model, report = untrained_and_trained
    before, after = valid_ndcg(untrained, planted), valid_ndcg(model, planted)
    assert after > before + 0.3, (before, after)
    assert report.best_valid["ndcg@10"] == pytest.approx(after)
    assert report.epochs[-1].train_loss < 0.8 * report.epochs[0].train_loss
    assert model.log_q[COLD_ITEMS].max() < -20  # never a positive: probability ~0
    assert not model.item_trained[COLD_ITEMS].any() and not model.user_trained[COLD_USERS].any()


def test_unknown_user_is_scored_from_their_history(untrained_and_trained):
    """A user with no training interactions (and user 0) is scored from the history alone: the
    same as user 0, whatever their id row holds, and their chain's items rank first."""
    _, model, _ = untrained_and_trained
    for user, chain in zip(COLD_USERS, (0, 1, 2)):
        history = [[chain * CHAIN_LEN + k for k in (2, 3, 4, 6)]]
        scores = model.score(history_batch([user], history))
        torch.testing.assert_close(scores, model.score(history_batch([0], history)))
        scores = scores[0, 1:].clone()
        scores[torch.tensor(history[0]) - 1] = float("-inf")
        top = (scores.topk(10).indices + 1).tolist()
        assert sum(chain_of(i) == chain for i in top) >= 8, (chain, top)
    with torch.no_grad():
        saved = model.user_tower.user_emb.weight[COLD_USERS[0]].clone()
        model.user_tower.user_emb.weight[COLD_USERS[0]] += 5.0
        batch = history_batch([COLD_USERS[0], 1], [[1, 2, 3], [1, 2, 3]])
        moved = model.score(batch)
        model.user_tower.user_emb.weight[COLD_USERS[0]] = saved
        model.user_tower.user_emb.weight[1] += 5.0
        moved_warm = model.score(batch)
        model.user_tower.user_emb.weight[1] -= 5.0
    torch.testing.assert_close(moved[0], model.score(batch)[0])  # the cold user's id row is unused
    assert not torch.allclose(moved_warm[1], model.score(batch)[1])  # a trained user's is used


def test_items_without_interactions_are_ranked_from_their_metadata(untrained_and_trained, planted):
    """A cold item uses the unknown id row, whatever its own row holds; its metadata puts a
    chain c history's cold item above the other chains' cold items."""
    _, model, _ = untrained_and_trained
    wins = 0
    for history, target in zip(planted.valid_cases["history"], planted.valid_cases["target_item"]):
        scores = model.score(history_batch([0], [history[-20:]]))[0]
        own = COLD_ITEMS[chain_of(target)]
        wins += bool(scores[own] > max(scores[i] for i in COLD_ITEMS if i != own))
    assert wins >= 0.85 * len(planted.valid_cases), (wins, len(planted.valid_cases))
    with torch.no_grad():
        model.item_tower.item_emb.weight[COLD_ITEMS[0]] += 5.0
        model.item_tower.item_emb.weight[1] += 5.0
        moved = model.embed_items(torch.tensor([COLD_ITEMS[0], 1]))
        model.item_tower.item_emb.weight[COLD_ITEMS[0]] -= 5.0
        model.item_tower.item_emb.weight[1] -= 5.0
    torch.testing.assert_close(moved[0], model.item_vectors[COLD_ITEMS[0]])
    assert not torch.allclose(moved[1], model.item_vectors[1])


def test_demographics_move_the_user_vector_where_the_users_table_has_them(planted):
    users = planted.users.copy()
    users["gender"] = ["F" if u % 2 else "M" for u in users["user_idx"]]
    users["age"] = pd.array([20 + u % 40 for u in users["user_idx"]], dtype="Int64")
    data = TrainingData(planted.n_users, planted.n_items, planted.train, planted.valid_cases, planted.items, users)
    model = TwoTower(TwoTowerConfig(planted.n_items, planted.n_users, **TINY, max_epochs=2))
    model.fit(data, CPU, progress=False)
    assert model.user_demographics[1:, :2].ne(0).all() and model.user_demographics[:, 2].eq(0).all()  # no occupation column
    history = [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
    scores = model.score(history_batch([COLD_USERS[0], COLD_USERS[1], 0], history))  # two cold users: F 38, M 39
    assert not torch.allclose(scores[0], scores[1]) and not torch.allclose(scores[0], scores[2])


def test_history_longer_than_history_length_and_pad_columns_change_no_score(untrained_and_trained):
    _, model, _ = untrained_and_trained
    narrow = model.score(history_batch([1, 0], [[1, 2], [0, 22]]))
    wide = model.score(history_batch([1, 0], [[0, 0, 0, 1, 2], [0, 0, 0, 0, 22]]))
    torch.testing.assert_close(narrow, wide)
    long = list(range(1, 41))  # 40 items, history_length 20: only the latest 20 count
    torch.testing.assert_close(model.score(history_batch([0], [long])), model.score(history_batch([0], [long[-20:]])))


def test_save_load_round_trip_gives_identical_scores(untrained_and_trained, tmp_path):
    _, model, _ = untrained_and_trained
    save_model(tmp_path / "m.pt", "two_tower", model)
    family, loaded = load_model(tmp_path / "m.pt")
    batch = history_batch([1, 0, COLD_USERS[0]], [[0, 1, 2], [3, 4, 5], [21, 22, 23]])
    assert family == "two_tower" and loaded.config == model.config
    assert torch.equal(loaded.score(batch), model.score(batch))


def test_resumed_fit_matches_an_uninterrupted_one(planted, tmp_path):
    def fit(max_epochs, checkpoint_dir=None):
        model = build_model("two_tower", planted.n_items, {**TINY, "max_epochs": max_epochs, "patience": 99}, n_users=planted.n_users)
        return model, model.fit(planted, CPU, progress=False, checkpoint_dir=checkpoint_dir)

    fit(2, tmp_path)  # "killed" after 2 epochs
    resumed, report = fit(4, tmp_path)
    whole, whole_report = fit(4)
    batch = history_batch([1, 2, 0], [[1, 2, 3], [21, 22, 23], [41, 42, 43]])
    assert [e.epoch for e in report.epochs] == [0, 1, 2, 3]
    assert [e.train_loss for e in report.epochs] == [e.train_loss for e in whole_report.epochs]
    torch.testing.assert_close(resumed.score(batch), whole.score(batch), rtol=0, atol=0)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="pooling"):
        TwoTowerConfig(10, 5, pooling="max")
    with pytest.raises(ValueError, match="temperature"):
        TwoTowerConfig(10, 5, temperature=0.0)
    with pytest.raises(ValueError, match="item_id_dropout"):
        TwoTowerConfig(10, 5, item_id_dropout=1.0)
    with pytest.raises(ValueError, match="user_features.*'zip'"):
        TwoTowerConfig(10, 5, user_features=("age", "zip"))


def test_a_model_sized_for_another_split_says_so(planted):
    model = TwoTower(TwoTowerConfig(planted.n_items, planted.n_users - 1, **TINY, max_epochs=1))
    with pytest.raises(ValueError, match="n_users=data.n_users"):
        model.fit(planted, CPU, progress=False)
