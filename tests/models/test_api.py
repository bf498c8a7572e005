"""models.api: the docstring's example runs as written; split a bare interactions frame (standard
mode, no items/users tables), train any family (side inputs built), recommend raw ids."""

from __future__ import annotations

import re
from pathlib import Path
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

import models.api
from models.api import Recommender, split, train
from models.registry import FAMILIES, ConfigError, trainable_families
from models.split import leave_one_out_split

T0 = 1_600_000_000
N_ITEMS = 30


def chain_interactions(n_users: int = 40, steps: int = 8, first_item: int = 1) -> pd.DataFrame:
    """Each user walks ``steps`` items along one 30-item ring from a start of its own; raw item
    ids are ``first_item`` .. ``first_item + 29``, one event a minute, in shuffled row order."""
    rng = np.random.default_rng(0)
    rows = [
        (user, first_item + (start + t) % N_ITEMS, T0 + 60 * t, 4.0)
        for user, start in zip(range(1, n_users + 1), rng.integers(0, N_ITEMS, n_users))
        for t in range(steps)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


README = Path(__file__).resolve().parents[2] / "README.md"


def snippet() -> str:
    """The README's ```python block that uses models.api, verbatim; the module docstring shows the same."""
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "models.api" in c]
    (documented,) = re.findall(r"```python\n(.*?)```", models.api.__doc__, flags=re.S)
    assert code == documented, "README and models/api.py show different snippets"
    return code


@pytest.fixture(scope="module")
def data():
    return split(chain_interactions(first_item=1001))


@pytest.fixture(scope="module")
def popularity(data):
    return train("popularity", data)


def test_docstring_example_runs_as_written(tmp_path, monkeypatch, capsys):
    chain_interactions().to_csv(tmp_path / "ratings.csv", index=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet(), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    top = [int(i) for i in re.findall(r"\d+", printed[0])]
    assert len(top) == 10 and not {1, 2, 3} & set(top) and set(top) <= set(range(1, N_ITEMS + 1))
    assert "'ndcg@10'" in printed[1]
    assert namespace["model"].family == "sasrec" and namespace["model"].model.config.dim == 32
    assert set(namespace["data"].cases["slice"]) == {"warm"}  # the standard split: no cold holdouts


def test_the_split_needs_no_items_or_users_table():
    interactions = chain_interactions()
    for missing in (None, pd.DataFrame()):  # pd.DataFrame() raised KeyError: 'item_id'
        data, summary = leave_one_out_split(interactions, missing, missing, mode="standard")
        assert list(data.items.columns) == ["item_idx", "item_id"] and len(data.items) == N_ITEMS
        assert summary.items_without_metadata == N_ITEMS
    with pytest.raises(ValueError, match=r"items table needs a 'item_id' column; found \['title'\]"):
        leave_one_out_split(interactions, pd.DataFrame({"title": ["x"]}), None)


def test_split_is_standard_by_default_and_pipeline_on_request():
    interactions = chain_interactions()
    data = split(interactions)
    assert (len(data.stage("valid")), len(data.stage("test"))) == (40, 40)
    assert set(data.cases["slice"]) == {"warm"} and len(data.train) == 40 * 6
    pipeline = split(interactions, mode="pipeline", cold_user_fraction=0.1)
    assert set(pipeline.stage("test")["slice"]) >= {"cold_user"}


def test_split_keeps_raw_ids_and_accepts_datetimes_and_float_ids():
    interactions = chain_interactions(first_item=1001)
    data = split(interactions)
    assert data.items["item_id"].tolist() == list(range(1001, 1001 + N_ITEMS))
    other = interactions.assign(
        timestamp=pd.to_datetime(interactions["timestamp"], unit="s"),
        item_id=interactions["item_id"].astype(float),
    ).drop(columns="rating")
    again = split(other)
    pd.testing.assert_frame_equal(again.cases, data.cases)
    assert (again.train["rating"] == 1.0).all()  # implicit feedback


def _null_user(frame):
    return frame.assign(user_id=frame["user_id"].astype(object).where(frame.index != 4))


def _text_item(frame):
    return frame.assign(item_id=frame["item_id"].astype(str).where(frame.index != 2, "tt01"))


def _text_rating(frame):
    return frame.assign(rating=frame["rating"].astype(object).where(frame.index != 7, "good"))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda f: f.drop(columns="timestamp"), ValueError, r"missing column\(s\) \['timestamp'\]"),
        (_null_user, ValueError, r"interactions.user_id has 1 null value\(s\), e.g. at row 4"),
        (_text_item, ValueError, r"item_id must hold integer ids; row 2 has 'tt01'"),
        (_text_rating, ValueError, r"rating must be a number; row 7 has 'good'"),
        (lambda f: f.iloc[:0], ValueError, "interactions is empty"),
        (lambda f: f.to_dict("list"), TypeError, "interactions must be a pandas DataFrame, got dict"),
    ],
    ids=["missing column", "null id", "text id", "text rating", "empty", "not a frame"],
)
def test_split_names_what_is_wrong(change, error, message):
    with pytest.raises(error, match=message):
        split(change(chain_interactions()))


