"""HTTP/1.1 on one connection (RFC 9112): a request out, its answer's head parsed, its body framed.

What a registry client needs and no more: requests with a small body or none,
answers read as they arrive, keep-alive, TLS (``ssl`` is imported only for
https), and an http proxy's CONNECT tunnel. It stands in for http.client, whose
import (with ``email`` for its headers, and ``ssl`` even for plain http) was a
fifth of every pull's start-up (benchmarks/README.rst).

The body's length follows RFC 9112 section 6.3: none for an answer to HEAD and
for 1xx, 204 and 304; chunked when Transfer-Encoding is chunked (any other
transfer coding is refused: it would change the bytes digests are of); else
Content-Length (several differing values are an error); else until the server
closes. Interim 1xx answers are skipped. Header lines are limited in length and
number, obsolete line folding is unfolded, and a request whose target or
header carries a line break is refused before anything is sent, so that no
value from a registry (a Location, a token) can inject a header.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    import ssl

# http.client's limits: a header line of at most 64 KiB, at most 100 header lines.
MAX_LINE = 65536
MAX_HEADERS = 100
# How far a chunk-size line may go, extensions included.
MAX_CHUNK_LINE = 4096
# The most a proxy's answer to CONNECT may hold before its blank line.
TUNNEL_ANSWER_LIMIT = 64 << 10


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.x as RFC 9112 frames it (or breaks off inside its framing)."""


class Unsupported(ProtocolError):
    """The answer uses what this client does not implement (a transfer coding other than chunked): asking again gets the same."""


class ClosedBeforeAnswer(ProtocolError):
    """The server closed the connection without a byte of an answer (an idle connection it had dropped)."""


class TunnelRefused(ProtocolError):
    """The proxy answered CONNECT with something other than 2xx; `code` is its status (0 if none could be read)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Headers:
    """Header fields, looked up without regard to case; `get` gives the first of repeated fields."""

    def __init__(self, fields: List[Tuple[str, str]]) -> None:
        self._fields = fields
        self._first: Dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def __repr__(self) -> str:
        return f"Headers({[name for name, _ in self._fields]})"

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of field `name`, or `default`."""
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> List[str]:
        """Every value of field `name`, in order."""
        key = name.lower()
        return [value for field, value in self._fields if field.lower() == key]

    def __getitem__(self, name: str) -> str:
        value = self._first.get(name.lower())
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first


