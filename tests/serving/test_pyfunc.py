"""The served pyfunc (serving/pyfunc.py): the fast ``predict`` returns what a straightforward
implementation returns, for every family; threads are set deliberately; and the request formats
MLflow documents reach it through MLflow's own scoring-server parsing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from models.data import HistoryBatch, left_pad
from models.ensemble import Ensemble
from models.metrics import exclusion_mask
from models.registry import FAMILIES as REGISTRY
from models.registry import build_model, save_model, trainable_families
from serving.pyfunc import INFERENCE_THREADS_ENV, SIGNATURE, TopKRecommender, _answer_frame, inference_threads
from tasks.tracking import PYFUNC_MODEL_FILE, PYFUNC_REQUIREMENTS
from tests.conftest import tiny_config

N_ITEMS = 30
RAW = 1000  # raw id of item_idx i is RAW + i
# Every trainable family of the registry at its test size (tests.conftest.tiny_config), windows
# shorter than some histories below, then the ensemble of them all.
TINY = {family: tiny_config(family, side_input_width=8, dim=8, max_len=6, history_length=5) for family in trainable_families()}
FAMILIES = [*TINY, "ensemble"]
DAY = 86_400
# histories as a caller sends them: short, longer than max_len, with unknown ids, repeated ids,
# empty, all unknown
HISTORIES = [
    [1003, 1007, 1001],
    [1000 + i for i in (5, 9, 2, 14, 21, 3, 8, 30, 11)],
    [1004, 999_999, 1010, 77, 1004],
    [],
    [5, 6],
    [1029],
]
TIMESTAMPS = [[1_600_000_000 + d * DAY * (r + 1) for d in range(len(h))] for r, h in enumerate(HISTORIES)]


def reference_predict(recommender: TopKRecommender, model_input: pd.DataFrame, k: int) -> pd.DataFrame:
    """The straightforward implementation (the pyfunc before it was made fast): a dict per id,
    Python lists, ``left_pad``, ``exclusion_mask``, ``masked_fill``, ``topk``."""
    index_of = {int(raw): idx for idx, raw in enumerate(recommender.raw_ids.tolist()) if idx}
    raw = list(model_input["history"])
    if "history_timestamps" in model_input:
        times = list(model_input["history_timestamps"])
    else:
        times = [[0] * len(h) for h in raw]
    known = [[(index_of[i], t) for i, t in zip(h, ts) if i in index_of] for h, ts in zip(raw, times)]
    histories = [[i for i, _ in pairs] for pairs in known]
    unknown = [len(h) - len(pairs) for h, pairs in zip(raw, known)]
    width = recommender.history_length or max(1, max((len(h) for h in histories), default=1))
    batch = HistoryBatch(
        items=left_pad(histories, width),
        timestamps=left_pad([[t for _, t in pairs] for pairs in known], width),
        users=torch.zeros(len(histories), dtype=torch.long),
    )
    with torch.inference_mode():
        scores = recommender.model.score(batch).float()
        seen = exclusion_mask(histories, scores.shape[1] - 1)
        seen[:, 0] = True
        scores = scores.masked_fill(seen, float("-inf"))
        top = torch.topk(scores, k=min(k, scores.shape[1] - 1), dim=1).indices.numpy()
    return pd.DataFrame({"items": [list(recommender.raw_ids[t]) for t in top], "unknown_items": unknown})


def _randomised(family: str, seed: int):
    """A tiny model of ``family`` whose float weights and buffers are random (distinct scores)."""
    if family == "ensemble":
        members = {f: _randomised(f, seed + i) for i, f in enumerate(TINY)}
        return Ensemble.from_members(members, {f: 1.0 + i for i, f in enumerate(members)})
    model = build_model(family, N_ITEMS, TINY[family], n_users=5)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point() and tensor.dim() > 0:
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """family -> {"weights": path, "item_map": path}, every family saved as the pipeline saves it."""
    folder = tmp_path_factory.mktemp("pyfunc")
    item_map = folder / "item_map.parquet"
    pd.DataFrame({"item_idx": range(1, N_ITEMS + 1), "item_id": range(RAW + 1, RAW + N_ITEMS + 1)}).to_parquet(item_map)
    out = {}
    for i, family in enumerate(FAMILIES):
        save_model(folder / f"{family}.pt", family, _randomised(family, seed=10 * i))
        out[family] = {"weights": str(folder / f"{family}.pt"), "item_map": str(item_map)}
    return out


@pytest.fixture
def restore_threads(monkeypatch):
    threads = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(threads)


def _loaded(artifacts: dict) -> TopKRecommender:
    recommender = TopKRecommender()
    recommender.load_context(SimpleNamespace(artifacts=artifacts))
    return recommender


@pytest.mark.parametrize("family", FAMILIES)
def test_predictions_equal_the_straightforward_implementation(artifacts, family, restore_threads):
    recommender = _loaded(artifacts[family])
    frames = {
        "histories": pd.DataFrame({"history": HISTORIES}),
        "with timestamps": pd.DataFrame({"history": HISTORIES, "history_timestamps": TIMESTAMPS}),
        "one user": pd.DataFrame({"history": [HISTORIES[1]]}),
        # shorter than max_len: the pyfunc's batch is cut to 2 columns, the reference's is not
        "short histories": pd.DataFrame({"history": [[1003, 1007], [1029]]}),
    }
    for name, frame in frames.items():
        for k in (1, 5, 10):
            got = recommender.predict(None, frame, params={"k": k})
            want = reference_predict(recommender, frame, k)
            assert got["items"].tolist() == [[int(i) for i in row] for row in want["items"]], (family, name, k)
            assert got["unknown_items"].tolist() == want["unknown_items"].tolist(), (family, name, k)
            assert list(got.columns) == ["items", "unknown_items"]


# the families that opt in to a traced single-row scorer, and the ensemble (its members' traces)
TRACED = [*(f for f in TINY if getattr(REGISTRY[f].module, "single_row_trace", False)), "ensemble"]


@pytest.mark.parametrize("family", FAMILIES)
def test_one_user_per_request_gets_the_answer_of_score(artifacts, family, restore_threads):
    """A request of one user takes the traced single-row scorer where the family has one
    (serving.inference); each history alone (long, with unknown ids, empty, all unknown, one
    item) gets the straightforward implementation's answer, which calls score."""
    recommender = _loaded(artifacts[family])
    assert (recommender.single_row is not None) == (family in TRACED)
    for history, stamps in zip(HISTORIES, TIMESTAMPS):
        frame = pd.DataFrame({"history": [history], "history_timestamps": [stamps]})
        got = recommender.predict(None, frame, params={"k": 5})
        want = reference_predict(recommender, frame, 5)
        assert got["items"].tolist() == [[int(i) for i in row] for row in want["items"]], (family, history)


