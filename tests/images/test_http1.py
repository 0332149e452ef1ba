"""HTTP/1.1 framing of `wes_arvados.images.registry.http1`, against a server that sends exact bytes.

Each test scripts the answers byte for byte (what a registry, a proxy or a broken
server could send) and checks what the client reads, what it sent, and whether
the connection is fit to carry the next request.
"""

from __future__ import annotations

import socket
import threading
from typing import List, Optional, Sequence

import pytest

from wes_arvados.images.registry import RegistryOptions
from wes_arvados.images.registry.http1 import ClosedBeforeAnswer, Connection, ProtocolError
from wes_arvados.images.registry.session import BrokenConnection, CannotConnect, make_session


class Scripted:
    """A server on loopback that answers requests with `answers`, in turn, then closes.

    Requests on one connection are answered on it until the client closes it, or
    after one answer if `one_per_connection` (keep-alive promised, then the
    connection closed, as a server dropping idle connections does). An answer of
    None closes the connection without a byte. Requests are recorded whole (head
    and Content-Length body) in `requests`.
    """

    def __init__(self, answers: Sequence[Optional[bytes]], one_per_connection: bool = False) -> None:
        self.answers = list(answers)
        self.one_per_connection = one_per_connection
        self.requests: List[bytes] = []
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self.server.accept()
            self.connections += 1
            with conn:
                pending = b""
                while self.answers:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(65536)
                        if not data:
                            break
                        pending += data
                    if b"\r\n\r\n" not in pending:
                        break  # the client closed this connection: wait for the next
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(pending) < length:
                        pending += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + pending[:length])
                    pending = pending[length:]
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if self.one_per_connection:
                        break
        self.server.close()

    def connection(self) -> Connection:
        """A client connection to this server."""
        return Connection(("127.0.0.1", self.port), timeout=10)

    def url(self, path: str = "/v2/") -> str:
        """The URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"


HEADERS = {"Host": "registry.test"}


def _sent(*answers: Optional[bytes]) -> Connection:
    """A connection to a server that will send `answers`, with a GET of /v2/ sent on it."""
    conn = Scripted(answers).connection()
    conn.request("GET", "/v2/", HEADERS)
    return conn


def _exchange(conn: Connection, method: str = "GET", target: str = "/v2/") -> bytes:
    conn.request(method, target, HEADERS)
    return conn.getresponse(method).read()


def ok(body: bytes) -> bytes:
    """A 200 answer carrying `body`."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_content_length_bodies_are_read_to_their_length_and_the_connection_carries_the_next_request() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                       b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nX-Two: a\r\nX-Two: b\r\n\r\nnah"])
    conn = server.connection()
    conn.request("GET", "/v2/", HEADERS)
    first = conn.getresponse("GET")
    assert (first.status, first.reason, first.version) == (200, "OK", 11)
    assert first.read1(3) == b"hel" and first.read1(100) == b"lo" and first.read1(100) == b""
    assert first.complete and not first.will_close
    conn.request("GET", "/v2/x", HEADERS)
    second = conn.getresponse("GET")
    assert (second.status, second.read()) == (404, b"nah")
    assert second.headers["CONTENT-LENGTH"] == "3" and second.headers.get("x-two") == "a"
    assert second.headers.get_all("X-Two") == ["a", "b"] and "x-TWO" in second.headers
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n")
    conn.close()


def test_a_chunked_body_with_extensions_and_trailers_is_decoded_and_leaves_the_connection_clean() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
    server = Scripted([chunked, b"HTTP/1.1 204 No Content\r\n\r\n"])
    conn = server.connection()
    conn.request("GET", "/v2/", HEADERS)
    answer = conn.getresponse("GET")
    assert answer.chunked and answer.read1(3) == b"hel"
    assert answer.read() == b"lo" + b"z" * 26 and answer.complete
    conn.request("GET", "/v2/", HEADERS)
    empty = conn.getresponse("GET")
    assert (empty.status, empty.read(), empty.complete) == (204, b"", True)
    assert server.connections == 1


