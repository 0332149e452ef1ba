"""`wes_arvados.http`, the one outgoing-HTTP factory, and `download` on it, against small loopback servers."""

from __future__ import annotations

import gzip
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from wes_arvados.download import DownloadError, download
from wes_arvados.http import (
    BodyTooLarge,
    BrokenConnection,
    CannotConnect,
    Client,
    ProxyRefused,
    read1,
    read_capped,
    release,
)
from wes_arvados.proxies import proxy_for

from .threaded import ThreadedServer
from .wes import free_port

BODY = b"0123456789" * 1000
GZIPPED = gzip.compress(BODY)


class Handler(BaseHTTPRequestHandler):
    """Routes of a small server: bodies with and without a length, gzip, redirects, a stall, a slow answer."""

    protocol_version = "HTTP/1.1"
    seen: List[Dict[str, str]] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: Dict[str, str] = {}) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.lock:
            type(self).seen.append({"path": self.path, **dict(self.headers.items())})
        if self.path == "/body":
            return self._answer(200, BODY)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(BODY), 3000):
                piece = BODY[start:start + 3000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return None
        if self.path == "/gzip":
            return self._answer(200, GZIPPED, {"Content-Encoding": "gzip"})
        if self.path.startswith("/redirect/"):
            left = int(self.path.rsplit("/", 1)[1])
            return self._answer(302, headers={"Location": f"/redirect/{left - 1}" if left > 1 else "/body"})
        if self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:100])
            self.wfile.flush()
            time.sleep(1)
            return None
        if self.path == "/slow":
            time.sleep(0.3)
            return self._answer(200, b"slow")
        return self._answer(404, b"no such thing")


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    Handler.seen = []
    with ThreadedServer(Handler) as running:
        yield running


def url(server: ThreadedServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_bodies_are_read_as_sent_not_decoded(server: ThreadedServer) -> None:
    response = Client().request("GET", url(server, "/gzip"))
    assert response.headers["Content-Encoding"] == "gzip"
    assert read_capped(response, 1 << 20, "the body") == GZIPPED  # digests are of the bytes as stored


def test_read_capped_reads_up_to_its_limit_and_names_what_was_too_large(server: ThreadedServer) -> None:
    client = Client()
    for path in ("/body", "/chunked"):
        assert read_capped(client.request("GET", url(server, path)), len(BODY), "the body") == BODY
        with pytest.raises(BodyTooLarge, match=f"the {path[1:]} answer is larger than the limit of 9999 bytes"):
            read_capped(client.request("GET", url(server, path)), len(BODY) - 1, f"the {path[1:]} answer")
    # The connection of a body left unread is not reused; the next request still gets a whole answer.
    assert read_capped(client.request("GET", url(server, "/body")), len(BODY), "the body") == BODY


def test_no_redirect_is_followed_unless_asked(server: ThreadedServer) -> None:
    client = Client()
    response = client.request("GET", url(server, "/redirect/2"))
    assert response.status == 302 and response.headers["Location"] == "/redirect/1"
    release(response)
    followed = client.request("GET", url(server, "/redirect/2"), redirects=3)
    assert followed.status == 200 and read_capped(followed, len(BODY), "the body") == BODY


def test_many_requests_to_one_origin_run_in_parallel(server: ThreadedServer) -> None:
    client = Client(maxsize=4)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: read_capped(client.request("GET", url(server, "/slow")), 10, "it"), range(8)))
    assert bodies == [b"slow"] * 8
    assert time.monotonic() - started < 1.5  # 8 x 0.3 s one after the other would be 2.4 s


def test_a_stalled_answer_is_a_broken_connection_naming_the_server(server: ThreadedServer) -> None:
    response = Client(timeout=0.3).request("GET", url(server, "/stall"))
    assert read1(response, 1 << 20) == BODY[:100]
    with pytest.raises(BrokenConnection, match=f"127.0.0.1:{server.port}.*stalled"):
        read1(response, 1 << 20)


def test_a_refused_connection_may_be_tried_again() -> None:
    with pytest.raises(CannotConnect, match="Connection refused") as caught:
        Client().request("GET", f"http://127.0.0.1:{free_port()}/")
    assert caught.value.retryable


def test_loopback_is_never_proxied_and_only_http_proxies_are_spoken(monkeypatch: pytest.MonkeyPatch,
                                                                     server: ThreadedServer) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@proxy.example:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert proxy_for(url(server, "/body")) is None
    assert read_capped(Client().request("GET", url(server, "/body")), len(BODY), "the body") == BODY
    assert proxy_for("http://example.org/") == "http://127.0.0.1:9"
    with pytest.raises(ProxyRefused, match="socks5://proxy.example:1080 .* only http:// proxies") as caught:
        Client().request("GET", "https://example.org/")
    assert "secret" not in str(caught.value) and not caught.value.retryable


# ------------------------------------------------------------------------------------ download


def test_download_follows_redirects_and_saves_the_body(server: ThreadedServer, tmp_path: Path) -> None:
    dest = tmp_path / "saved"
    assert download(url(server, "/redirect/3"), dest, len(BODY), 10, "the file") == len(BODY)
    assert dest.read_bytes() == BODY


def test_download_refuses_what_is_too_large_missing_or_unreachable(server: ThreadedServer, tmp_path: Path) -> None:
    dest = tmp_path / "saved"
    with pytest.raises(DownloadError, match="the file is larger than 100 bytes"):
        download(url(server, "/chunked"), dest, 100, 10, "the file")
    with pytest.raises(DownloadError, match="the file answered HTTP 404"):
        download(url(server, "/missing"), dest, 100, 10, "the file")
    with pytest.raises(DownloadError, match="the file could not be fetched: cannot reach .*Connection refused"):
        download(f"http://127.0.0.1:{free_port()}/x", dest, 100, 10, "the file")
    with pytest.raises(DownloadError, match="the file could not be fetched: .*stalled"):
        download(url(server, "/stall"), dest, len(BODY), 0.3, "the file")
    with pytest.raises(DownloadError, match="could not be fetched: unsupported URL"):
        download("ftp://127.0.0.1/x", dest, 100, 10, "the file")
