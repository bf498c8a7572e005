import math

import numpy as np
import pandas as pd
import pytest
import torch

from models.content.content_knn import ContentKNN, ContentKNNConfig
from models.content.item_text import ItemTextEmbeddings
from models.data import HistoryBatch, TrainingData
from models.interface import FitReport
from models.metrics import evaluate

CPU = torch.device("cpu")
N_CIRCLE = 12  # items 1..12 evenly spaced on the unit circle, 30 degrees apart


def embeddings(rows: list[list[float]]) -> ItemTextEmbeddings:
    """Hand-made item embeddings: row i is item i + 1 (row 0 padding is added)."""
    matrix = torch.tensor([[0.0] * len(rows[0])] + rows)
    return ItemTextEmbeddings(matrix=matrix, encoder="hand-made", seconds=0.0, n_without_text=0)


def circle() -> ItemTextEmbeddings:
    angles = [2 * math.pi * k / N_CIRCLE for k in range(N_CIRCLE)]
    return embeddings([[math.cos(a), math.sin(a)] for a in angles])


def training_data(sequences: dict[int, list[int]], n_items: int) -> TrainingData:
    """Per user, the last item is the validation target and the rest is training (no test part)."""
    train_rows, cases = [], []
    for user, seq in sequences.items():
        ts = list(range(1_000, 1_000 + len(seq)))
        train_rows += [(user, item, 4.0, t) for item, t in zip(seq[:-1], ts[:-1])]
        cases.append({
            "case_id": user, "stage": "valid", "user_idx": user, "target_item": seq[-1],
            "target_timestamp": ts[-1], "history": list(seq[:-1]), "history_timestamps": ts[:-1],
            "slice": "warm", "activity_bucket": "1-10",
        })  # fmt: skip
    return TrainingData(
        n_users=max(sequences),
        n_items=n_items,
        train=pd.DataFrame(train_rows, columns=["user_idx", "item_idx", "rating", "timestamp"]),
        valid_cases=pd.DataFrame(cases),
        items=pd.DataFrame({"item_idx": np.arange(1, n_items + 1), "item_id": np.arange(n_items)}),
        users=pd.DataFrame({"user_idx": list(sequences), "user_id": list(sequences)}),
    )


def circle_walks() -> dict[int, list[int]]:
    """User y watched circle items y+3, y+1, y and then y-1, the latest item's unseen neighbour.

    The plain mean of the history points 39 degrees from y, so y+2 (21 degrees off) outranks the
    target y-1 (69 degrees off); a profile weighted towards the latest item y ranks y-1 first.
    """
    on_circle = lambda k: k % N_CIRCLE + 1  # noqa: E731
    return {
        y: [on_circle(y + 3), on_circle(y + 1), on_circle(y), on_circle(y - 1)]
        for y in range(1, N_CIRCLE + 1)
    }


def batch(histories: list[list[int]]) -> HistoryBatch:
    width = max(map(len, histories))
    items = torch.tensor([[0] * (width - len(h)) + h for h in histories])
    users = torch.zeros(len(histories), dtype=torch.long)
    return HistoryBatch(items, torch.zeros_like(items), users)


def fitted(sequences, side, n_items, **config) -> tuple[ContentKNN, FitReport]:
    model = ContentKNN(ContentKNNConfig(n_items, dim=side.dim, **config))
    data = training_data(sequences, n_items)
    report = model.fit(data, CPU, side_inputs={"item_text_embeddings": side}, progress=False)
    return model, report


def test_recommends_the_item_closest_to_the_history_mean():
    side = embeddings([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]])  # 3 leans to 2, 4 apart
    model, _ = fitted({1: [1, 2, 3]}, side, 4, recency_decay_grid=())
    scores = model.score(batch([[1, 2]]))
    mean = torch.tensor([0.5, 0.5, 0.0]) / math.sqrt(0.5)
    torch.testing.assert_close(scores[0], torch.cat([torch.zeros(1), side.matrix[1:] @ mean]))
    assert scores[0, 3] > scores[0, 4]


def test_recency_decay_pulls_the_profile_towards_the_latest_item():
    side = embeddings([[1, 0], [0, 1], [0.8, 0.6], [0.6, 0.8]])  # 3 and 4 mirror around the mean
    plain, _ = fitted({1: [1, 2, 3]}, side, 4, recency_decay=0.0, recency_decay_grid=())
    recent, _ = fitted({1: [1, 2, 3]}, side, 4, recency_decay=1.0, recency_decay_grid=())
    scores_plain, scores_recent = plain.score(batch([[1, 2]]))[0], recent.score(batch([[1, 2]]))[0]
    torch.testing.assert_close(scores_plain[3], scores_plain[4])
    assert scores_recent[4] > scores_recent[3]  # item 2 is the latest