class RawResponse:
    """One answer: status, reason, headers, and its body read as framed (`read1`, `read`)."""

    def __init__(self, file: Any, status: int, reason: str, version: int, headers: Headers, method: str) -> None:
        self.status = status
        self.reason = reason
        self.version = version  # 10 or 11
        self.headers = headers
        self._file = file
        self.chunked = False
        self._chunk_left: Optional[int] = None  # bytes left of the current chunk; None before the first
        self.length: Optional[int] = None  # bytes of the body left, when known
        connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
        self.will_close = "close" in connection or (version == 10 and "keep-alive" not in connection)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self.length = 0
            self.will_close = self.will_close or status == 101  # another protocol follows
        elif headers.get("Transfer-Encoding") is not None:
            codings = [coding.strip().lower() for coding in headers["Transfer-Encoding"].split(",")]
            if codings != ["chunked"]:  # a compressing transfer coding would change the bytes digests are of
                raise Unsupported(f"the transfer coding {headers['Transfer-Encoding']} is not supported")
            self.chunked = True
        elif headers.get("Content-Length") is not None:
            self.length = _content_length(headers.get_all("Content-Length"))
        else:
            self.will_close = True
        self.complete = self.length == 0  # the body has been read to the end its framing gives
        self._closed = False

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.reason}>"

    def isclosed(self) -> bool:
        """Whether nothing more will be read: the body's end was reached, or the answer closed."""
        return self.complete or self._closed

    def read1(self, size: int) -> bytes:
        """At most `size` bytes of the body from what has arrived (waiting for some); b"" at its end.

        A Content-Length body cut short also ends in b"", with `length` still above 0
        (and `complete` false); a chunked one cut short raises `ProtocolError`.
        """
        if self.isclosed() or size <= 0:
            return b""
        if self.chunked:
            return self._read1_chunked(size)
        if self.length is None:
            data = self._file.read1(size)
            self.complete = not data
            return data
        data = self._file.read1(min(size, self.length))
        self.length -= len(data)
        self.complete = self.length == 0
        self._closed = not data
        return data

    def read(self) -> bytes:
        """The rest of the body; `ProtocolError` if the connection closes before its end."""
        pieces = []
        while True:
            piece = self.read1(1 << 20)
            if not piece:
                break
            pieces.append(piece)
        if self.length:
            raise ProtocolError(f"the connection closed with {self.length} bytes of the body unread")
        return b"".join(pieces)

    def _read1_chunked(self, size: int) -> bytes:
        if not self._chunk_left:
            if self._chunk_left == 0:
                self._expect_crlf()  # the end of the chunk just read
            self._chunk_left = self._chunk_size()
            if self._chunk_left == 0:
                self._skip_trailers()
                self.complete = True
                return b""
        data = self._file.read1(min(size, self._chunk_left))
        if not data:
            raise ProtocolError(f"the connection closed inside a chunk ({self._chunk_left} bytes unread)")
        self._chunk_left -= len(data)
        return data

    def _chunk_size(self) -> int:
        line = self._file.readline(MAX_CHUNK_LINE + 1)
        if not line:
            raise ProtocolError("the connection closed before the next chunk")
        if len(line) > MAX_CHUNK_LINE:
            raise ProtocolError("a chunk-size line is too long")
        digits = line.split(b";", 1)[0].strip()
        if not digits or any(c not in b"0123456789abcdefABCDEF" for c in digits):
            raise ProtocolError(f"a bad chunk-size line: {line[:40]!r}")
        return int(digits, 16)

    def _expect_crlf(self) -> None:
        if self._file.readline(3) not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk does not end where its size said")

    def _skip_trailers(self) -> None:
        for _ in range(MAX_HEADERS + 1):
            line = self._file.readline(MAX_LINE + 1)
            if not line:
                raise ProtocolError("the connection closed inside the trailers")
            if line in (b"\r\n", b"\n"):
                return
        raise ProtocolError(f"more than {MAX_HEADERS} trailer lines")

    def close(self) -> None:
        """Stop reading; unless `complete`, the connection is unfit for another request."""
        self._closed = True


class Connection:
    """One connection to `address`: plain, TLS (`tls` given), or TLS through an http proxy's tunnel.

    `tunnel` is (proxy address, headers for the CONNECT request): the socket goes
    to the proxy, which is asked for a tunnel to `address`, and TLS is spoken to
    `address` inside it. Requests are sent one at a time; `getresponse` must be
    read (or the connection closed) before the next.
    """

    def __init__(self, address: Tuple[str, int], timeout: Optional[float], tls: "Optional[ssl.SSLContext]" = None,
                 tunnel: Optional[Tuple[Tuple[str, int], Mapping[str, str]]] = None) -> None:
        self.host, self.port = address
        self.timeout = timeout
        self.tls = tls
        self.tunnel = tunnel
        self.sock: Optional[socket.socket] = None
        self._file: Any = None

    def __repr__(self) -> str:
        return f"Connection({self.host}:{self.port}, tls={self.tls is not None}, tunnel={self.tunnel is not None})"

    def connect(self) -> None:
        """Open the socket (through the tunnel, then TLS, as configured)."""
        if self.tunnel is not None:
            proxy, headers = self.tunnel
            sock = create_connection(proxy, self.timeout)
        else:
            sock = create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tunnel is not None:
                _open_tunnel(sock, proxy, authority(self.host, self.port), headers)
            if self.tls is not None:
                # As bytes when ASCII: ssl encodes a str name with the idna codec, whose import costs ~5 ms.
                name = self.host.encode() if self.host.isascii() else self.host
                sock = self.tls.wrap_socket(sock, server_hostname=name)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._file = sock.makefile("rb")

    def request(self, method: str, target: str, headers: Mapping[str, str], body: Optional[bytes] = None) -> None:
        """Send a request (connecting first if need be); `headers` must include Host.

        A line break, or a space in the target, is refused (ValueError) before anything is sent.
        """
        fields = dict(headers)
        if body is not None:
            fields["Content-Length"] = str(len(body))
        if not target or any(c in target for c in " \r\n") or any(
                c in part for name, value in fields.items() for part in (name, value) for c in "\r\n\0"):
            raise ValueError(f"a line break (or a space in the target) in the request for {target!r}")
        head = "".join([f"{method} {target} HTTP/1.1\r\n"] + [f"{name}: {value}\r\n" for name, value in fields.items()])
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall((head + "\r\n").encode("latin-1") + (body or b""))

    def getresponse(self, method: str) -> RawResponse:
        """The answer to the request just sent, once its head has arrived (interim 1xx answers skipped)."""
        while True:
            status, reason, version = _status_line(self._file)
            headers = _header_fields(self._file)
            if 100 <= status < 200 and status != 101:
                continue
            return RawResponse(self._file, status, reason, version, headers, method)

    def close(self) -> None:
        """Close the socket."""
        file, self._file = self._file, None
        sock, self.sock = self.sock, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()