def test_recommend_takes_and_returns_raw_ids_without_the_history(data, popularity):
    counts = popularity.model.counts.numpy()  # popularity's score of every item_idx
    raw_count = dict(zip(popularity.item_ids[1:].tolist(), counts[1:].tolist()))
    history = sorted(raw_count, key=raw_count.get, reverse=True)[:3]  # the three most popular
    top = popularity.recommend(history, k=5)
    assert len(top) == 5 and set(top) <= set(raw_count) and set(top).isdisjoint(history)
    rest = set(raw_count) - set(history) - set(top)
    assert min(raw_count[i] for i in top) >= max(raw_count[i] for i in rest)  # the best 5 of the rest
    assert [raw_count[i] for i in top] == sorted((raw_count[i] for i in top), reverse=True)
    assert popularity.recommend(np.array(history), k=5) == top
    assert popularity.recommend(history + [999_999], k=5) == top  # an unknown id is ignored
    assert sorted(popularity.recommend(history, k=100)) == sorted(set(raw_count) - set(history))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"history": "1001,1002"}, TypeError, "history must be a list of raw item ids, oldest first"),
        ({"history": {1001, 1002}}, TypeError, "history must be a list"),
        ({"history": [1001, "1002"]}, TypeError, "history must hold integers; got '1002'"),
        ({"history": [1001], "k": 0}, ValueError, "k must be a positive integer, got 0"),
        ({"history": [1001], "timestamps": [T0, T0]}, ValueError, "timestamps has 2 values"),
        ({"history": [1001], "timestamps": {T0}}, TypeError, "timestamps must be a list of unix seconds"),
    ],
)
def test_recommend_names_bad_input(popularity, kwargs, error, message):
    with pytest.raises(error, match=message):
        popularity.recommend(**kwargs)


def test_evaluate_reports_the_test_cases_per_slice(data, popularity):
    metrics = popularity.evaluate(data, ks=(10,))
    assert {"all", "warm"} <= set(metrics) and metrics["all"]["n_cases"] == 40
    assert 0.0 <= metrics["all"]["ndcg@10"] <= 1.0
    with pytest.raises(ValueError, match="another catalogue"):
        popularity.evaluate(split(chain_interactions(first_item=1)))


def _tiny(family: str) -> dict:
    names = {f.name for f in fields(FAMILIES[family].config)}
    reads_text = "item_text_embeddings" in FAMILIES[family].side_inputs  # dim = the encoder's
    tiny = {"max_epochs": 2} | ({} if reads_text else {"dim": 16})
    return {k: v for k, v in tiny.items() if k in names}


@pytest.mark.parametrize("family", trainable_families())
def test_every_family_trains_and_recommends(family, tiny_encoder, request):
    interactions = chain_interactions(first_item=1001)
    titles = [f"space story {i}" for i in range(N_ITEMS)]
    items = pd.DataFrame({"item_id": range(1001, 1001 + N_ITEMS), "title": titles})
    data = split(interactions, items=items)
    # t5_hybrid reads its own encoder (no pretrained T5 installs offline): the tiny random one
    encoder = {"encoder": request.getfixturevalue("tiny_t5"), "text_dim": 16} if family == "t5_hybrid" else {}
    model = train(family, data, device="cpu", text_encoder=tiny_encoder, **_tiny(family), **encoder)
    assert isinstance(model, Recommender) and model.family == family
    top = model.recommend([1001, 1002, 1003], k=10, timestamps=[T0, T0 + 60, T0 + 120])
    assert len(top) == 10 and set(top) <= set(range(1004, 1001 + N_ITEMS))


def test_text_families_need_an_items_table_with_text(data):
    needs = r"content_knn needs item text: pass split\(interactions, items=\.\.\.\) with an items table"
    with pytest.raises(ValueError, match=needs):
        train("content_knn", data)


def test_train_names_unknown_families_and_fields(data):
    with pytest.raises(ConfigError, match="unknown model 'sasrecc'; known: popularity"):
        train("sasrecc", data)
    with pytest.raises(ConfigError, match="unknown config key"):
        train("sasrec", data, dimension=8)


def test_train_needs_validation_cases():
    two_each = chain_interactions(steps=2)
    with pytest.raises(ValueError, match="no validation case"):
        train("popularity", split(two_each))