@pytest.mark.parametrize("family", FAMILIES)
def test_columns_of_padding_change_no_score(family):
    """What lets predict cut its batch to the longest history: every family reads histories
    right-aligned, so left columns that are padding in every row change no score."""
    model = _randomised(family, seed=3)
    items = torch.tensor([[3, 7, 1], [0, 0, 29], [0, 12, 12]])
    stamps = torch.tensor([[1, 2, 3], [0, 0, 5], [0, 4, 9]]) * DAY + 1_600_000_000
    users = torch.zeros(3, dtype=torch.long)
    with torch.inference_mode():
        narrow = model.score(HistoryBatch(items, stamps, users))
        wide = model.score(HistoryBatch(left_pad(items.tolist(), 6), left_pad(stamps.tolist(), 6), users))
    torch.testing.assert_close(narrow, wide, rtol=1e-5, atol=1e-5)


def test_history_excluded_unknown_ids_counted_padding_never_recommended(artifacts, restore_threads):
    recommender = _loaded(artifacts["sasrec"])
    out = recommender.predict(None, pd.DataFrame({"history": HISTORIES}), params={"k": N_ITEMS})
    assert out["unknown_items"].tolist() == [0, 0, 2, 0, 2, 0]
    for history, items in zip(HISTORIES, out["items"]):
        known = {i for i in history if RAW < i <= RAW + N_ITEMS}
        # k beyond the candidates: every unseen item once, never the history, never padding
        assert len(items) == N_ITEMS - len(known) and len(set(items)) == len(items)
        assert not set(items) & known and RAW not in items and 0 not in items
        assert set(items) <= set(range(RAW + 1, RAW + N_ITEMS + 1))


