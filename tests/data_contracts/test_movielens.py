"""MovieLens readers, on tiny fixture folders written in each release format."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from data_contracts.sources import SourceError, read_source
from data_contracts.sources.movielens import detect_format, read_movielens

SHARED_ML100K = Path("/work/shared/data/ml-100k")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", "1\t2\t5\t881250949\n2\t1\t3\t891717742\n1\t3\t4\t878887116\n")
    write(
        folder / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{flags(3, 4, 5)}\n"
        f"2|Misérables, Les (1995)|||http://x/2|{flags(8)}\n"
        f"3|unknown||||{flags(0)}\n",
        encoding="latin-1",
    )
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


@pytest.fixture
def ml1m(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n1::661::4::978301968\n")
    write(
        folder / "movies.dat",
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "3000::Città delle donne, La (1980)::Comedy|Drama\n",
        encoding="latin-1",
    )
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


@pytest.fixture
def ml10m(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-10M100K"
    write(folder / "ratings.dat", "5::122::3.5::838985046\n3::185::5::838983525\n")
    write(folder / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n")
    write(folder / "tags.dat", "15::4973::excellent!::1215184630\n")
    return folder


@pytest.fixture
def mllatest(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-latest-small"
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n7,193609,0.5,1537109082\n")
    write(
        folder / "movies.csv",
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
        '193609,"Andrew Dice Clay: Dice Rules (1991)",Comedy\n'
        '5,"Father of the Bride, Part II (1995)",(no genres listed)\n'
        "6,Babylon 5,Sci-Fi\n",
    )
    write(folder / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n193609,0101726,\n")
    write(folder / "tags.csv", "userId,movieId,tag,timestamp\n2,1,funny,1445714994\n")
    return folder


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame[columns].astype(object).itertuples(index=False)]


# --- formats --------------------------------------------------------------------------------


def test_100k_interactions_are_the_exact_rows_in_file_order(ml100k):
    tables = read_movielens(ml100k, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating", "timestamp"]) == [
        (1, 2, 5.0, 881250949),
        (2, 1, 3.0, 891717742),
        (1, 3, 4.0, 878887116),
    ]
    assert tables.name == "ml-100k"


def test_100k_items_decode_latin1_genre_flags_and_dates(ml100k):
    items = read_movielens(ml100k, progress=False).items
    assert rows(items, ["item_id", "title", "kind", "genres", "release_date"]) == [
        (1, "Toy Story (1995)", "movie", "Animation|Children's|Comedy", "1995-01-01"),
        (2, "Misérables, Les (1995)", "movie", "Drama", "1995-01-01"),
        (3, "unknown", "movie", "", ""),
    ]
    assert items["seasons"].isna().all() and (items["description"] == "").all()


def test_100k_users_keep_age_gender_occupation_zip(ml100k):
    users = read_movielens(ml100k, progress=False).users
    assert rows(users, list(USER_COLUMNS)) == [
        (1, 24, "M", "technician", "85711"),
        (2, 53, "F", "other", "94043"),
    ]


def test_1m_reads_dat_files_and_maps_occupation_codes(ml1m):
    tables = read_movielens(ml1m, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating", "timestamp"]) == [
        (1, 1193, 5.0, 978300760),
        (2, 661, 3.0, 978302109),
        (1, 661, 4.0, 978301968),
    ]
    assert rows(tables.users, list(USER_COLUMNS)) == [
        (1, 1, "F", "K-12 student", "48067"),
        (2, 56, "M", "self-employed", "70072"),
    ]
    assert rows(tables.items, ["item_id", "title", "genres", "release_date"]) == [
        (661, "James and the Giant Peach (1996)", "Animation|Children's|Musical", "1996-01-01"),
        (1193, "One Flew Over the Cuckoo's Nest (1975)", "Drama", "1975-01-01"),
        (3000, "Città delle donne, La (1980)", "Comedy|Drama", "1980-01-01"),
    ]


def test_10m_derives_users_with_unknown_demographics(ml10m):
    tables = read_movielens(ml10m, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating"]) == [(5, 122, 3.5), (3, 185, 5.0)]
    assert tables.users["user_id"].tolist() == [3, 5]
    assert tables.users["age"].isna().all() and (tables.users["gender"] == "").all()
    assert detect_format(ml10m).users is None


def test_csv_release_reads_headers_quoted_titles_and_no_genres(mllatest):
    tables = read_movielens(mllatest, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating", "timestamp"]) == [
        (1, 1, 4.0, 964982703),
        (7, 193609, 0.5, 1537109082),
    ]
    assert rows(tables.items, ["item_id", "title", "genres", "release_date"]) == [
        (1, "Toy Story (1995)", "Adventure|Animation", "1995-01-01"),
        (193609, "Andrew Dice Clay: Dice Rules (1991)", "Comedy", "1991-01-01"),
        (5, "Father of the Bride, Part II (1995)", "", "1995-01-01"),
        (6, "Babylon 5", "Sci-Fi", ""),
    ]
    assert tables.users["user_id"].tolist() == [1, 7]


def test_every_format_returns_the_canonical_columns_and_dtypes(ml100k, ml1m, ml10m, mllatest):
    for folder in (ml100k, ml1m, ml10m, mllatest):
        tables = read_movielens(folder, progress=False)
        for frame, schema in ((tables.interactions, INTERACTION_COLUMNS), (tables.items, ITEM_COLUMNS),
                              (tables.users, USER_COLUMNS)):
            assert list(frame.columns) == list(schema)
            assert [str(frame[c].dtype) for c in frame] == list(schema.values())


# --- ratings_path, gzip, item text ------------------------------------------------------------


def test_gzipped_ratings_path_overrides_the_folder_ratings(ml1m, tmp_path):
    partial = tmp_path / "ratings.PARTIAL.dat.gz"
    partial.write_bytes(gzip.compress(b"2::1193::1::978300000\r\n2::3000::2::978300001\r\n"))
    tables = read_movielens(ml1m, ratings_path=partial, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating"]) == [(2, 1193, 1.0), (2, 3000, 2.0)]
    assert tables.name == "ml-1m[ratings.PARTIAL.dat.gz]"
    assert read_movielens(ml1m, ratings_path=partial, name="mine", progress=False).name == "mine"


def test_folder_without_ratings_file_needs_ratings_path(ml1m):
    (ml1m / "ratings.dat").unlink()
    with pytest.raises(SourceError, match="no ratings file.*ratings_path"):
        read_movielens(ml1m, progress=False)


def test_melu_item_text_fills_description_cast_and_creator(ml1m, tmp_path):
    text = (
        "661::James and the Giant Peach::1996::PG::12 Apr 1996::Animation::Henry Selick::Roald Dahl"
        "::Paul Terry, Joanna Lumley::An orphan befriends giant insects.::http://poster\r\n"
        "1193::One Flew::1975::R::N/A::Drama::N/A::N/A::Jack Nicholson::N/A::N/A\r\n"
    )
    path = tmp_path / "movies_extrainfos.dat.gz"
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    items = read_movielens(ml1m, item_text_path=path, progress=False).items.set_index("item_id")
    assert items.loc[661, "description"] == "An orphan befriends giant insects."
    assert items.loc[661, "cast"] == "Paul Terry|Joanna Lumley"
    assert items.loc[661, "creator"] == "Henry Selick"
    assert (items.loc[1193, "description"], items.loc[1193, "creator"]) == ("", "")
    assert items.loc[3000, "cast"] == ""


def test_tmdb_item_text_joins_through_links(mllatest, tmp_path):
    path = write(
        tmp_path / "tmdb.csv",
        'id,overview,production_companies\n862,"Toys come alive.","[{""name"": ""Pixar"", ""id"": 3}]"\n',
    )
    items = read_movielens(mllatest, item_text_path=path, progress=False).items.set_index("item_id")
    assert (items.loc[1, "description"], items.loc[1, "network"]) == ("Toys come alive.", "Pixar")
    assert items.loc[193609, "description"] == ""


def test_checksum_follows_file_contents(ml100k):
    first = read_movielens(ml100k, progress=False).checksum
    assert read_movielens(ml100k, progress=False).checksum == first
    write(ml100k / "u.data", "1\t2\t4\t881250949\n")
    assert read_movielens(ml100k, progress=False).checksum != first


def test_read_source_dispatches_movielens_ignoring_synthetic_settings(ml100k):
    tables = read_source("movielens", str(ml100k), ratings_path=None, item_text_path=None,
                         synthetic_users=1000, seed=0, progress=False)
    assert len(tables.interactions) == 3
    with pytest.raises(SourceError, match="does not take release"):
        read_source("movielens", str(ml100k), release="ml-1m")
    with pytest.raises(SourceError, match="needs a path"):
        read_source("movielens", "")


def test_read_source_unknown_kind_lists_known_kinds():
    with pytest.raises(SourceError, match="unknown source kind 'parquet'.*synthetic, movielens, generic"):
        read_source("parquet", "x")


# --- errors -------------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError) as exc:
        read_movielens(tmp_path / "nope", progress=False)
    assert "does not exist" in one_line(exc) and "nope" in one_line(exc)


def test_unrecognized_folder_names_the_folder_and_a_subfolder_hint(tmp_path, ml100k):
    with pytest.raises(SourceError) as exc:
        read_movielens(tmp_path, progress=False)
    message = one_line(exc)
    assert "no recognizable MovieLens files" in message and "ml-100k/" in message


def test_malformed_ratings_line_names_file_line_and_text(ml1m):
    write(ml1m / "ratings.dat", "1::1193::5::978300760\n\n2::661::3\n1::661::4::978301968\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml1m, progress=False)
    assert one_line(exc).startswith(f"{ml1m / 'ratings.dat'}:3: malformed line")
    assert "'2::661::3'" in one_line(exc)


def test_non_numeric_rating_field_names_line(ml100k):
    write(ml100k / "u.data", "1\t2\t5\t881250949\n1\tabc\t5\t881250949\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml100k, progress=False)
    assert f"{ml100k / 'u.data'}:2:" in one_line(exc) and "abc" in one_line(exc)


BEYOND_INT64 = "99999999999999999999"  # 1e20 > 2**63 - 1


def test_ratings_id_beyond_64_bits_names_line_column_and_value(ml100k, ml1m, mllatest):
    """Issue 25 point 8: pandas' C parser only says "Overflow"; the error names where and what."""
    write(ml100k / "u.data", f"1\t2\t5\t881250949\n{BEYOND_INT64}\t1\t3\t891717742\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml100k, progress=False)
    assert one_line(exc) == (
        f"{ml100k / 'u.data'}:2: malformed line, user id '{BEYOND_INT64}' does not fit in a 64-bit integer: "
        f"'{BEYOND_INT64}\\t1\\t3\\t891717742'"
    )
    write(ml1m / "ratings.dat", f"1::1193::5::978300760\n\n2::661::3::-{BEYOND_INT64}\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml1m, progress=False)
    assert one_line(exc).startswith(
        f"{ml1m / 'ratings.dat'}:3: malformed line, Timestamp '-{BEYOND_INT64}' does not fit in a 64-bit integer: "
    )
    write(mllatest / "ratings.csv", f"movieId,userId,rating,timestamp\n1,1,4.0,964982703\n{BEYOND_INT64},7,4.5,1\n")
    with pytest.raises(SourceError, match=rf"ratings\.csv:3: malformed line, movieId '{BEYOND_INT64}' does not fit"):
        read_movielens(mllatest, progress=False)
    # the largest int64 still reads
    write(ml100k / "u.data", f"1\t2\t5\t881250949\n{2**63 - 1}\t1\t3\t891717742\n")
    assert read_movielens(ml100k, progress=False).interactions["user_id"].max() == 2**63 - 1


def test_items_and_users_ids_beyond_64_bits_are_named_not_wrapped(ml100k, ml1m):
    # they used to wrap around silently (item_id -9223372036854775808)
    write(ml100k / "u.item", f"1|Toy Story (1995)|01-Jan-1995||url|{flags(1)}\n{BEYOND_INT64}|X|||url|{flags(1)}\n",
          "latin-1")
    with pytest.raises(SourceError, match=rf"u\.item:2: malformed line, movie id '{BEYOND_INT64}' does not fit"):
        read_movielens(ml100k, progress=False)
    write(ml1m / "users.dat", f"1::F::1::10::48067\n{BEYOND_INT64}::M::56::16::70072\n")
    with pytest.raises(SourceError, match=rf"users\.dat:2: malformed line, UserID '{BEYOND_INT64}' does not fit"):
        read_movielens(ml1m, progress=False)


def test_malformed_line_in_gzipped_ratings_names_line(ml1m, tmp_path):
    partial = tmp_path / "r.dat.gz"
    partial.write_bytes(gzip.compress(b"1::1193::5::978300760\n1::1193::5::97830x760::9\n"))
    with pytest.raises(SourceError, match=r"r\.dat\.gz:2: malformed line"):
        read_movielens(ml1m, ratings_path=partial, progress=False)


def test_malformed_items_line_names_file_and_line(ml100k):
    write(ml100k / "u.item", f"1|Toy Story (1995)|01-Jan-1995||url|{flags(1)}\n2|Broken|x\n", "latin-1")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml100k, progress=False)
    assert one_line(exc).startswith(f"{ml100k / 'u.item'}:2: malformed line")


def test_unknown_occupation_code_names_users_line(ml1m):
    write(ml1m / "users.dat", "1::F::1::10::48067\n2::M::56::99::70072\n")
    with pytest.raises(SourceError, match=r"users\.dat:2: malformed line"):
        read_movielens(ml1m, progress=False)


def test_bad_csv_header_is_reported(mllatest):
    write(mllatest / "ratings.csv", "user,movie,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(mllatest, progress=False)
    assert one_line(exc) == (
        f"{mllatest / 'ratings.csv'}:1: header lacks column(s) 'userId', 'movieId' and has unknown "
        "column(s) 'user', 'movie'; expected userId, movieId, rating, timestamp (any order)"
    )


# --- csv headers are read by column name ------------------------------------------------------


def test_reordered_ratings_csv_header_is_read_by_column_name(mllatest, tmp_path):
    text = " movieId ,userId,timestamp, rating\r\n193609,7,1537109082,0.5\r\n1,1,964982703,4.0\r\n\r\n1,7,1537109083,3\r\n"
    write(mllatest / "ratings.csv", text)
    expected = [(7, 193609, 0.5, 1537109082), (1, 1, 4.0, 964982703), (7, 1, 3.0, 1537109083)]
    tables = read_movielens(mllatest, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating", "timestamp"]) == expected
    assert list(tables.interactions.columns) == list(INTERACTION_COLUMNS)
    packed = tmp_path / "ratings.reordered.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    tables = read_movielens(mllatest, ratings_path=packed, progress=False)
    assert rows(tables.interactions, ["user_id", "item_id", "rating", "timestamp"]) == expected


def test_reordered_movies_csv_header_is_read_by_column_name(mllatest):
    write(
        mllatest / "movies.csv",
        'genres, title ,movieId\nAdventure|Animation,Toy Story (1995),1\n'
        'Comedy,"Andrew Dice Clay: Dice Rules (1991)",193609\n',
    )
    items = read_movielens(mllatest, progress=False).items
    assert rows(items, ["item_id", "title", "genres", "release_date"]) == [
        (1, "Toy Story (1995)", "Adventure|Animation", "1995-01-01"),
        (193609, "Andrew Dice Clay: Dice Rules (1991)", "Comedy", "1991-01-01"),
    ]


def test_ratings_csv_header_missing_a_column_names_it(mllatest):
    write(mllatest / "ratings.csv", "movieId,userId,timestamp\n1,1,964982703\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(mllatest, progress=False)
    assert one_line(exc) == (
        f"{mllatest / 'ratings.csv'}:1: header lacks column(s) 'rating'; "
        "expected userId, movieId, rating, timestamp (any order)"
    )


def test_ratings_csv_header_with_unknown_or_repeated_column_is_an_error(mllatest):
    write(mllatest / "ratings.csv", "userId,movieId,rating,timestamp,source\n1,1,4.0,964982703,web\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(mllatest, progress=False)
    assert one_line(exc) == (
        f"{mllatest / 'ratings.csv'}:1: header has unknown column(s) 'source'; "
        "expected userId, movieId, rating, timestamp (any order)"
    )
    write(mllatest / "ratings.csv", "userId,movieId,rating,timestamp,rating\n1,1,4.0,964982703,3\n")
    with pytest.raises(SourceError, match=r"ratings\.csv:1: header repeats column\(s\) 'rating'; expected"):
        read_movielens(mllatest, progress=False)


def test_movies_csv_header_missing_or_unknown_column_names_it(mllatest):
    write(mllatest / "movies.csv", "title,movieId\nToy Story (1995),1\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(mllatest, progress=False)
    assert one_line(exc) == (
        f"{mllatest / 'movies.csv'}:1: header lacks column(s) 'genres'; "
        "expected movieId, title, genres (any order)"
    )
    write(mllatest / "movies.csv", "movieId,title,genres,year\n1,Toy Story,Animation,1995\n")
    with pytest.raises(SourceError, match=r"movies\.csv:1: header has unknown column\(s\) 'year'; expected"):
        read_movielens(mllatest, progress=False)


def test_malformed_line_under_reordered_header_names_line_and_header_order(mllatest):
    write(mllatest / "ratings.csv",
          "movieId,userId,timestamp,rating\n1,1,964982703,4.0\n\n193609,7,4.5,1537109082\n1,7,1,2\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(mllatest, progress=False)
    assert one_line(exc) == (
        f"{mllatest / 'ratings.csv'}:4: malformed line, expected 'movieId,userId,timestamp,rating': "
        "'193609,7,4.5,1537109082'"
    )
    write(mllatest / "ratings.csv", "movieId,userId,timestamp,rating\n1,1,964982703,4.0\n")
    write(mllatest / "movies.csv", "title,genres,movieId\nToy Story (1995),Animation,1\nBroken,Drama,x\n")
    with pytest.raises(SourceError, match=r"movies\.csv:3: malformed line, expected 'title,genres,movieId'"):
        read_movielens(mllatest, progress=False)


def test_extra_field_on_the_first_ratings_line_is_not_shifted_into_other_columns(mllatest):
    write(mllatest / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,964982703,9\n")
    with pytest.raises(SourceError, match=r"ratings\.csv:2: malformed line"):
        read_movielens(mllatest, progress=False)


def test_ratings_csv_with_only_a_header_has_no_interactions(mllatest):
    write(mllatest / "ratings.csv", "rating,timestamp,userId,movieId\n")
    assert len(read_movielens(mllatest, progress=False).interactions) == 0


def test_long_offending_text_is_truncated(ml1m):
    write(ml1m / "ratings.dat", "1::1193::5::" + "9" * 500 + "x\n")
    with pytest.raises(SourceError) as exc:
        read_movielens(ml1m, progress=False)
    assert len(one_line(exc)) < 300 and "..." in one_line(exc)


@pytest.mark.skipif(not SHARED_ML100K.is_dir(), reason="needs the shared ml-100k copy in /work/shared/data")
def test_shared_ml100k_has_the_published_counts():
    tables = read_movielens(SHARED_ML100K, progress=False)
    assert len(tables.interactions) == 100_000
    assert tables.interactions["user_id"].nunique() == 943 and len(tables.users) == 943
    assert tables.interactions["item_id"].nunique() == 1682 and len(tables.items) == 1682
