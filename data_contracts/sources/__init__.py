"""Readers that bring every supported source into the canonical tables of ``data_contracts.schema``.

Each reader returns a :class:`Tables`; the on-disk formats are documented in
``data_contracts/FORMATS.md``.

- ``synthetic.generate_synthetic(SyntheticConfig(...))`` — the embedded, seeded default dataset
  (``item_text_path``: TVmaze show dumps give its TV shows real text).
- ``tvmaze.read_tvmaze(paths)`` — TVmaze show-index dumps as item text rows (not a source of
  interactions; the synthetic source uses it).
- ``movielens.read_movielens(folder, ...)`` — every MovieLens release format from a local folder.
- ``download.fetch_movielens(name, cache_dir, ...)`` — download + checksum-verify + unpack a release.
- ``generic.read_generic(folder)`` — the documented generic format (parquet or CSV).
- :func:`read_source` — one entry point dispatching on a kind string.

Every failure to read a source raises :class:`SourceError` (a ``ValueError``) with one line that
says what went wrong and where (file, line, offending text).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

__all__ = ["SourceError", "Tables", "read_source", "SOURCE_KINDS", "files_checksum"]


class SourceError(ValueError):
    """A source cannot be read: the message is one line naming what went wrong and where."""


@dataclass(frozen=True)
class Tables:
    """The three canonical tables of one dataset, plus its name and a content checksum.

    ``checksum`` is a sha256 hex digest over the source files read (see ``files_checksum``), or
    over the generator's config for synthetic data: two reads with equal checksums saw the
    same bytes. ``files`` maps each table read from a file to that file's path, so an error about
    a table's rows can name the file ({} for generated data).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    name: str
    checksum: str
    files: dict[str, str] = field(default_factory=dict)

    def __iter__(self):  # allows ``interactions, items, users, name, checksum = tables``
        return iter((self.interactions, self.items, self.users, self.name, self.checksum))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of one file's bytes, exactly as stored (a .gz file is hashed compressed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def files_checksum(files: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """Checksum of a dataset read from several files.

    ``files`` is a sequence of ``(role, path)`` pairs (role e.g. "ratings", "items", "users",
    "item_text"). The checksum is the sha256 of the text ``"role:sha256(file)\\n"`` over the pairs
    sorted by role, so it depends on the bytes of every file and on the role each played, not on
    file names or folders.
    """
    lines = sorted(f"{role}:{file_sha256(path)}\n" for role, path in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _unused(kind: str, **given: Any) -> None:
    extra = [k for k, v in given.items() if v not in (None, "")]
    if extra:
        raise SourceError(f"source {kind!r} does not take {', '.join(extra)}")


def _read_synthetic(path: str | None, *, synthetic_users: int | None, seed: int | None,
                    ratings_path: Any, item_text_path: Any, name: str | None, progress: bool,
                    **kw: Any) -> Tables:
    from .synthetic import SyntheticConfig, generate_synthetic

    if path not in (None, ""):
        raise SourceError(
            f"source 'synthetic' takes no path (got {path!r}); pass its settings as keyword "
            "arguments (SyntheticConfig fields)"
        )
    _unused("synthetic", ratings_path=ratings_path)
    if synthetic_users is not None:
        kw["n_users"] = synthetic_users
    if seed is not None:
        kw["seed"] = seed
    try:
        config = SyntheticConfig(**kw)
    except TypeError as exc:
        raise SourceError(f"source 'synthetic': {exc}") from None
    tables = generate_synthetic(config, item_text_path=item_text_path)
    return tables if name is None else Tables(*tuple(tables)[:3], name=name, checksum=tables.checksum)


def _require_path(kind: str, path: str | None) -> str:
    if path in (None, ""):
        raise SourceError(f"source {kind!r} needs a path")
    return str(path)


def _read_movielens(path: str | None, *, ratings_path: Any, item_text_path: Any, name: str | None,
                    progress: bool, **kw: Any) -> Tables:
    from .movielens import read_movielens

    _unused("movielens", **kw)
    return read_movielens(_require_path("movielens", path), ratings_path=ratings_path,
                          item_text_path=item_text_path, name=name, progress=progress)


def _read_movielens_download(path: str | None, *, ratings_path: Any, item_text_path: Any,
                             name: str | None, progress: bool, release: str | None = None,
                             base_url: str | None = None, expected_md5: str | None = None,
                             **kw: Any) -> Tables:
    """``path`` is ``<cache_dir>/<release name>``, e.g. ``~/.cinesync/data/ml-1m``."""
    from .download import GROUPLENS_BASE_URL, fetch_movielens
    from .movielens import read_movielens

    _unused("movielens-download", **kw)
    target = Path(_require_path("movielens-download", path)).expanduser()
    folder = fetch_movielens(release or target.name, target.parent,
                             base_url=base_url or GROUPLENS_BASE_URL,
                             expected_md5=expected_md5, progress=progress)
    return read_movielens(folder, ratings_path=ratings_path, item_text_path=item_text_path,
                          name=name, progress=progress)


def _read_generic(path: str | None, *, ratings_path: Any, item_text_path: Any, name: str | None,
                  progress: bool, **kw: Any) -> Tables:
    from .generic import read_generic

    _unused("generic", ratings_path=ratings_path, item_text_path=item_text_path, **kw)
    return read_generic(_require_path("generic", path), name=name)


_READERS: dict[str, Callable[..., Tables]] = {
    "synthetic": _read_synthetic,
    "movielens": _read_movielens,
    "generic": _read_generic,
    "movielens-download": _read_movielens_download,
}
SOURCE_KINDS = tuple(_READERS)


def read_source(
    kind: str,
    path: str | None = None,
    *,
    ratings_path: str | os.PathLike | None = None,
    item_text_path: str | os.PathLike | None = None,
    name: str | None = None,
    synthetic_users: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    **kw: Any,
) -> Tables:
    """Read one source into canonical tables.

    - ``"synthetic"``: ``path`` must be empty/None; ``synthetic_users`` (-> ``n_users``), ``seed``
      and any other ``SyntheticConfig`` field as keywords; ``item_text_path``: TVmaze show dumps
      (a file, a comma-separated list of files, or a folder) whose text the TV shows take.
    - ``"movielens"``: ``path`` is a local release folder; ``ratings_path``, ``item_text_path``,
      ``name``, ``progress`` as in ``read_movielens``.
    - ``"movielens-download"``: ``path`` is ``<cache_dir>/<release>`` (e.g. ``.cache/ml-100k``);
      the release is fetched (or found in the verified cache) and read. Extra keywords:
      ``release`` (overrides the name taken from ``path``), ``base_url``, ``expected_md5``.
    - ``"generic"``: ``path`` is a folder in the generic format (FORMATS.md); ``name``.

    ``synthetic_users`` and ``seed`` are ignored by the file sources, so one call site can pass
    every setting; ``ratings_path``/``item_text_path`` given to a source that has no use for them,
    or an unknown keyword, raise SourceError.
    """
    reader = _READERS.get(kind)
    if reader is None:
        raise SourceError(f"unknown source kind {kind!r}; known kinds: {', '.join(SOURCE_KINDS)}")
    common = dict(ratings_path=ratings_path, item_text_path=item_text_path, name=name, progress=progress)
    if kind == "synthetic":
        return reader(path, synthetic_users=synthetic_users, seed=seed, **common, **kw)
    return reader(path, **common, **kw)
