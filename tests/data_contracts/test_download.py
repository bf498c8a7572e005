"""fetch_movielens against a loopback HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from data_contracts.sources import SourceError, read_source
from data_contracts.sources.download import MARKER_NAME, fetch_movielens

NAME = "ml-tiny"
FILES = {
    "u.data": "1\t2\t5\t881250949\n2\t1\t3\t891717742\n",
    "u.item": "1|One (1995)|01-Jan-1995||url|" + "|".join(["0"] * 18 + ["1"]) + "\n"
    "2|Two (1996)|01-Jan-1996||url|" + "|".join(["0", "1"] + ["0"] * 17) + "\n",
    "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
}


def build_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in FILES.items():
            zf.writestr(f"{NAME}/{name}", text)
    return buffer.getvalue()


class Server:
    """A loopback HTTP server on an ephemeral port serving ``files`` (path -> bytes)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/movielens/"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not be routed through a proxy configured in the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def archive() -> bytes:
    return build_zip()


@pytest.fixture
def server(archive):
    digest = hashlib.md5(archive).hexdigest()
    srv = Server({
        f"/movielens/{NAME}.zip": archive,
        f"/movielens/{NAME}.zip.md5": f"MD5 ({NAME}.zip) = {digest}\n".encode(),
    })
    yield srv
    srv.stop()


def test_fetch_downloads_verifies_and_unpacks_stripping_the_top_folder(server, tmp_path, archive):
    folder = fetch_movielens(NAME, tmp_path, base_url=server.base_url, progress=False)
    assert folder == tmp_path / NAME
    assert {p.name for p in folder.iterdir()} == set(FILES) | {MARKER_NAME}
    assert (folder / "u.data").read_text() == FILES["u.data"]
    assert hashlib.md5(archive).hexdigest() in (folder / MARKER_NAME).read_text()
    assert server.requests == [f"/movielens/{NAME}.zip.md5", f"/movielens/{NAME}.zip"]
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*unpack*"))


def test_second_call_hits_the_verified_cache_without_network(server, tmp_path):
    first = fetch_movielens(NAME, tmp_path, base_url=server.base_url, progress=False)
    count = len(server.requests)
    server.stop()
    again = fetch_movielens(NAME, tmp_path, base_url=server.base_url, progress=False)
    assert again == first and len(server.requests) == count


def test_expected_md5_skips_the_published_checksum(server, tmp_path, archive):
    fetch_movielens(NAME, tmp_path, base_url=server.base_url, expected_md5=hashlib.md5(archive).hexdigest(),
                    progress=False)
    assert server.requests == [f"/movielens/{NAME}.zip"]


def test_checksum_mismatch_deletes_the_partial_file_and_names_both_digests(server, tmp_path, archive):
    wrong = "0" * 32
    with pytest.raises(SourceError) as exc:
        fetch_movielens(NAME, tmp_path, base_url=server.base_url, expected_md5=wrong, progress=False)
    message = str(exc.value)
    assert f"{server.base_url}{NAME}.zip" in message
    assert wrong in message and hashlib.md5(archive).hexdigest() in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_published_checksum_mismatch_is_refused(server, tmp_path):
    server.files[f"/movielens/{NAME}.zip.md5"] = f"MD5 ({NAME}.zip) = {'a' * 32}\n".encode()
    with pytest.raises(SourceError, match=f"checksum mismatch.*expected md5 {'a' * 32}"):
        fetch_movielens(NAME, tmp_path, base_url=server.base_url, progress=False)
    assert not (tmp_path / NAME).exists()


def test_missing_release_404_names_the_url(server, tmp_path):
    with pytest.raises(SourceError) as exc:
        fetch_movielens("ml-nope", tmp_path, base_url=server.base_url, expected_md5="0" * 32, progress=False)
    assert str(exc.value) == f"download of {server.base_url}ml-nope.zip failed: HTTP 404 Not Found"
    assert not list(tmp_path.iterdir())


def test_missing_checksum_file_suggests_expected_md5(server, tmp_path):
    with pytest.raises(SourceError, match="ml-nope.zip.md5.*404.*expected_md5"):
        fetch_movielens("ml-nope", tmp_path, base_url=server.base_url, progress=False)


def test_changed_expected_md5_downloads_again(server, tmp_path, archive):
    fetch_movielens(NAME, tmp_path, base_url=server.base_url, progress=False)
    count = len(server.requests)
    with pytest.raises(SourceError, match="checksum mismatch"):
        fetch_movielens(NAME, tmp_path, base_url=server.base_url, expected_md5="f" * 32, progress=False)
    assert len(server.requests) == count + 1


def test_invalid_release_name_is_refused(tmp_path):
    with pytest.raises(SourceError, match="invalid MovieLens release name"):
        fetch_movielens("../etc", tmp_path)


def test_read_source_movielens_download_fetches_and_reads(server, tmp_path):
    tables = read_source("movielens-download", str(tmp_path / NAME), base_url=server.base_url, progress=False)
    assert len(tables.interactions) == 2 and len(tables.items) == 2 and tables.name == NAME