def test_other_columns_and_a_dict_of_columns_give_the_same_answer(artifacts, restore_threads):
    """The history is read out of the frame as a whole: extra columns of other types change
    nothing, and a dict of columns (what some callers hand a pyfunc) reads the same."""
    recommender = _loaded(artifacts["temporal_attention"])
    times = [[1_600_000_000 + d * DAY for d in range(len(h))] for h in HISTORIES]
    plain = recommender.predict(None, pd.DataFrame({"history": HISTORIES, "history_timestamps": times}), params={"k": 5})
    extra = pd.DataFrame({"user": range(len(HISTORIES)), "history_timestamps": times, "score": 0.5, "history": HISTORIES})
    for other in (extra, {"history": HISTORIES, "history_timestamps": times}):
        out = recommender.predict(None, other, params={"k": 5})
        assert out["items"].tolist() == plain["items"].tolist()
        assert out["unknown_items"].tolist() == plain["unknown_items"].tolist()


def test_a_request_without_rows_gets_an_empty_answer(artifacts, restore_threads):
    out = _loaded(artifacts["sasrec"]).predict(None, pd.DataFrame({"history": pd.Series([], dtype=object)}), params={"k": 5})
    assert len(out) == 0 and list(out.columns) == ["items", "unknown_items"]
    assert out["unknown_items"].dtype == np.int64


def test_the_answer_frame_is_what_the_public_constructor_builds(monkeypatch):
    items = np.empty(3, dtype=object)
    items[0], items[1], items[2] = [1003, 1001], [], [1007]
    unknown = np.array([0, 2, 1])
    fast = _answer_frame(items, unknown)
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")  # a pandas without the private constructor
    public = _answer_frame(items, unknown)
    pd.testing.assert_frame_equal(fast, public, check_column_type=False)
    assert list(fast.columns) == ["items", "unknown_items"] and fast["unknown_items"].dtype == np.int64
    assert fast["items"].tolist() == [[1003, 1001], [], [1007]]


def test_time_aware_models_read_the_timestamps(artifacts, restore_threads):
    recommender = _loaded(artifacts["temporal_attention"])
    history = HISTORIES[1]
    daily = [1_600_000_000 + d * DAY for d in range(len(history))]
    hourly = [1_600_000_000 + d * 3_600 for d in range(len(history))]
    frame = pd.DataFrame({"history": [history, history], "history_timestamps": [daily, hourly]})
    out = recommender.predict(None, frame, params={"k": N_ITEMS - len(set(history))})
    assert out["items"][0] != out["items"][1]  # same items, other times: another ranking


def test_timestamps_must_align_with_the_history(artifacts, restore_threads):
    recommender = _loaded(artifacts["temporal_attention"])
    frame = pd.DataFrame({"history": [[1001, 1002, 1003]], "history_timestamps": [[1, 2]]})
    with pytest.raises(ValueError, match="row 0: history has 3 ids but history_timestamps 2"):
        recommender.predict(None, frame, params={"k": 3})


def _threads_in_predict(recommender: TopKRecommender) -> int:
    """How many torch threads the model's ``score`` ran with inside ``predict``."""
    seen = []
    score = recommender.model.score
    recommender.model.score = lambda batch: seen.append(torch.get_num_threads()) or score(batch)
    recommender.predict(None, pd.DataFrame({"history": [[1001, 1002]]}), params={"k": 3})
    return seen[0]


