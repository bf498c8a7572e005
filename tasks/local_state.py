"""What a local run keeps between runs: training checkpoints, quarantined rows, Flyte's cache.

A local ``pyflyte run`` writes task outputs under a temporary folder (``/tmp/flyte-*``) that a
reboot or a tmp cleaner removes, while Flyte's local cache (``~/.flyte/local-cache``) keeps
pointing at them (flyteorg/flyte#4672, #6393). So:

- files a user or a later run needs live under ``CINESYNC_HOME`` (default
  ``~/.cache/cinesync``): ``checkpoints/<family>-<key>/`` for training, ``quarantine/`` for rows
  set aside by the data contracts;
- every workflow's first task calls ``forget_missing_outputs()``, which drops cache entries whose
  local output files are gone, so their tasks run again instead of crashing downstream.

On a cluster none of this matters (outputs live in blob storage; Flyte's own checkpoint and
cache apply); the functions are harmless there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from pipeline.paths import HOME_ENV, cinesync_home  # noqa: F401  (the folder lives in pipeline/)


def checkpoint_dir(family: str, key: str) -> Path:
    """Where ``family``'s training checkpoints for the inputs hashed as ``key`` live."""
    folder = cinesync_home() / "checkpoints" / f"{family}-{key[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def quarantine_dir(dataset: str, checksum: str) -> Path:
    """Where the rows quarantined from one dataset (name + checksum) are written."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    folder = cinesync_home() / "quarantine" / f"{safe}-{checksum[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def forget_missing_outputs() -> int:
    """Drop every Flyte local-cache entry that points at a local file or folder no longer there.

    Returns how many entries were dropped. A no-op where the local cache is disabled or empty.
    """
    from flytekit.configuration import LocalConfig

    if not LocalConfig.auto().cache_enabled:
        return 0
    from flytekit.core.local_cache import CACHE_LOCATION

    if not Path(CACHE_LOCATION).expanduser().exists():
        return 0
    from diskcache import Cache

    dropped = 0
    with Cache(str(Path(CACHE_LOCATION).expanduser())) as cache:
        for key in list(cache.iterkeys()):
            value = cache.get(key)
            if value is not None and any(not Path(p).exists() for p in _local_paths(value)):
                cache.delete(key)
                dropped += 1
    if dropped:
        print(f"local cache: {dropped} cached task result(s) pointed at deleted files; they will run again")
    return dropped


def _local_paths(literal_map) -> Iterator[str]:
    """Every local file path a cached ``LiteralMap`` refers to (blobs, tables, dataclass fields)."""
    from flyteidl.core.literals_pb2 import LiteralMap as LiteralMapProto
    from flytekit.models.literals import LiteralMap

    if isinstance(literal_map, bytes):  # how flytekit 1.16 stores an entry: serialized protobuf
        try:
            proto = LiteralMapProto()
            proto.ParseFromString(literal_map)
            literal_map = LiteralMap.from_flyte_idl(proto)
        except Exception:  # noqa: BLE001 - not ours to understand: leave the entry alone
            return
    if not isinstance(literal_map, LiteralMap):
        return
    for literal in literal_map.literals.values():
        yield from _literal_paths(literal)


def _literal_paths(literal) -> Iterator[str]:
    if literal.collection is not None:
        for item in literal.collection.literals:
            yield from _literal_paths(item)
        return
    if literal.map is not None:
        for item in literal.map.literals.values():
            yield from _literal_paths(item)
        return
    scalar = literal.scalar
    if scalar is None:
        return
    if scalar.blob is not None:
        yield from _as_local(scalar.blob.uri)
    elif scalar.structured_dataset is not None:
        yield from _as_local(scalar.structured_dataset.uri)
    elif scalar.binary is not None and scalar.binary.tag == "msgpack":
        import msgpack

        try:
            yield from _nested_paths(msgpack.loads(scalar.binary.value, strict_map_key=False))
        except Exception:  # noqa: BLE001 - an opaque binary value holds no path we can check
            return
    elif scalar.generic is not None:
        from google.protobuf.json_format import MessageToDict

        yield from _nested_paths(MessageToDict(scalar.generic))


def _nested_paths(value) -> Iterator[str]:
    """Paths inside a dataclass value (FlyteFile/FlyteDirectory fields serialize as {"path": ...},
    DataFrames as {"uri": ...})."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("path", "uri") and isinstance(item, str):
                yield from _as_local(item)
            else:
                yield from _nested_paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nested_paths(item)


def _as_local(uri: str) -> Iterator[str]:
    """``uri`` as a local path if it is one (absolute path or file://), else nothing."""
    if not uri:
        return
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        yield parsed.path
    elif not parsed.scheme and os.path.isabs(uri):
        yield uri
