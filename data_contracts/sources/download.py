"""Download a MovieLens release with checksum verification, into a local cache.

``fetch_movielens("ml-100k", cache_dir)`` downloads ``<base_url>ml-100k.zip``, checks its MD5
against ``expected_md5`` or against the ``ml-100k.zip.md5`` file GroupLens publishes next to it,
unpacks it into ``cache_dir/ml-100k/`` (the archive's single top-level folder, e.g.
``ml-10M100K/``, is stripped) and writes a marker file with the verified checksum there. A later
call that finds the marker returns the folder without touching the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from . import SourceError

__all__ = ["fetch_movielens", "GROUPLENS_BASE_URL", "MARKER_NAME"]

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
MARKER_NAME = ".cinesync-download.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MD5 = re.compile(r"\b([0-9a-fA-F]{32})\b")
_TIMEOUT_S = 60
_BLOCK = 1 << 16


def _http_error(url: str, exc: Exception) -> SourceError:
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()  # an HTTPError holds the open response
        return SourceError(f"download of {url} failed: HTTP {exc.code} {exc.reason}")
    reason = getattr(exc, "reason", exc)
    return SourceError(f"download of {url} failed: {reason}")


def _published_md5(url: str) -> str:
    """The hex digest in a published checksum file ("MD5 (x.zip) = <hex>" or "<hex>  x.zip")."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(
            f"cannot fetch the checksum {url} ({_http_error(url, exc)}); pass expected_md5 to verify "
            "the download another way"
        ) from None
    match = _MD5.search(text)
    if match is None:
        raise SourceError(f"checksum file {url} holds no MD5 hex digest: {text[:80]!r}")
    return match.group(1).lower()


def _download(url: str, destination: Path, progress: bool) -> str:
    """Stream ``url`` into ``destination``; return the MD5 hex digest of the bytes written."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = response.headers.get("Content-Length")
            with open(destination, "wb") as out, tqdm(
                total=int(total) if total and total.isdigit() else None,
                unit="B",
                unit_scale=True,
                desc=f"download {url.rsplit('/', 1)[-1]}",
                disable=not progress,
                leave=False,
            ) as bar:
                while block := response.read(_BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as exc:
        destination.unlink(missing_ok=True)
        raise _http_error(url, exc) from None
    return digest.hexdigest()


def _unpack(archive: Path, url: str, target: Path) -> None:
    """Extract ``archive`` into ``target`` (replacing it), stripping a single top-level folder."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = staging.resolve()
                for member in zf.namelist():
                    if not (staging / member).resolve().is_relative_to(root):
                        raise SourceError(f"archive {url} has an entry outside its folder: {member!r}")
                zf.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise SourceError(f"download of {url} is not a valid zip archive ({exc})") from None
        entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        if target.exists():
            shutil.rmtree(target)
        content.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def fetch_movielens(
    name: str,
    cache_dir: str | os.PathLike,
    *,
    base_url: str = GROUPLENS_BASE_URL,
    expected_md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Return ``cache_dir/<name>/`` holding the unpacked release ``<base_url><name>.zip``.

    The archive is verified against ``expected_md5`` when given, else against the digest in
    ``<base_url><name>.zip.md5``. A verified cache (marker file with the checksum; with
    ``expected_md5``, the same checksum) is returned without any download. On a checksum mismatch
    the partial file is deleted and SourceError names the URL and both digests; HTTP and network
    errors raise SourceError naming the URL.
    """
    if not _NAME.match(name):
        raise SourceError(f"invalid MovieLens release name {name!r} (expected e.g. 'ml-100k')")
    if expected_md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", expected_md5):
        raise SourceError(f"expected_md5 must be 32 hex digits, got {expected_md5!r}")
    cache = Path(cache_dir).expanduser()
    target = cache / name
    marker = target / MARKER_NAME
    url = f"{base_url if base_url.endswith('/') else base_url + '/'}{name}.zip"

    if marker.is_file():
        try:
            cached = json.loads(marker.read_text()).get("md5", "")
        except (ValueError, OSError, AttributeError):
            cached = ""
        if cached and (expected_md5 is None or cached == expected_md5.lower()):
            return target

    cache.mkdir(parents=True, exist_ok=True)
    expected = expected_md5.lower() if expected_md5 else _published_md5(f"{url}.md5")
    partial = cache / f"{name}.zip.part"
    actual = _download(url, partial, progress)
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise SourceError(f"checksum mismatch for {url}: expected md5 {expected}, got {actual}")
    try:
        _unpack(partial, url, target)
    finally:
        partial.unlink(missing_ok=True)
    tmp_marker = target / f"{MARKER_NAME}.tmp"
    tmp_marker.write_text(json.dumps({"name": name, "url": url, "md5": actual}, indent=1))
    tmp_marker.replace(marker)
    return target
