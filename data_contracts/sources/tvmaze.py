"""TVmaze show-index dumps (``/shows?page=N`` JSON) read into item text rows.

A file holds either the API's plain JSON array of shows or an object ``{"shows": [...]}``
(both occur in ``../shared/data/tvmaze-shows``: page 1 is the plain array with every API field,
page 0 is wrapped and lacks ``network``). ``*.json.gz`` is decompressed transparently.

Each show becomes one row (``SHOW_COLUMNS``): ``title`` = name, ``kind`` "tv", ``release_date`` =
premiered ("YYYY-MM-DD" or ""), ``genres`` "|"-joined, ``network`` = network.name, else
webChannel.name, else "", ``description`` = the HTML summary as plain text (tags stripped,
entities unescaped, whitespace collapsed; "" when absent).

Duplicate show ids (the same show in two pages, or twice in one) are deduplicated: the first
occurrence in file order, then entry order, is kept and the rest are counted in
``TVmazeShows.duplicates`` (and logged), because overlapping page dumps are an expected way to get
the same show twice, not a sign of a broken file. Anything else that is not a well-formed show
(not an object, no positive integer id, no name, genres not a list of strings, premiered not a
date, a summary/network that is not text/an object) raises ``SourceError`` naming the file, the
entry's position and id, and the field.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from . import SourceError

__all__ = ["SHOW_COLUMNS", "TVmazeShows", "tvmaze_files", "read_tvmaze", "parse_show", "html_to_text"]

log = logging.getLogger(__name__)

SHOW_COLUMNS = ("tvmaze_id", "title", "kind", "release_date", "genres", "network", "description")
_DUMP_SUFFIXES = (".json", ".json.gz")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Tags that separate words; inline tags (<b>, <em>, ...) do not, e.g. "<b>Kirby</b>'s".
_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "tr", "td"})


@dataclass(frozen=True)
class TVmazeShows:
    """The shows read from one or more dumps.

    ``shows`` has ``SHOW_COLUMNS`` (one row per distinct id, in first-seen order); ``files`` the
    files read, in order; ``duplicates`` how many entries repeated an id already read (dropped);
    ``missing_summary`` how many kept shows have no description text.
    """

    shows: pd.DataFrame
    files: tuple[Path, ...]
    duplicates: int = 0
    missing_summary: int = 0


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities in text arrive unescaped
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities unescaped, whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return " ".join("".join(parser.parts).split())


def tvmaze_files(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The dump files named by ``spec``: one path, a comma-separated list of paths, a list of
    paths, or a folder (its ``*.json`` and ``*.json.gz`` files, sorted by name). Every named file
    must exist; a folder must hold at least one dump."""
    if isinstance(spec, (str, os.PathLike)):
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    else:
        parts = [str(p) for p in spec]
    if not parts:
        raise SourceError("TVmaze item text: no file given")
    files: list[Path] = []
    for part in parts:
        path = Path(part).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_DUMP_SUFFIXES))
            if not found:
                raise SourceError(f"TVmaze item text folder {path} holds no *.json or *.json.gz file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"TVmaze item text file {path} does not exist")
    return files


def read_tvmaze(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> TVmazeShows:
    """Read every dump named by ``spec`` (see ``tvmaze_files``) into one table of shows."""
    files = tvmaze_files(spec)
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    duplicates = 0
    for path in files:
        for index, entry in enumerate(_entries(path)):
            row = parse_show(entry, path, index)
            if row["tvmaze_id"] in seen:
                duplicates += 1
                continue
            seen.add(row["tvmaze_id"])
            rows.append(row)
    shows = pd.DataFrame(rows, columns=list(SHOW_COLUMNS))
    shows["tvmaze_id"] = shows["tvmaze_id"].astype("int64")
    missing = int((shows["description"] == "").sum())
    if duplicates:
        log.warning("TVmaze: %d entries repeat a show id already read; kept the first of each",
                    duplicates)
    if missing:
        log.warning("TVmaze: %d of %d shows have no summary", missing, len(shows))
    return TVmazeShows(shows, tuple(files), duplicates, missing)


def _entries(path: Path) -> list:
    """The list of show entries in one dump file (a JSON array, or an object with "shows")."""
    try:
        with open(path, "rb") as raw:
            data = gzip.decompress(raw.read()) if path.name.endswith(".gz") else raw.read()
        document = json.loads(data.decode("utf-8"))
    except (OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read ({exc})") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise SourceError(f"{path}: not valid JSON ({where}: {exc.msg})") from None
    if isinstance(document, dict) and isinstance(document.get("shows"), list):
        return document["shows"]
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        found = f"an object with keys {sorted(document)[:8]}"
    else:
        found = type(document).__name__
    raise SourceError(f'{path}: expected a JSON array of shows or {{"shows": [...]}}, found {found}')


def parse_show(entry: Any, path: str | os.PathLike, index: int) -> dict[str, Any]:
    """One show entry -> a dict with ``SHOW_COLUMNS``; ``SourceError`` names file, entry and field."""
    where = f"{path}: entry {index}"
    if not isinstance(entry, dict):
        raise SourceError(f"{where}: expected a show object, found {type(entry).__name__}")
    show_id = entry.get("id")
    if isinstance(show_id, bool) or not isinstance(show_id, int) or show_id < 1:
        raise SourceError(f"{where}: 'id' is missing or not a positive integer ({show_id!r})")
    where = f"{path}: entry {index} (id {show_id})"

    def bad(field: str, expected: str) -> SourceError:
        value = repr(entry.get(field))
        return SourceError(f"{where}: {field!r} {expected}, found {value[:80]}")

    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("name", "must be a non-empty string")
    genres = entry.get("genres") or []
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise bad("genres", "must be a list of strings")
    premiered = entry.get("premiered") or ""
    if not isinstance(premiered, str) or (premiered and not _ISO_DATE.fullmatch(premiered)):
        raise bad("premiered", 'must be "YYYY-MM-DD" or null')
    summary = entry.get("summary") or ""
    if not isinstance(summary, str):
        raise bad("summary", "must be an HTML string or null")
    return {
        "tvmaze_id": show_id,
        "title": name.strip(),
        "kind": "tv",
        "release_date": premiered,
        "genres": "|".join(g.strip() for g in genres if g.strip()),
        "network": _channel_name(entry, "network", bad) or _channel_name(entry, "webChannel", bad),
        "description": html_to_text(summary),
    }


def _channel_name(entry: dict, field: str, bad) -> str:
    channel = entry.get(field)
    if channel is None:
        return ""
    if not isinstance(channel, dict) or not isinstance(channel.get("name") or "", str):
        raise bad(field, "must be an object with a string 'name', or null")
    return (channel.get("name") or "").strip()
