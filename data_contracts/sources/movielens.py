"""Readers for every MovieLens release format, from a local folder.

Formats (detected from the file names in the folder; ``<file>.gz`` is accepted for every file):

- ``100k``: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.item`` (``|``-separated,
  Latin-1: id, title, release date, video release date, IMDb URL, 19 genre flags), ``u.user``
  (``|``: id, age, gender, occupation, zip).
- ``dat`` (ml-1m, ml-10m): ``::``-separated Latin-1 ``ratings.dat``, ``movies.dat``
  (``MovieID::Title::Genres``) and, for ml-1m only, ``users.dat``
  (``UserID::Gender::Age::Occupation::Zip-code``). ml-10m has no users file: the users table is
  derived from the rating ids with unknown demographics. ``tags.dat`` is ignored.
- ``csv`` (ml-20m, ml-25m, ml-latest, ml-latest-small): ``ratings.csv``
  (``userId,movieId,rating,timestamp``), ``movies.csv`` (``movieId,title,genres``) with headers,
  read by column name (any column order; a missing, unknown or repeated column is an error);
  ``tags.csv`` and the genome files are ignored, ``links.csv`` is used only to join TMDB text.

See ``data_contracts/FORMATS.md`` for the canonical mapping of every field.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..schema import conform
from . import SourceError, Tables, files_checksum

__all__ = ["read_movielens", "detect_format", "MovieLensLayout", "OCCUPATIONS_1M", "GENRES_100K"]

log = logging.getLogger(__name__)

# ml-1m README, "Occupation is chosen from the following choices".
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

# ml-100k u.genre, in flag order. The "unknown" flag means "no genre" and maps to "".
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NO_GENRE = {"unknown", "(no genres listed)"}

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_CHUNK_ROWS = 250_000
_SNIPPET = 80


@dataclass(frozen=True)
class MovieLensLayout:
    """Which files of a release folder are read, and in which format."""

    format: str  # "100k" | "dat" | "csv"
    ratings: Path | None
    items: Path
    users: Path | None
    links: Path | None = None


# --------------------------------------------------------------------------------------------
# Detection


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def detect_format(folder: str | os.PathLike) -> MovieLensLayout:
    """Find the MovieLens files in ``folder``; raise SourceError when there are none."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise SourceError(f"MovieLens folder {path} does not exist")
    if not path.is_dir():
        raise SourceError(f"MovieLens source {path} is not a folder")
    if items := _find(path, "u.item"):
        return MovieLensLayout("100k", _find(path, "u.data"), items, _find(path, "u.user"))
    if items := _find(path, "movies.dat"):
        return MovieLensLayout("dat", _find(path, "ratings.dat"), items, _find(path, "users.dat"))
    if items := _find(path, "movies.csv"):
        return MovieLensLayout("csv", _find(path, "ratings.csv"), items, None, _find(path, "links.csv"))
    hint = ""
    subfolders = sorted(p.name for p in path.iterdir() if p.is_dir())
    for sub in subfolders:
        if any(_find(path / sub, f) for f in ("u.item", "movies.dat", "movies.csv")):
            hint = f"; its subfolder {sub}/ holds one, pass {path / sub}"
            break
    found = sorted(p.name for p in path.iterdir())[:8]
    raise SourceError(
        f"{path} holds no recognizable MovieLens files (expected u.item+u.data, movies.dat+"
        f"ratings.dat or movies.csv+ratings.csv; found {found}){hint}"
    )


