"""The synthetic generator: seeded, well-formed, and carrying learnable signal."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from data_contracts.sources import SourceError, Tables, read_source
from data_contracts.sources.synthetic import GENRES, SyntheticConfig, generate_synthetic, _GENRE_WORDS
from tests.data_contracts.conftest import tvmaze_show, write_tvmaze_pages

SMALL = SyntheticConfig(n_users=150, n_movies=60, n_shows=15, mean_history=20)


@pytest.fixture(scope="module")
def default() -> Tables:
    return generate_synthetic(SyntheticConfig())


@pytest.fixture(scope="module")
def small() -> Tables:
    return generate_synthetic(SMALL)


def _sequences(tables: Tables) -> dict[int, np.ndarray]:
    ordered = tables.interactions.sort_values(["user_id", "timestamp"], kind="stable")
    return {int(u): g["item_id"].to_numpy() for u, g in ordered.groupby("user_id")}


def test_same_seed_gives_identical_tables(small):
    again = generate_synthetic(SMALL)
    pd.testing.assert_frame_equal(small.interactions, again.interactions)
    pd.testing.assert_frame_equal(small.items, again.items)
    pd.testing.assert_frame_equal(small.users, again.users)
    assert small.checksum == again.checksum


def test_different_seed_gives_different_tables(small):
    other = generate_synthetic(SyntheticConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not small.interactions.equals(other.interactions)
    assert not small.items["title"].equals(other.items["title"])
    assert small.checksum != other.checksum


def test_tables_have_exact_schema_columns_and_dtypes(small):
    for frame, schema in (
        (small.interactions, INTERACTION_COLUMNS),
        (small.items, ITEM_COLUMNS),
        (small.users, USER_COLUMNS),
    ):
        assert list(frame.columns) == list(schema)
        assert {c: str(frame[c].dtype) for c in frame} == {
            c: ("string" if d == "string" else d) for c, d in schema.items()
        }


def test_ids_are_consistent_across_tables(small):
    assert set(small.interactions["item_id"]) <= set(small.items["item_id"])
    assert set(small.interactions["user_id"]) <= set(small.users["user_id"])
    assert small.items["item_id"].is_unique and small.users["user_id"].is_unique
    assert small.name == "synthetic"


def test_catalogue_has_movies_and_tv_season_items(default):
    items = default.items
    assert set(items["kind"]) == {"movie", "tv"}
    assert (items["kind"] == "movie").sum() == SyntheticConfig().n_movies
    tv = items[items["kind"] == "tv"]
    parsed = tv["title"].str.extract(r"^(?P<show>.+) — Season (?P<k>\d+)$")
    assert parsed.notna().all().all()
    per_show = parsed.assign(k=parsed["k"].astype(int), seasons=tv["seasons"].to_numpy())
    for _, group in per_show.groupby("show"):
        assert sorted(group["k"]) == list(range(1, len(group) + 1))
        assert (group["seasons"] == len(group)).all() and 1 <= len(group) <= 6
    assert parsed["show"].nunique() == SyntheticConfig().n_shows
    assert items.loc[items["kind"] == "movie", "seasons"].isna().all()


def test_items_have_metadata_text(default):
    items = default.items
    for column in ("title", "description", "cast", "creator", "network", "genres"):
        assert (items[column] != "").all(), column
    assert items["release_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    n_genres = items["genres"].str.count(r"\|") + 1
    assert n_genres.between(1, 3).all()
    assert set("|".join(items["genres"]).split("|")) <= set(GENRES)


def test_movie_franchises_have_numbered_sequels_sharing_cast(default):
    movies = default.items[default.items["kind"] == "movie"].set_index("title")
    sequels = [t for t in movies.index if re.search(r" [2-9]$", t)]
    assert len(sequels) >= 10
    for title in sequels:
        base = title.rsplit(" ", 1)[0]
        assert base in movies.index
        shared = set(movies.loc[base, "cast"].split("|")) & set(movies.loc[title, "cast"].split("|"))
        assert len(shared) >= 2
        assert movies.loc[base, "genres"] == movies.loc[title, "genres"]


def test_no_repeated_user_item_pairs(default):
    assert not default.interactions.duplicated(["user_id", "item_id"]).any()


def test_log_is_time_ordered_and_each_user_strictly_increasing(default):
    ts = default.interactions["timestamp"]
    assert ts.is_monotonic_increasing
    gaps = default.interactions.groupby("user_id")["timestamp"].diff().dropna()
    assert (gaps > 0).all()
    start = pd.Timestamp("2021-01-01", tz="UTC").timestamp()
    assert ts.min() >= start and ts.max() < start + 1095 * 86400


def test_history_lengths_follow_config_bounds(default):
    lengths = default.interactions.groupby("user_id").size()
    assert len(lengths) == SyntheticConfig().n_users
    assert lengths.min() >= 5 and lengths.max() <= 300
    assert 30 <= lengths.mean() <= 50


def test_items_are_consumed_only_after_release(default):
    released = pd.to_datetime(default.items.set_index("item_id")["release_date"]).astype("int64") // 10**9
    frame = default.interactions
    assert (frame["timestamp"].to_numpy() >= released.loc[frame["item_id"]].to_numpy()).all()


def test_seasons_and_sequels_are_watched_in_order(default):
    items = default.items.set_index("item_id")
    chain_of: dict[int, tuple[str, int]] = {}
    for item_id, title in items["title"].items():
        season = re.match(r"^(.+) — Season (\d+)$", title)
        sequel = re.match(r"^(.+) ([2-9])$", title)
        if season:
            chain_of[item_id] = (season.group(1), int(season.group(2)))
        elif sequel and sequel.group(1) in set(items["title"]):
            chain_of[item_id] = (sequel.group(1), int(sequel.group(2)))
        else:
            chain_of[item_id] = (title, 1)
    checked = 0
    for sequence in _sequences(default).values():
        watched: dict[str, list[int]] = defaultdict(list)
        for item in sequence:
            chain, k = chain_of[int(item)]
            watched[chain].append(k)
        for ks in watched.values():
            assert ks == list(range(1, len(ks) + 1))
            checked += len(ks) > 1
    assert checked > 100


def test_ratings_are_integers_from_one_to_five(default):
    ratings = default.interactions["rating"]
    assert set(ratings.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ratings.nunique() == 5


def test_descriptions_use_the_primary_genre_vocabulary(default):
    for genres, text in zip(default.items["genres"], default.items["description"]):
        adjectives, nouns, _ = _GENRE_WORDS[genres.split("|")[0]]
        assert any(a in text for a in adjectives) and any(n in text for n in nouns)


def test_horror_peaks_in_october(default):
    frame = default.interactions.merge(default.items[["item_id", "genres"]], on="item_id")
    month = pd.to_datetime(frame["timestamp"], unit="s").dt.month
    horror = frame["genres"].str.contains("Horror")
    share = horror.groupby(month).mean()
    assert share.loc[10] > 1.3 * share.drop(10).mean()


def test_taste_correlates_with_age(default):
    frame = default.interactions.merge(default.items[["item_id", "genres"]], on="item_id")
    frame = frame.merge(default.users[["user_id", "age"]], on="user_id")
    kids = frame["genres"].str.contains("Animation|Family")
    assert kids[frame["age"] < 18].mean() > 1.3 * kids[frame["age"] >= 50].mean()


def _leave_last_out(tables: Tables):
    sequences = _sequences(tables)
    n_items = int(tables.items["item_id"].max())
    train = {u: s[:-1] for u, s in sequences.items()}
    tests = [(u, s[:-1], int(s[-1])) for u, s in sequences.items()]
    return n_items, train, tests


def _hit_rate(scores_for, n_items, tests, k=10):
    hits = []
    for user, history, target in tests:
        scores = scores_for(user, history).astype(float)
        scores[0] = -np.inf
        scores[history] = -np.inf
        hits.append((scores >= scores[target]).sum() <= k)
    return float(np.mean(hits))


def test_sequential_model_beats_popularity(default):
    n_items, train, tests = _leave_last_out(default)
    popularity = np.zeros(n_items + 1)
    transitions = np.zeros((n_items + 1, n_items + 1))
    for sequence in train.values():
        np.add.at(popularity, sequence, 1)
        np.add.at(transitions, (sequence[:-1], sequence[1:]), 1)
    pop_hr = _hit_rate(lambda u, h: popularity, n_items, tests)
    markov_hr = _hit_rate(lambda u, h: transitions[h[-1]] + 1e-3 * popularity, n_items, tests)
    assert markov_hr > 2 * pop_hr


def test_description_text_predicts_unseen_items(default):
    # Hold out 10% of items entirely; a bag-of-words profile of the user's history should rank
    # a held-out target far above chance, while an id model cannot score it at all.
    items = default.items
    vocab: dict[str, int] = {}
    rows = [[vocab.setdefault(w, len(vocab)) for w in re.findall(r"[a-z]+", t.lower())]
            for t in items["description"]]
    bow = np.zeros((len(items) + 1, len(vocab)))
    for i, words in enumerate(rows, start=1):
        np.add.at(bow[i], words, 1.0)
    bow /= np.linalg.norm(bow, axis=1, keepdims=True) + 1e-9
    rng = np.random.default_rng(0)
    cold = set(rng.choice(items["item_id"], size=len(items) // 10, replace=False).tolist())
    percentiles = []
    for sequence in _sequences(default).values():
        history, target = sequence[:-1], int(sequence[-1])
        if target not in cold:
            continue
        candidates = np.array(sorted(cold - set(history.tolist())))
        scores = bow[candidates] @ bow[history].mean(axis=0)
        percentiles.append((scores > scores[candidates == target][0]).mean())
    assert len(percentiles) > 30
    assert np.mean(percentiles) < 0.4  # chance is 0.5


def test_config_rejects_invalid_values():
    with pytest.raises(SourceError, match="n_users"):
        SyntheticConfig(n_users=0)
    with pytest.raises(SourceError, match="start_date"):
        SyntheticConfig(start_date="yesterday")
    with pytest.raises(SourceError, match="follow_prob"):
        SyntheticConfig(follow_prob=1.5)


def test_read_source_synthetic_passes_config_fields(small):
    tables = read_source("synthetic", None, **SMALL.__dict__)
    pd.testing.assert_frame_equal(tables.interactions, small.interactions)
    # the ingest task's uniform call: synthetic_users -> n_users, empty file settings are fine
    same = read_source("synthetic", "", ratings_path=None, item_text_path=None, synthetic_users=150,
                       seed=0, n_movies=60, n_shows=15, mean_history=20)
    assert same.checksum == small.checksum
    with pytest.raises(SourceError, match="does not take ratings_path"):
        read_source("synthetic", "", ratings_path="/x/ratings.dat")
    with pytest.raises(SourceError, match="no_such_field"):
        read_source("synthetic", "", no_such_field=1)
    with pytest.raises(SourceError, match="takes no path"):
        read_source("synthetic", "/some/folder")


# --- TVmaze show text ----------------------------------------------------------------------


def _tvmaze_dump(folder, n: int, **fields) -> str:
    """A stand-in TVmaze dump of ``n`` shows, ids 101.., written to ``folder``; returns its path."""
    entries = [
        tvmaze_show(100 + k, f"Real Show {k}", summary=f"<p>Plot of <b>real</b> show {k}.</p>", **fields)
        for k in range(1, n + 1)
    ]
    _, page1 = write_tvmaze_pages(folder, [], entries)
    return str(page1)


def _show_of_each_item(items: pd.DataFrame) -> pd.Series:
    """The show (title before " — Season") of each TV item."""
    tv = items[items["kind"] == "tv"]
    return tv["title"].str.replace(r" — Season \d+$", "", regex=True)


def test_tvmaze_text_leaves_interactions_users_and_movies_unchanged(small, tmp_path):
    texted = generate_synthetic(SMALL, item_text_path=_tvmaze_dump(tmp_path, 40))
    pd.testing.assert_frame_equal(texted.interactions, small.interactions)
    pd.testing.assert_frame_equal(texted.users, small.users)
    movies = small.items["kind"] == "movie"
    pd.testing.assert_frame_equal(texted.items[movies], small.items[movies])
    kept = ["item_id", "kind", "cast", "creator", "release_date", "seasons"]
    pd.testing.assert_frame_equal(texted.items[kept], small.items[kept])
    assert texted.name == "synthetic+tvmaze" and texted.checksum != small.checksum


def test_every_season_of_a_show_takes_the_text_of_one_tvmaze_show(small, tmp_path):
    items = generate_synthetic(SMALL, item_text_path=_tvmaze_dump(tmp_path, 40)).items
    tv = items[items["kind"] == "tv"].assign(show=_show_of_each_item(items))
    synthetic_show = _show_of_each_item(small.items)
    # The synthetic seasons of one show map to one real show, and no real show is used twice.
    pairs = pd.DataFrame({"synthetic": synthetic_show, "real": tv["show"]}).drop_duplicates()
    assert pairs["synthetic"].is_unique and pairs["real"].is_unique
    assert len(pairs) == SMALL.n_shows and pairs["real"].str.fullmatch(r"Real Show \d+").all()
    for _, group in tv.groupby("show", sort=False):
        k = int(group["show"].iloc[0].split()[-1])
        seasons = range(1, len(group) + 1)
        assert group["title"].tolist() == [f"Real Show {k} — Season {s}" for s in seasons]
        assert group["description"].iloc[0] == f"Plot of real show {k}."
        assert group["description"].iloc[1:].tolist() == [
            f"Real Show {k}, season {s}. Plot of real show {k}." for s in range(2, len(group) + 1)
        ]
        assert set(group["genres"]) == {"Drama"} and set(group["network"]) == {"CBS"}


def test_tvmaze_text_is_assigned_deterministically_and_checksummed_by_content(tmp_path):
    dump = _tvmaze_dump(tmp_path, 40)
    first = generate_synthetic(SMALL, item_text_path=dump)
    again = generate_synthetic(SMALL, item_text_path=dump)
    pd.testing.assert_frame_equal(first.items, again.items)
    assert first.checksum == again.checksum
    changed = tmp_path / "changed"
    changed.mkdir()
    other = generate_synthetic(SMALL, item_text_path=_tvmaze_dump(changed, 41))
    assert other.checksum != first.checksum


def test_shows_are_matched_to_tvmaze_shows_of_the_same_genres(small, tmp_path):
    # One real show per synthetic show with exactly its genres (TVmaze spells Sci-Fi
    # "Science-Fiction"), among as many decoys that share no genre with any synthetic show.
    roots = small.items[(small.items["kind"] == "tv") & small.items["title"].str.endswith("Season 1")]
    entries = [
        tvmaze_show(1000 + i, f"Match {i}", genres=genres.replace("Sci-Fi", "Science-Fiction").split("|"))
        for i, genres in enumerate(roots["genres"])
    ] + [tvmaze_show(2000 + i, f"Decoy {i}", genres=["Cooking"]) for i in range(len(roots))]
    _, dump = write_tvmaze_pages(tmp_path, [], entries)
    items = generate_synthetic(SMALL, item_text_path=str(dump)).items
    texted_roots = items.loc[roots.index]
    assert texted_roots["title"].str.startswith("Match ").all()
    expected = roots["genres"].str.replace("Sci-Fi", "Science-Fiction")
    assert texted_roots["genres"].tolist() == expected.tolist()


def test_more_synthetic_shows_than_tvmaze_shows_keep_their_text_and_are_counted(small, tmp_path, caplog):
    dump = _tvmaze_dump(tmp_path, 4)
    entries = json.loads(Path(dump).read_text())
    entries[0]["summary"] = None  # a show without a summary is not used
    entries[1]["genres"], entries[1]["network"] = [], None  # empty fields keep the synthetic value
    Path(dump).write_text(json.dumps(entries))
    with caplog.at_level(logging.INFO, logger="data_contracts.sources.synthetic"):
        items = generate_synthetic(SMALL, item_text_path=dump).items
    assert ("3 of 15 shows take TVmaze text (3 TVmaze shows with a summary); "
            "12 keep their synthetic text") in caplog.text
    shows = _show_of_each_item(items)
    real = items.loc[shows.index[shows.str.startswith("Real Show ")]]
    assert set(shows[real.index]) == {"Real Show 2", "Real Show 3", "Real Show 4"}
    untouched = items.index.difference(real.index)
    pd.testing.assert_frame_equal(items.loc[untouched], small.items.loc[untouched])
    blank = real[real["title"].str.startswith("Real Show 2 ")]
    assert blank[["genres", "network"]].equals(small.items.loc[blank.index, ["genres", "network"]])


def test_read_source_synthetic_takes_tvmaze_files_as_a_list_or_a_folder(small, tmp_path):
    page0, page1 = write_tvmaze_pages(tmp_path, [tvmaze_show(1), tvmaze_show(2)],
                                      [tvmaze_show(3), tvmaze_show(4), tvmaze_show(5)])
    by_list = read_source("synthetic", "", item_text_path=f"{page0},{page1}", **SMALL.__dict__)
    by_folder = read_source("synthetic", "", item_text_path=str(tmp_path), **SMALL.__dict__)
    pd.testing.assert_frame_equal(by_list.items, by_folder.items)
    assert by_list.checksum == by_folder.checksum and by_list.name == "synthetic+tvmaze"
    pd.testing.assert_frame_equal(by_list.interactions, small.interactions)
    assert _show_of_each_item(by_list.items).str.fullmatch(r"Show [1-5]").sum() > 0
    with pytest.raises(SourceError, match="does not exist"):
        read_source("synthetic", "", item_text_path=str(tmp_path / "missing.json"))