def authority(host: str, port: Optional[int] = None) -> str:
    """host[:port] as a request's authority: an IPv6 address in brackets (RFC 9110 4.2.3)."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def create_connection(address: Tuple[str, int], timeout: Optional[float]) -> socket.socket:
    """`socket.create_connection`, with an ASCII host name passed as bytes.

    getaddrinfo encodes a str host with the idna codec, and importing that codec
    (with unicodedata) cost every pull ~5 ms; for an ASCII name it changes nothing.
    """
    host, port = address
    return socket.create_connection((host.encode() if host.isascii() else host, port), timeout)


def _status_line(file: Any) -> Tuple[int, str, int]:
    line = file.readline(MAX_LINE + 1)
    if not line:
        raise ClosedBeforeAnswer("the server closed the connection without answering")
    if len(line) > MAX_LINE:
        raise ProtocolError("the status line is too long")
    return _parse_status(line.decode("latin-1").rstrip("\r\n"))


def _parse_status(text: str) -> Tuple[int, str, int]:
    """(status, reason, version 10 or 11) of an HTTP/1.x status line; `ProtocolError` if it is not one."""
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {text[:80]!r}")
    return int(code), reason.strip(), 11 if version == "HTTP/1.1" else 10


def _header_fields(file: Any) -> Headers:
    fields: List[Tuple[str, str]] = []
    for _ in range(MAX_HEADERS + 1):
        line = file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("a header line is too long")
        if line in (b"\r\n", b"\n"):
            return Headers(fields)
        if not line:
            raise ProtocolError("the connection closed inside the answer's headers")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and fields:  # obsolete line folding: one value continued
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"a malformed header line: {text[:80]!r}")
        fields.append((name, value.strip()))
    raise ProtocolError(f"more than {MAX_HEADERS} header lines")


def _content_length(values: List[str]) -> int:
    lengths = {value.strip() for joined in values for value in joined.split(",")}
    if len(lengths) != 1:
        raise ProtocolError(f"conflicting Content-Length values: {sorted(lengths)}")
    length = lengths.pop()
    if not length.isdigit():
        raise ProtocolError(f"a bad Content-Length: {length!r}")
    return int(length)


def _open_tunnel(sock: socket.socket, proxy: Tuple[str, int], target: str, headers: Mapping[str, str]) -> None:
    """Ask the proxy on `sock` for a tunnel to `target`; raise `TunnelRefused` unless it answers 2xx."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status_line = _read_tunnel_answer(sock)
    try:
        code = _parse_status(status_line)[0]
    except ProtocolError:
        code = 0
    if not 200 <= code < 300:
        raise TunnelRefused(f"the proxy {proxy[0]}:{proxy[1]} refused a tunnel to {target}: "
                            f"{status_line or 'no answer'}", code)



def _read_tunnel_answer(sock: socket.socket) -> str:
    """The status line of the proxy's answer to CONNECT, its headers read up to the blank line and no further.

    Byte by byte: what follows the blank line is the registry's TLS, which must stay in the socket.
    """
    answer = bytearray()
    while not answer.endswith(b"\r\n\r\n") and not answer.endswith(b"\n\n"):
        byte = sock.recv(1)
        if not byte:
            break
        answer += byte
        if len(answer) > TUNNEL_ANSWER_LIMIT:
            raise OSError(f"the proxy's answer to CONNECT is over {TUNNEL_ANSWER_LIMIT} bytes")
    return answer.split(b"\n", 1)[0].decode("latin-1").strip()
