"""Readers that bring every supported source into the canonical tables of ``data_contracts.schema``.

Each reader returns a :class:`Tables`; the on-disk formats are documented in
``data_contracts/FORMATS.md``.

- ``synthetic.generate_synthetic(SyntheticConfig(...))`` — the embedded, seeded default dataset.
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
from dataclasses import dataclass
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
    same bytes.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    name: str
    checksum: str

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


def _read_synthetic(path: str | None, **kw: Any) -> Tables:
    from .synthetic import SyntheticConfig, generate_synthetic

    if path not in (None, ""):
        raise SourceError(
            f"source 'synthetic' takes no path (got {path!r}); pass its settings as keyword "
            "arguments (SyntheticConfig fields)"
        )
    try:
        config = SyntheticConfig(**kw)
    except TypeError as exc:
        raise SourceError(f"source 'synthetic': {exc}") from None
    return generate_synthetic(config)


def _read_movielens(path: str, **kw: Any) -> Tables:
    from .movielens import read_movielens

    return read_movielens(path, **kw)


def _read_movielens_download(path: str, **kw: Any) -> Tables:
    """``path`` is ``<cache_dir>/<release name>``, e.g. ``~/.cinesync/data/ml-1m``."""
    from .download import fetch_movielens
    from .movielens import read_movielens

    target = Path(path).expanduser()
    fetch_kw = {k: kw.pop(k) for k in ("base_url", "expected_md5", "progress") if k in kw}
    name = kw.pop("release", None) or target.name
    folder = fetch_movielens(name, target.parent, **fetch_kw)
    if "progress" in fetch_kw:
        kw["progress"] = fetch_kw["progress"]
    return read_movielens(folder, **kw)


def _read_generic(path: str, **kw: Any) -> Tables:
    from .generic import read_generic

    return read_generic(path, **kw)


_READERS: dict[str, Callable[..., Tables]] = {
    "synthetic": _read_synthetic,
    "movielens": _read_movielens,
    "generic": _read_generic,
    "movielens-download": _read_movielens_download,
}
SOURCE_KINDS = tuple(_READERS)


def read_source(kind: str, path: str | None = None, **kw: Any) -> Tables:
    """Read one source into canonical tables.

    - ``"synthetic"``: ``path`` must be empty/None; ``kw`` are ``SyntheticConfig`` fields.
    - ``"movielens"``: ``path`` is a local release folder; ``kw`` go to ``read_movielens``
      (``ratings_path``, ``item_text_path``, ``name``, ``progress``).
    - ``"movielens-download"``: ``path`` is ``<cache_dir>/<release>`` (e.g. ``.cache/ml-100k``);
      the release is fetched (or found in the verified cache) and read. ``kw``: ``base_url``,
      ``expected_md5``, ``progress``, ``release`` (overrides the name taken from ``path``) and
      the ``read_movielens`` keywords.
    - ``"generic"``: ``path`` is a folder in the generic format (FORMATS.md).
    """
    reader = _READERS.get(kind)
    if reader is None:
        raise SourceError(f"unknown source kind {kind!r}; known kinds: {', '.join(SOURCE_KINDS)}")
    return reader(path, **kw)