# --------------------------------------------------------------------------------------------
# Low-level helpers


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(raw file, stream to read): the stream decompresses transparently for ``*.gz``."""
    raw = open(path, "rb")
    if path.name.endswith(".gz"):
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    return raw, raw


def _read_text(path: Path, encoding: str) -> str:
    """Whole file as text. ``encoding="auto"``: UTF-8 when the bytes are valid UTF-8, else Latin-1."""
    raw, stream = _open_binary(path)
    try:
        data = stream.read()
    except (OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read ({exc})") from None
    finally:
        raw.close()
    if encoding == "auto":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not valid {encoding} text at byte {exc.start}") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for every non-blank line."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def _bad_line(path: Path, number: int, line: str, expected: str, reason: Exception | None = None) -> SourceError:
    """``reason``: the exception that made the line malformed; an ``_Int64Overflow`` names the
    column and the value instead of the expected layout."""
    if isinstance(reason, _Int64Overflow):
        return SourceError(f"{path}:{number}: malformed line, {reason}: {_snippet(line)}")
    return SourceError(f"{path}:{number}: malformed line, expected {expected}: {_snippet(line)}")


def _header_order(path: Path, number: int, fields: list[str], expected: list[str]) -> list[int]:
    """Positions of the ``expected`` columns in a header line's ``fields`` (names stripped).

    A header names every expected column exactly once, in any order, and nothing else; otherwise a
    one-line SourceError names the file, the line, what is missing/unknown/repeated and the
    expected set.
    """
    names = [f.strip() for f in fields]
    missing = [c for c in expected if c not in names]
    unknown = [n for n in names if n not in expected]
    repeated = [c for c in expected if names.count(c) > 1]
    if missing or unknown or repeated:
        def listed(values: list[str]) -> str:
            return ", ".join(_snippet(v) for v in dict.fromkeys(values))

        problems = []
        if missing:
            problems.append(f"lacks column(s) {listed(missing)}")
        if unknown:
            problems.append(f"has unknown column(s) {listed(unknown)}")
        if repeated:
            problems.append(f"repeats column(s) {listed(repeated)}")
        raise SourceError(
            f"{path}:{number}: header {' and '.join(problems)}; expected {', '.join(expected)} (any order)"
        )
    return [names.index(c) for c in expected]


def _in_file_order(columns: list[str], order: list[int]) -> list[str]:
    """``columns`` rearranged so that ``columns[k]`` sits at position ``order[k]``."""
    placed = [""] * len(order)
    for name, position in zip(columns, order):
        placed[position] = name
    return placed


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Int64Overflow(ValueError):
    """An integer field that an int64 column cannot hold; the message names column and value."""


def _int(value: str, column: str = "value") -> int:
    """The integer of a field; ``_Int64Overflow`` (a ValueError) when it does not fit in 64 bits,
    which pandas would otherwise wrap around or report as a bare "Overflow"."""
    number = int(value.strip())
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _Int64Overflow(f"{column} {_snippet(value.strip())} does not fit in a 64-bit integer")
    return number


def _year_date(title: str) -> str:
    match = _TITLE_YEAR.search(title)
    return f"{match.group(1)}-01-01" if match else ""


def _date_100k(value: str) -> str:
    """'01-Jan-1995' -> '1995-01-01'; '' when empty."""
    value = value.strip()
    if not value:
        return ""
    day, month, year = value.split("-")
    return f"{int(year):04d}-{_MONTHS[month.lower()]:02d}-{int(day):02d}"


def _genres(value: str) -> str:
    return "|".join(g for g in value.strip().split("|") if g and g not in NO_GENRE)


# --------------------------------------------------------------------------------------------
# Ratings


_RATING_SPECS = {
    # format: (read_csv keywords, column names in the file, expected-line description)
    "100k": ("\t", "tab-separated 'user item rating timestamp'"),
    "dat": ("::", "'UserID::MovieID::Rating::Timestamp'"),
    "csv": (",", "'userId,movieId,rating,timestamp'"),
}
_CSV_HEADER = ["userId", "movieId", "rating", "timestamp"]
_CANONICAL_ORDER = [0, 1, 2, 3]
# What each format calls user, item, rating and timestamp (the names its README uses).
_RATING_COLUMNS = {
    "100k": ["user id", "item id", "rating", "timestamp"],
    "dat": ["UserID", "MovieID", "Rating", "Timestamp"],
    "csv": _CSV_HEADER,
}


def _ratings_csv_order(path: Path) -> list[int]:
    """Positions of userId, movieId, rating, timestamp in the header (line 1) of a ratings.csv."""
    raw, stream = _open_binary(path)
    try:
        first = stream.readline()
    except (OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read ({exc})") from None
    finally:
        raw.close()
    line = first.decode("latin-1").rstrip("\r\n")
    fields = next(csv.reader([line]), [])
    return _header_order(path, 1, fields, _CSV_HEADER)


def _check_rating_fields(parts: list[str], order: list[int]) -> bool:
    if len(parts) != len(order):
        return False
    user, item, rating, timestamp = (parts[i] for i in order)
    try:
        int(user), int(item), float(rating), int(timestamp)
    except ValueError:
        return False
    return True


def _scan_ratings(path: Path, fmt: str, order: list[int]) -> SourceError | None:
    """Slow path: find the first malformed line of a ratings file (called after a fast-path failure).

    ``order``: where user, item, rating and timestamp sit in a line (from the csv header). A line
    whose id or timestamp does not fit in 64 bits (pandas' bare "Overflow") is named with that
    column and value.
    """
    sep, expected = _RATING_SPECS[fmt]
    if fmt == "csv":
        expected = repr(",".join(_in_file_order(_CSV_HEADER, order)))
    raw, stream = _open_binary(path)
    try:
        for number, bline in enumerate(stream, 1):
            line = bline.decode("latin-1").rstrip("\r\n")
            if fmt == "csv" and number == 1:
                continue  # the header, checked by _ratings_csv_order
            if not line.strip():
                continue
            parts = line.split(sep)
            if not _check_rating_fields(parts, order):
                return _bad_line(path, number, line, expected)
            try:
                for k in (0, 1, 3):  # user, item, timestamp: int64 columns
                    _int(parts[order[k]], _RATING_COLUMNS[fmt][k])
            except _Int64Overflow as exc:
                return _bad_line(path, number, line, expected, exc)
    except (OSError, EOFError) as exc:
        return SourceError(f"{path}: cannot read ({exc})")
    finally:
        raw.close()
    return None


def _read_ratings(path: Path, fmt: str, *, progress: bool, desc: str) -> pd.DataFrame:
    """Ratings in file order, as user_id, item_id, rating, timestamp.

    Fast path: pandas' C parser in chunks with a byte-based progress bar. ``::`` is read as the
    one-character separator ``:`` (the C parser only takes one character), so every line has
    seven fields of which 1, 3 and 5 are empty. ``ratings.csv`` is read by the column names of
    its header (line 1), in any order. Any failure re-scans the file line by line to name the first
    malformed line.
    """
    names = ["user_id", "item_id", "rating", "timestamp"]
    order = _CANONICAL_ORDER
    dtypes = {"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"}
    kw: dict = dict(dtype=dtypes, chunksize=_CHUNK_ROWS, encoding="latin-1", engine="c")
    if fmt == "100k":
        kw.update(sep="\t", header=None, names=names)
    elif fmt == "dat":
        gaps = ["_g1", "_g2", "_g3"]
        kw.update(
            sep=":",
            header=None,
            names=["user_id", "_g1", "item_id", "_g2", "rating", "_g3", "timestamp"],
            dtype={**dtypes, **{g: "object" for g in gaps}},
        )
    else:
        order = _ratings_csv_order(path)
        kw.update(sep=",", header=None, skiprows=1, names=_in_file_order(names, order))
    chunks: list[pd.DataFrame] = []
    start = 0
    raw, stream = _open_binary(path)
    size = os.path.getsize(path)
    try:
        with tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=not progress,
                  leave=False) as bar:
            reader = pd.read_csv(stream, **kw)
            for chunk in reader:
                # A first line with one field too many makes pandas take that field as the index
                # and shift the others: only a plain 0..n-1 row index means every field landed.
                if not chunk.index.equals(pd.RangeIndex(start, start + len(chunk))):
                    raise ValueError("extra field")
                start += len(chunk)
                if fmt == "dat":
                    if chunk[["_g1", "_g2", "_g3"]].notna().any().any():
                        raise ValueError("separator")
                chunk = chunk[names]
                chunks.append(chunk)
                bar.update(raw.tell() - bar.n)
    except Exception as exc:  # noqa: BLE001 - every parser failure becomes one SourceError
        raw.close()
        located = _scan_ratings(path, fmt, order)
        if located is not None:
            raise located from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{path}: cannot parse ratings ({first})") from None
    finally:
        raw.close()
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})
    return pd.concat(chunks, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Items and users


def _read_items_100k(path: Path) -> pd.DataFrame:
    rows = []
    expected = "24 '|'-separated fields (id|title|release date|video date|URL|19 genre flags)"
    for number, line in _lines(_read_text(path, "latin-1")):
        parts = line.split("|")
        if len(parts) != 24:
            raise _bad_line(path, number, line, expected)
        try:
            item_id = _int(parts[0], "movie id")
            flags = [_int(f, "genre flag") for f in parts[5:]]
            date = _date_100k(parts[2]) or _year_date(parts[1])
        except (ValueError, KeyError) as exc:
            raise _bad_line(path, number, line, expected, exc) from None
        genres = "|".join(g for g, f in zip(GENRES_100K, flags) if f and g not in NO_GENRE)
        rows.append((item_id, parts[1], genres, date))
    return pd.DataFrame(rows, columns=["item_id", "title", "genres", "release_date"])


def _read_items_dat(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in _lines(_read_text(path, "auto")):
        parts = line.split("::")
        if len(parts) != 3:
            raise _bad_line(path, number, line, "'MovieID::Title::Genres'")
        try:
            item_id = _int(parts[0], "MovieID")
        except ValueError as exc:
            raise _bad_line(path, number, line, "'MovieID::Title::Genres'", exc) from None
        rows.append((item_id, parts[1], _genres(parts[2]), _year_date(parts[1])))
    return pd.DataFrame(rows, columns=["item_id", "title", "genres", "release_date"])


_MOVIES_HEADER = ["movieId", "title", "genres"]


def _is_movies_header(record: list[str]) -> bool:
    """The first record is a header when it names at least one movies.csv column and does not
    start with an id (a header-less file is read as movieId,title,genres)."""
    try:
        _int(record[0])
        return False
    except ValueError:
        return any(field.strip() in _MOVIES_HEADER for field in record)


def _read_items_csv(path: Path) -> pd.DataFrame:
    rows = []
    text = _read_text(path, "utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    order = [0, 1, 2]  # positions of movieId, title, genres
    expected = repr(",".join(_MOVIES_HEADER))
    first = True
    for record in reader:
        number = reader.line_num
        if not record or not "".join(record).strip():
            continue
        if first:
            first = False
            if _is_movies_header(record):
                order = _header_order(path, number, record, _MOVIES_HEADER)
                expected = repr(",".join(_in_file_order(_MOVIES_HEADER, order)))
                continue
        if len(record) != len(order):
            raise _bad_line(path, number, ",".join(record), expected)
        movie_id, title, genres = (record[i] for i in order)
        try:
            item_id = _int(movie_id, "movieId")
        except ValueError as exc:
            raise _bad_line(path, number, ",".join(record), expected, exc) from None
        rows.append((item_id, title, _genres(genres), _year_date(title)))
    return pd.DataFrame(rows, columns=["item_id", "title", "genres", "release_date"])


def _read_users_100k(path: Path) -> pd.DataFrame:
    rows = []
    expected = "'user id|age|gender|occupation|zip code'"
    for number, line in _lines(_read_text(path, "latin-1")):
        parts = line.split("|")
        if len(parts) != 5:
            raise _bad_line(path, number, line, expected)
        try:
            rows.append((_int(parts[0], "user id"), _int(parts[1], "age"), parts[2].strip(), parts[3].strip(),
                         parts[4].strip()))
        except ValueError as exc:
            raise _bad_line(path, number, line, expected, exc) from None
    return pd.DataFrame(rows, columns=["user_id", "age", "gender", "occupation", "region"])


def _read_users_1m(path: Path) -> pd.DataFrame:
    rows = []
    expected = "'UserID::Gender::Age::Occupation::Zip-code'"
    for number, line in _lines(_read_text(path, "latin-1")):
        parts = line.split("::")
        if len(parts) != 5:
            raise _bad_line(path, number, line, expected)
        try:
            occupation_code = _int(parts[3], "Occupation")
            occupation = OCCUPATIONS_1M[occupation_code]
            rows.append((_int(parts[0], "UserID"), _int(parts[2], "Age"), parts[1].strip(), occupation,
                         parts[4].strip()))
        except (ValueError, IndexError) as exc:
            raise _bad_line(path, number, line, expected, exc) from None
    return pd.DataFrame(rows, columns=["user_id", "age", "gender", "occupation", "region"])


def _derived_users(interactions: pd.DataFrame) -> pd.DataFrame:
    ids = np.sort(interactions["user_id"].unique())
    return pd.DataFrame({"user_id": ids})


# --------------------------------------------------------------------------------------------
# Optional item text


def _read_melu_text(path: Path) -> pd.DataFrame:
    """MeLU movies_extrainfos.dat: MovieID::Title::Year::Rated::Released::Genre::Director::Writer::
    Actors::Plot::Poster (UTF-8, CRLF). Gives description, cast ("|"-joined) and creator."""
    rows = []
    expected = "11 '::'-separated fields (MovieID::Title::Year::Rated::Released::Genre::Director::Writer::Actors::Plot::Poster)"
    for number, line in _lines(_read_text(path, "utf-8")):
        parts = line.split("::")
        if len(parts) != 11:
            raise _bad_line(path, number, line, expected)
        try:
            item_id = _int(parts[0], "MovieID")
        except ValueError as exc:
            raise _bad_line(path, number, line, expected, exc) from None
        clean = ["" if p.strip() == "N/A" else p.strip() for p in parts]
        cast = "|".join(a.strip() for a in clean[8].split(",") if a.strip())
        rows.append((item_id, clean[9], cast, clean[6]))
    return pd.DataFrame(rows, columns=["item_id", "description", "cast", "creator"])


def _read_tmdb_text(path: Path, links: Path | None) -> pd.DataFrame:
    """TMDB 5000 movies CSV (columns id, overview, production_companies) joined via links.csv."""
    if links is None:
        raise SourceError(f"{path}: TMDB item text needs links.csv (movieId,imdbId,tmdbId) in the MovieLens folder")
    try:
        raw, stream = _open_binary(path)
        with raw:
            tmdb = pd.read_csv(stream, encoding="utf-8", dtype={"id": "Int64"})
        raw, stream = _open_binary(links)
        with raw:
            link = pd.read_csv(stream, dtype={"movieId": "int64", "tmdbId": "Int64"})
    except (ValueError, OSError) as exc:
        raise SourceError(f"{path}: cannot parse TMDB text ({str(exc).splitlines()[0]})") from None
    for frame, file, columns in ((tmdb, path, ("id", "overview")), (link, links, ("movieId", "tmdbId"))):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SourceError(f"{file}: missing column(s) {missing}; found {list(frame.columns)[:12]}")

    def first_company(value: object) -> str:
        try:
            companies = json.loads(value) if isinstance(value, str) else []
        except ValueError:
            return ""
        return companies[0].get("name", "") if companies else ""

    text = pd.DataFrame({
        "tmdbId": tmdb["id"],
        "description": tmdb["overview"].fillna("").astype(str),
        "network": tmdb.get("production_companies", pd.Series("", index=tmdb.index)).map(first_company),
    }).dropna(subset=["tmdbId"]).drop_duplicates("tmdbId")
    out = link.dropna(subset=["tmdbId"]).merge(text, on="tmdbId", how="inner")
    return out.rename(columns={"movieId": "item_id"})[["item_id", "description", "network"]]


def _attach_text(items: pd.DataFrame, text: pd.DataFrame) -> pd.DataFrame:
    text = text.drop_duplicates("item_id").set_index("item_id")
    for column in text.columns:
        values = items["item_id"].map(text[column])
        base = items[column] if column in items.columns else pd.Series("", index=items.index)
        items[column] = values.where(values.notna(), base).fillna("")
    return items


# --------------------------------------------------------------------------------------------
# Entry point


def read_movielens(
    folder: str | os.PathLike,
    *,
    ratings_path: str | os.PathLike | None = None,
    item_text_path: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = True,
) -> Tables:
    """Read a MovieLens release folder (any format) into canonical tables.

    ratings_path: read the ratings from this file instead of the folder's (same format as the
        folder's; ``*.gz`` is decompressed transparently), e.g. an official split file or a partial
        ratings file. The default ``name`` then records it: ``"<folder>[<file name>]"``.
    item_text_path: optional item text joined on item_id — MeLU's ``movies_extrainfos.dat(.gz)``
        (description = Plot, cast = Actors "|"-joined, creator = Director), or a TMDB movies CSV
        (``*.csv``/``*.csv.gz`` with id, overview, production_companies; joined through the
        folder's links.csv: description = overview, network = first production company).
    name: dataset name reported downstream (default: the folder's name).
    progress: show a tqdm bar while reading the ratings.

    Interactions keep the rating file's row order. Items are the movies file's rows (kind "movie",
    release_date from the 100k date column or else the title's year as "YYYY-01-01"); users are
    the users file's rows, or derived from the rating ids when the release has no users file.
    Rows are never invented for a table the release has: ids missing from it are left for the
    data contract to report.
    """
    layout = detect_format(folder)
    folder = Path(folder).expanduser()
    if ratings_path is not None:
        ratings_file = Path(ratings_path).expanduser()
        if not ratings_file.is_file():
            raise SourceError(f"ratings file {ratings_file} does not exist")
    elif layout.ratings is not None:
        ratings_file = layout.ratings
    else:
        expected = {"100k": "u.data", "dat": "ratings.dat", "csv": "ratings.csv"}[layout.format]
        raise SourceError(f"{folder} has no ratings file ({expected}); pass ratings_path")
    if name is None:
        name = folder.name if ratings_path is None else f"{folder.name}[{ratings_file.name}]"

    interactions = _read_ratings(ratings_file, layout.format, progress=progress, desc=f"ratings {name}")
    items = {"100k": _read_items_100k, "dat": _read_items_dat, "csv": _read_items_csv}[layout.format](layout.items)
    items["kind"] = "movie"
    if layout.users is not None:
        users = (_read_users_100k if layout.format == "100k" else _read_users_1m)(layout.users)
    else:
        users = _derived_users(interactions)

    roles: list[tuple[str, Path]] = [("ratings", ratings_file), ("items", layout.items)]
    if layout.users is not None:
        roles.append(("users", layout.users))
    if item_text_path is not None:
        text_file = Path(item_text_path).expanduser()
        if not text_file.is_file():
            raise SourceError(f"item text file {text_file} does not exist")
        if ".csv" in text_file.name:
            text = _read_tmdb_text(text_file, layout.links)
            roles.append(("links", layout.links))  # type: ignore[arg-type]
        else:
            text = _read_melu_text(text_file)
        items = _attach_text(items, text)
        roles.append(("item_text", text_file))

    source = str(folder)
    return Tables(
        interactions=conform(interactions, "interactions", source),
        items=conform(items, "items", source),
        users=conform(users, "users", source),
        name=name,
        checksum=files_checksum(roles),
        files={
            table: str(path)
            for table, path in (("interactions", ratings_file), ("items", layout.items), ("users", layout.users))
            if path is not None
        },
    )
