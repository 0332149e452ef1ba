"""The registry session on `wes_arvados.http`, against a server that sends exact bytes.

Each test scripts the answers byte for byte (what a registry or a broken server
could send) and checks what the session reads, what it sent, and when it opens
a new connection.
"""

from __future__ import annotations

import socket
import threading
from typing import List, Optional, Sequence

import pytest

from wes_arvados.images.registry import RegistryOptions
from wes_arvados.images.registry.retry import with_retries
from wes_arvados.images.registry.session import (
    BrokenConnection,
    CannotConnect,
    make_session,
)

from ..wes import free_port

FAST = RegistryOptions(backoff=0.01, max_attempts=3)


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

    def url(self, path: str = "/v2/") -> str:
        """The URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"


def ok(body: bytes) -> bytes:
    """A 200 answer carrying `body`."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def whole(response) -> bytes:  # type: ignore[no-untyped-def]
    """The body of a session `Response`, read to its end."""
    return response.read_capped(1 << 20, "the body")


def test_the_session_sends_host_user_agent_and_identity_encoding_and_reuses_the_connection() -> None:
    server = Scripted([ok(b"ok"),
                       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                       ok(b"ok")])
    session = make_session(RegistryOptions(user_agent="wes-test/2"))
    assert [whole(session.get(server.url())) for _ in range(3)] == [b"ok"] * 3
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n")
    assert head[0] == b"GET /v2/ HTTP/1.1" and head[-2:] == [b"", b""]
    assert sorted(head[1:-2]) == sorted([f"Host: 127.0.0.1:{server.port}".encode(), b"User-Agent: wes-test/2",
                                         b"Accept-Encoding: identity"])


def test_repeated_header_fields_are_each_kept_and_names_are_read_without_regard_to_case() -> None:
    server = Scripted([b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nX-Two: a\r\nX-Two: b\r\n\r\nnah"])
    response = make_session(RegistryOptions()).get(server.url())
    assert (response.status_code, response.reason, whole(response)) == (404, "Not Found", b"nah")
    assert response.headers["CONTENT-LENGTH"] == "3" and response.headers.getlist("x-two") == ["a", "b"]


def test_a_body_left_unread_is_not_read_by_the_next_request() -> None:
    server = Scripted([ok(b"long"), ok(b"ok")])
    session = make_session(RegistryOptions())
    response = session.get(server.url())
    assert response.read1(2) == b"lo"
    response.close()  # two bytes unread: the connection cannot carry another request
    assert whole(session.get(server.url())) == b"ok"
    assert server.connections == 2


def test_answers_without_a_body_leave_the_connection_for_the_next_request() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nDocker-Content-Digest: sha256:ab\r\n\r\n",
                       b"HTTP/1.1 204 No Content\r\n\r\n", ok(b"!")])
    session = make_session(RegistryOptions())
    head = session.request("HEAD", server.url("/v2/m"))  # its Content-Length is the GET's: no body follows
    assert head.headers["Docker-Content-Digest"] == "sha256:ab" and head.read1(100) == b""
    assert session.get(server.url()).status_code == 204
    assert whole(session.get(server.url())) == b"!"  # the bytes after each head were the next answer's
    assert server.connections == 1


def test_a_stale_keep_alive_connection_is_sent_on_once_more_on_a_new_one() -> None:
    # The server closes an idle connection just as the next request goes out on it: nothing was answered.
    server = Scripted([ok(b"first"), None, ok(b"second")])
    session = make_session(RegistryOptions())
    assert whole(session.get(server.url())) == b"first"
    assert whole(session.get(server.url())) == b"second"
    assert server.connections == 2 and len(server.requests) == 3


def test_a_new_connection_closed_without_an_answer_is_not_sent_again_by_the_session() -> None:
    server = Scripted([None, ok(b"late")])
    with pytest.raises(CannotConnect, match="RemoteDisconnected") as caught:
        make_session(RegistryOptions()).get(server.url())
    assert caught.value.retryable  # retry.py may try again, with its backoff
    assert len(server.requests) == 1