def test_predict_runs_on_one_torch_thread_and_gives_the_caller_its_own_back(artifacts, restore_threads):
    monkeypatch = restore_threads
    monkeypatch.delenv(INFERENCE_THREADS_ENV, raising=False)
    torch.set_num_threads(2)
    recommender = _loaded(artifacts["popularity"])
    assert inference_threads() == 1 and recommender.threads == 1
    assert _threads_in_predict(recommender) == 1
    assert torch.get_num_threads() == 2  # loading and predicting leave the caller's setting
    monkeypatch.setenv(INFERENCE_THREADS_ENV, "3")
    assert _threads_in_predict(_loaded(artifacts["popularity"])) == 3 and torch.get_num_threads() == 2
    monkeypatch.setenv(INFERENCE_THREADS_ENV, "0")  # torch's setting, untouched
    assert _threads_in_predict(_loaded(artifacts["popularity"])) == 2
    monkeypatch.setenv(INFERENCE_THREADS_ENV, "two")
    with pytest.raises(ValueError, match=INFERENCE_THREADS_ENV):
        _loaded(artifacts["popularity"])


# ----- the request formats, through MLflow's scoring server --------------------------------


@pytest.fixture(scope="module")
def served(artifacts, tmp_path_factory):
    """The temporal_attention model saved as tasks.tracking logs it (models from code, its
    artifacts, signature, requirements, an input example), loaded back by MLflow."""
    threads = torch.get_num_threads()
    path = tmp_path_factory.mktemp("served") / "model"
    mlflow.pyfunc.save_model(
        path,
        python_model=str(PYFUNC_MODEL_FILE),
        artifacts=artifacts["temporal_attention"],
        signature=SIGNATURE,
        input_example=(pd.DataFrame({"history": [[1001, 1002]]}), {"k": 10}),
        pip_requirements=PYFUNC_REQUIREMENTS,
    )
    model = mlflow.pyfunc.load_model(str(path))
    yield model, path
    torch.set_num_threads(threads)


def _invoke(model, payload: dict):
    from mlflow.pyfunc import scoring_server

    response = scoring_server.invocations(json.dumps(payload), "application/json", model, model.metadata.get_input_schema())
    return response.status, json.loads(response.response)


BATCH = [{"history": h, "history_timestamps": t} for h, t in zip(HISTORIES[:3], TIMESTAMPS[:3])]
FORMATS = {
    "dataframe_records": {"dataframe_records": BATCH},
    "dataframe_split": {"dataframe_split": {"columns": ["history", "history_timestamps"],
                                            "data": [[r["history"], r["history_timestamps"]] for r in BATCH]}},  # fmt: skip
    "inputs (list of records)": {"inputs": BATCH},
}


@pytest.mark.parametrize("name", FORMATS)
def test_each_documented_request_format_gives_the_same_answer(served, name):
    model, _ = served
    want = model.predict(pd.DataFrame(BATCH), params={"k": 4})
    status, body = _invoke(model, {**FORMATS[name], "params": {"k": 4}})
    assert status == 200, body
    assert body["predictions"] == [
        {"items": items, "unknown_items": unknown} for items, unknown in zip(want["items"], want["unknown_items"])
    ]


def test_inputs_as_one_record_is_one_user_and_k_defaults_to_10(served):
    model, _ = served
    status, body = _invoke(model, {"inputs": {"history": HISTORIES[1], "history_timestamps": TIMESTAMPS[1]}})
    assert status == 200, body
    (answer,) = body["predictions"]
    want = model.predict(pd.DataFrame({"history": [HISTORIES[1]], "history_timestamps": [TIMESTAMPS[1]]}))
    assert answer == {"items": want["items"][0], "unknown_items": 0} and len(answer["items"]) == 10


def test_inputs_with_a_column_of_histories_is_refused_by_mlflow_with_a_400(served):
    """MLflow reads ``{"inputs": {column: value}}`` as one row, casting each value to the
    column's type: a list of histories is not one Array(long). SERVING.md says to send a list of
    records instead; this pins the reason the issue saw 'Can not safely convert object to int64'."""
    from mlflow.exceptions import MlflowException

    model, _ = served
    with pytest.raises(MlflowException, match="Can not safely convert object to int64") as refused:
        _invoke(model, {"inputs": {"history": [HISTORIES[0], HISTORIES[1]]}})
    assert refused.value.get_http_status_code() == 400  # what the server answers


def test_the_logged_serving_example_is_a_valid_request(served):
    model, path = served
    payload = json.loads((path / "serving_input_example.json").read_text())
    status, body = _invoke(model, payload)
    assert status == 200 and len(body["predictions"][0]["items"]) == 10