def test_interim_answers_are_skipped_and_answers_without_a_body_read_none() -> None:
    server = Scripted([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nDocker-Content-Digest: sha256:ab\r\n\r\n",
                       b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!"])
    conn = server.connection()
    assert _exchange(conn) == b"ok"
    conn.request("HEAD", "/v2/m", HEADERS)
    head = conn.getresponse("HEAD")  # its Content-Length is the GET's: no body follows
    assert head.headers["Docker-Content-Digest"] == "sha256:ab" and head.read() == b"" and head.complete
    conn.request("GET", "/v2/m", HEADERS)
    assert conn.getresponse("GET").read() == b""
    assert _exchange(conn) == b"!"  # the bytes after each head were the next answer's, not a body
    assert server.connections == 1


def test_a_body_framed_by_the_end_of_the_connection_is_read_until_it_closes() -> None:
    conn = _sent(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    answer = conn.getresponse("GET")
    assert answer.will_close and answer.length is None
    assert answer.read() == b"until the end" and answer.complete


@pytest.mark.parametrize("connection, version, will_close", [
    ("", "1.1", False), ("close", "1.1", True), ("", "1.0", True), ("keep-alive", "1.0", False),
    ("Keep-Alive, Upgrade", "1.1", False), ("upgrade, CLOSE", "1.1", True),
])
def test_whether_the_server_keeps_the_connection_follows_the_version_and_the_connection_header(
        connection: str, version: str, will_close: bool) -> None:
    field = f"Connection: {connection}\r\n" if connection else ""
    conn = _sent(f"HTTP/{version} 200 OK\r\n{field}Content-Length: 0\r\n\r\n".encode())
    assert conn.getresponse("GET").will_close is will_close
    conn.close()


def test_folded_header_lines_are_unfolded_and_spaces_around_values_dropped() -> None:
    conn = _sent(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate:  Bearer realm=\"https://auth.test/token\",\r\n"
                 b"\tservice=\"registry.test\"  \r\nContent-Length: 0\r\n\r\n")
    answer = conn.getresponse("GET")
    assert answer.headers["www-authenticate"] == 'Bearer realm="https://auth.test/token", service="registry.test"'


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nName : value\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "conflicting Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "header line is too long"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", "closed inside the answer's headers"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "transfer coding gzip, chunked"),
])
def test_answers_that_are_not_http_1_are_refused_by_name(answer: bytes, message: str) -> None:
    conn = _sent(answer)
    with pytest.raises(ProtocolError, match=message):
        conn.getresponse("GET")
    conn.close()


def test_the_same_content_length_twice_is_one_length() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"])
    conn = server.connection()
    assert _exchange(conn) == b"ok"


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "closed inside a chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", "does not end where"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk-size line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", "closed before the next chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n", "closed inside the trailers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "5 bytes of the body unread"),
])
def test_a_body_cut_short_or_misframed_is_an_error_not_an_end(answer: bytes, message: str) -> None:
    conn = _sent(answer)
    response = conn.getresponse("GET")
    with pytest.raises(ProtocolError, match=message):
        response.read()
    assert not response.complete


def test_a_content_length_body_cut_short_ends_read1_with_bytes_still_owed() -> None:
    conn = _sent(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    response = conn.getresponse("GET")
    assert response.read1(100) == b"short"
    assert response.read1(100) == b"" and response.length == 5 and not response.complete


def test_a_connection_closed_without_an_answer_says_so() -> None:
    conn = _sent(None)
    with pytest.raises(ClosedBeforeAnswer):
        conn.getresponse("GET")


@pytest.mark.parametrize("target, headers", [
    ("/v2/a b", {}),
    ("/v2/\r\nX-Injected: 1", {}),
    ("", {}),
    ("/v2/", {"Authorization": "Bearer abc\r\nX-Injected: 1"}),
    ("/v2/", {"X-Name\n": "v"}),
    ("/v2/", {"X": "nul\0"}),
])
def test_a_line_break_from_a_registry_value_cannot_inject_a_header(target: str, headers: dict) -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = server.connection()
    with pytest.raises(ValueError, match="line break"):
        conn.request("GET", target, {**HEADERS, **headers})
    assert conn.sock is None  # refused before connecting, nothing sent
    assert _exchange(conn) == b""  # the same connection sends a good request afterwards
    assert server.requests == [b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n\r\n"]


def test_a_request_body_goes_with_its_length() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = server.connection()
    conn.request("POST", "/token", HEADERS, b"grant_type=password")
    conn.getresponse("POST").read()
    assert server.requests[0].endswith(b"Content-Length: 19\r\n\r\ngrant_type=password")


def test_the_session_sends_host_user_agent_and_identity_encoding_and_reuses_the_connection() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    session = make_session(RegistryOptions(user_agent="wes-test/2"))
    assert [session.get(server.url()).content for _ in range(3)] == [b"ok"] * 3
    assert server.connections == 1
    assert server.requests[0] == (f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUser-Agent: wes-test/2\r\n"
                                  "Accept-Encoding: identity\r\n\r\n").encode()


def test_a_connection_left_with_body_unread_is_not_reused() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlong",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    session = make_session(RegistryOptions())
    response = session.get(server.url())
    assert response.read1(2) == b"lo"
    response.close()  # two bytes unread: the connection cannot carry another request
    assert session.get(server.url()).content == b"ok"
    assert server.connections == 2


def test_the_session_turns_framing_errors_into_transport_errors() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"])
    session = make_session(RegistryOptions())
    with pytest.raises(BrokenConnection, match="closed inside a chunk"):
        session.get(server.url()).content
    garbage = Scripted([b"SSH-2.0-OpenSSH_9.2\r\n"])
    with pytest.raises(CannotConnect, match="not an HTTP/1.x status line"):
        session.get(garbage.url())
