"""Stable hashed rows for categorical values (genres, cast, networks, demographics, ...).

A value is looked up in an embedding table by a hash of its text instead of a vocabulary, so the
table's shape comes from the config alone (a saved model reloads anywhere) and a value first
seen after training (a new actor) still has a row. crc32, not Python's ``hash``: a str's
``hash`` is salted per process, and training and serving run in different processes.
"""

from __future__ import annotations

import zlib

import torch


def stable_row(key: str, rows: int) -> int:
    """Row 1..rows-1 of an embedding table for ``key``; row 0 is left to padding (empty)."""
    return 1 + zlib.crc32(key.encode()) % (rows - 1)


def stable_rows(keys: list[str], rows: int) -> torch.Tensor:
    """LongTensor of ``stable_row`` for each key."""
    return torch.tensor([stable_row(key, rows) for key in keys], dtype=torch.long)