def test_only_the_latest_history_length_items_form_the_profile():
    model, _ = fitted(circle_walks(), circle(), N_CIRCLE, history_length=1, recency_decay_grid=())
    assert model.history_length == 1
    torch.testing.assert_close(model.score(batch([[7, 3]])), model.score(batch([[3]])))


def test_history_length_none_profiles_the_whole_history():
    plain = {"recency_decay_grid": ()}
    whole, report = fitted(circle_walks(), circle(), N_CIRCLE, history_length=None, **plain)
    last_50, report_50 = fitted(circle_walks(), circle(), N_CIRCLE, history_length=50, **plain)
    assert whole.history_length is None
    assert report.best_valid == report_50.best_valid  # validation histories are shorter than 50
    histories = batch([[1] * 30 + [4] * 50])  # 90 degrees apart
    assert not torch.allclose(whole.score(histories), last_50.score(histories))


def test_padding_is_ignored_and_an_empty_history_scores_zero():
    model, _ = fitted(circle_walks(), circle(), N_CIRCLE, recency_decay=0.5, recency_decay_grid=())
    scores = model.score(batch([[4, 5], [0, 0, 4, 5], [0]]))
    torch.testing.assert_close(scores[0], scores[1])
    assert torch.all(scores[2] == 0) and torch.all(scores[:, 0] == 0)
    assert scores.shape == (3, N_CIRCLE + 1)


def test_cold_item_is_ranked_from_its_text():
    side = embeddings([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8], [0.98, 0.2, 0]])
    data = training_data({1: [1, 2, 3], 2: [2, 3, 2]}, 4)
    assert 4 not in set(data.train["item_idx"]) | set(data.valid_cases["target_item"])
    model = ContentKNN(ContentKNNConfig(4, dim=3, recency_decay_grid=()))
    model.fit(data, CPU, side_inputs={"item_text_embeddings": side}, progress=False)
    scores = model.score(batch([[1]]))[0]
    assert int(scores[2:].argmax()) + 2 == 4  # best candidate other than the history item 1


def test_fit_picks_the_decay_with_best_validation_ndcg_from_evaluate():
    grid = (0.0, 3.0)
    model, report = fitted(circle_walks(), circle(), N_CIRCLE, recency_decay_grid=grid)
    ndcgs = [log.valid["ndcg@10"] for log in report.epochs]
    assert [log.epoch for log in report.epochs] == [0, 1]
    assert ndcgs[0] == pytest.approx(1 / math.log2(3))  # the plain mean ranks y+2 above the target
    assert ndcgs[1] == pytest.approx(1.0)
    assert report.best_epoch == 1 and model.recency_decay.item() == pytest.approx(3.0)
    data = training_data(circle_walks(), N_CIRCLE)
    result = evaluate(model.score, data.valid_cases, N_CIRCLE, max_len=model.history_length)
    assert report.best_valid == {k: float(v) for k, v in result.metrics["all"].items()}


def test_reload_from_config_and_state_dict_gives_the_same_scores():
    model, _ = fitted(circle_walks(), circle(), N_CIRCLE, recency_decay_grid=(0.0, 3.0))
    reloaded = type(model)(model.config)
    reloaded.load_state_dict(model.state_dict())
    histories = batch([[1, 2, 3], [9, 10], [12]])
    torch.testing.assert_close(reloaded.score(histories), model.score(histories))
    assert set(model.state_dict()) == {"item_embeddings", "recency_decay"}


def test_missing_side_input_raises_naming_it():
    model = ContentKNN(ContentKNNConfig(N_CIRCLE, dim=2))
    with pytest.raises(ValueError, match="item_text_embeddings"):
        model.fit(training_data(circle_walks(), N_CIRCLE), CPU, side_inputs={}, progress=False)


def test_embeddings_of_another_width_are_refused():
    model = ContentKNN(ContentKNNConfig(N_CIRCLE, dim=384))
    with pytest.raises(ValueError, match="dim"):
        model.fit(
            training_data(circle_walks(), N_CIRCLE),
            CPU,
            side_inputs={"item_text_embeddings": circle()},
            progress=False,
        )