def test_pooled_connections_the_server_closed_are_replaced_by_a_new_one() -> None:
    server = Scripted([ok(b"first"), ok(b"second"), ok(b"third")], one_per_connection=True)
    session = make_session(RegistryOptions(user_agent="wes-test/1"))
    first = session.request("GET", server.url())
    second = session.request("GET", server.url())  # the first is not read yet: a second connection
    assert (whole(first), whole(second)) == (b"first", b"second")  # both idle now, and closed by the server
    assert whole(session.request("GET", server.url())) == b"third"
    server.thread.join(5)
    assert len(server.requests) == 3 and all(b"User-Agent: wes-test/1" in request for request in server.requests)


def test_a_body_cut_short_is_a_broken_connection_not_an_end() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut short"])  # one byte short
    response = make_session(RegistryOptions()).request("GET", server.url("/"))
    assert response.read1(1024) == b"cut short"
    with pytest.raises(BrokenConnection, match="closed with 1 bytes of the body unread"):
        response.read1(1024)
    server.thread.join(5)


def test_a_chunked_body_cut_short_is_a_broken_connection() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"])
    with pytest.raises(BrokenConnection, match=f"127.0.0.1:{server.port}"):
        whole(make_session(RegistryOptions()).get(server.url()))


def test_what_is_not_an_http_answer_cannot_be_read() -> None:
    garbage = Scripted([b"SSH-2.0-OpenSSH_9.2\r\n"])
    with pytest.raises(CannotConnect, match="BadStatusLine"):
        make_session(RegistryOptions()).get(garbage.url())


def test_an_answer_this_client_cannot_read_or_a_url_it_cannot_send_is_not_retried() -> None:
    gzipped = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n"
    server = Scripted([gzipped] * FAST.max_attempts, one_per_connection=True)
    session = make_session(FAST)
    slept: List[float] = []
    with pytest.raises(CannotConnect, match="transfer coding gzip is not supported"):
        with_retries(lambda: session.request("GET", server.url("/")), FAST, "test", sleep=slept.append)
    assert len(server.requests) == 1 and slept == []
    with pytest.raises(CannotConnect, match="unsupported URL"):
        with_retries(lambda: session.request("GET", "ftp://127.0.0.1/x"), FAST, "test", sleep=slept.append)
    assert slept == []
    # A connection that is refused may be worth another try: it is retried.
    with pytest.raises(CannotConnect, match="Connection refused"):
        with_retries(lambda: session.request("GET", f"http://127.0.0.1:{free_port()}/"), FAST, "test",
                     sleep=slept.append)
    assert len(slept) == FAST.max_attempts - 1


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer abc\r\nX-Injected: 1"},
    {"X-Name\n": "v"},
])
def test_a_line_break_from_a_registry_value_cannot_inject_a_header(headers: dict) -> None:
    server = Scripted([ok(b"")])
    session = make_session(FAST)
    slept: List[float] = []
    with pytest.raises(CannotConnect) as caught:
        with_retries(lambda: session.request("GET", server.url(), headers), FAST, "test", sleep=slept.append)
    assert not caught.value.retryable and slept == []
    assert whole(session.get(server.url())) == b""  # the session sends a good request afterwards
    assert len(server.requests) == 1 and b"X-Injected" not in server.requests[0]


def test_a_line_break_in_a_url_is_escaped_not_sent() -> None:
    server = Scripted([ok(b"")])
    whole(make_session(FAST).get(server.url("/v2/a b\r\nX-Injected: 1")))
    request_line, _, rest = server.requests[0].partition(b"\r\n")
    assert request_line.startswith(b"GET /v2/a%20b%0D%0AX-Injected:%201 HTTP/1.1") and b"X-Injected" not in rest


def test_a_request_body_goes_with_its_length() -> None:
    server = Scripted([ok(b"")])
    make_session(FAST).post_form(server.url("/token"), {"grant_type": "password"}).close()
    assert b"Content-Length: 19\r\n" in server.requests[0]
    assert server.requests[0].endswith(b"\r\n\r\ngrant_type=password")
