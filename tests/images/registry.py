"""A real distribution 2.8 registry on loopback, and a fault-injecting proxy to put in front of it.

`Registry` runs Debian's `/usr/bin/docker-registry serve` with filesystem storage in one of
three modes: anonymous, htpasswd (Basic) or token auth, where the registry itself checks
the JWTs of a `TokenServer`. `FaultProxy` forwards to a registry and, by rules a test
sets, resets connections, answers 429/503, flips bytes, stalls or spoils tokens, while
counting every request.
"""

from __future__ import annotations

import http.client
import re
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

import bcrypt
import requests
import yaml

from ..threaded import ThreadedServer
from ..wes import free_port
from .tokenserver import TokenServer

REGISTRY_BIN = Path("/usr/bin/docker-registry")
BLOB_PATH = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")


class Registry:
    """`docker-registry serve` on 127.0.0.1 with its own storage directory under `workdir`.

    Give `users` for htpasswd auth, or `token_server` for token auth; neither for an
    anonymous registry. `credentials` is a user that may push (None when anonymous).
    """

    def __init__(self, workdir: Path, *, users: Optional[Mapping[str, str]] = None,
                 token_server: Optional[TokenServer] = None, relative_urls: bool = False) -> None:
        if users and token_server:
            raise ValueError("choose htpasswd users or a token server, not both")
        self.workdir = workdir
        self.users = dict(users or {})
        self.token_server = token_server
        self.relative_urls = relative_urls
        self.auth = "token" if token_server else "htpasswd" if users else "none"
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL without the `/v2/` path."""
        return f"http://{self.host}"

    @property
    def credentials(self) -> Optional[Tuple[str, str]]:
        """A user name and password that may pull and push, or None for an anonymous registry."""
        if self.token_server is not None:
            return self.token_server.default_credentials
        return next(iter(self.users.items()), None)

    def _config(self) -> dict:
        config: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage_dir)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16), "relativeurls": self.relative_urls,
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.auth == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            # Cost 4 (the minimum) because the registry checks the hash on every request.
            htpasswd.write_text("".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n"
                                        for user, pw in self.users.items()))
            config["auth"] = {"htpasswd": {"realm": "wes-arvados-test", "path": str(htpasswd)}}
        elif self.token_server is not None:
            bundle = self.token_server.write_cert_bundle(self.workdir / "token-ca.pem")
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": self.token_server.service,
                                        "issuer": self.token_server.issuer, "rootcertbundle": str(bundle)}}
        return config

    def start(self, timeout: float = 30, attempts: int = 3) -> "Registry":
        """Start the registry and wait until `/v2/` answers (200, or 401 when auth is on)."""
        if not REGISTRY_BIN.exists():
            raise FileNotFoundError(f"{REGISTRY_BIN} is missing: apt-get install docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        for attempt in range(attempts):  # another process may take the free port before the registry does
            self.port = free_port()
            self.config_path.write_text(yaml.safe_dump(self._config()))
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(self.config_path)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.healthy():
                    return self
                time.sleep(0.05)
            self.stop()
            if "address already in use" not in self.log_text():
                break
        raise RuntimeError(f"registry did not start:\n{self.log_text()[-3000:]}")

    def healthy(self) -> bool:
        """True when the process runs and `/v2/` answers as the auth mode says it should."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            status = requests.get(self.url + "/v2/", timeout=2).status_code
        except requests.RequestException:
            return False
        return status == (200 if self.auth == "none" else 401)

    def stop(self) -> None:
        """Stop the registry process (its storage stays for post-mortems)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """The registry's log so far (access log included)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (tests may corrupt it there)."""
        algorithm, hexdigest = digest.split(":", 1)
        return self.storage_dir / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def wipe(self) -> None:
        """Delete every repository and blob (the registry keeps running)."""
        shutil.rmtree(self.storage_dir / "docker", ignore_errors=True)


# ---------------------------------------------------------------------------------------- faults


@dataclass
class Reset:
    """Reset the TCP connection (RST) after `after_bytes` of the response body; None: before any response."""

    after_bytes: Optional[int] = None


@dataclass
class Status:
    """Answer with `status` without asking the registry (e.g. 429 with Retry-After, 503); `body` replaces the
    registry-style JSON error."""

    status: int
    retry_after: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    body: Optional[bytes] = None


@dataclass
class FlipByte:
    """Invert the bits of the response body's byte at `offset` (a corrupted transfer)."""

    offset: int = 0


@dataclass
class Delay:
    """Sleep `seconds` before forwarding, or after `after_bytes` of the body (a stalled transfer)."""

    seconds: float
    after_bytes: Optional[int] = None


@dataclass
class InvalidToken:
    """Spoil the request's Bearer token so the registry answers 401 `invalid_token`, as for an expired one."""


Action = Union[Reset, Status, FlipByte, Delay, InvalidToken]


def too_many_requests(retry_after: Union[int, str] = 1) -> Status:
    """429 Too Many Requests with a Retry-After header."""
    return Status(429, retry_after=str(retry_after))


def unavailable(retry_after: Optional[Union[int, str]] = None) -> Status:
    """503 Service Unavailable, with Retry-After if given."""
    return Status(503, retry_after=None if retry_after is None else str(retry_after))


@dataclass
class Rule:
    """Apply `action` to requests whose target (path and query) matches `pattern`, `times` times (None: always)."""

    pattern: "re.Pattern[str]"
    action: Action
    times: Optional[int] = 1
    method: Optional[str] = None
    fired: int = 0

    @property
    def spent(self) -> bool:
        """Whether the rule has fired `times` times."""
        return self.times is not None and self.fired >= self.times

    def matches(self, method: str, target: str) -> bool:
        """Whether the rule could apply to this request."""
        return not self.spent and (not self.method or self.method == method) and bool(self.pattern.search(target))

    @property
    def on_body(self) -> bool:
        """Whether the action works on a response body, so it fires only on a successful (2xx) response."""
        return isinstance(self.action, FlipByte) or getattr(self.action, "after_bytes", None) is not None


@dataclass
class ProxyRequest:
    """One request the proxy saw."""

    method: str
    target: str
    status: Optional[int] = None
    action: Optional[str] = None
    at: float = field(default_factory=time.time)

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]


HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}


class FaultProxy(ThreadedServer):
    """A threaded reverse proxy on loopback in front of `upstream` (a Registry or a base URL)."""

    thread_name = "fault-proxy"

    def __init__(self, upstream: Union[Registry, str], port: int = 0) -> None:
        self.upstream_url = upstream.url if isinstance(upstream, Registry) else upstream.rstrip("/")
        self.credentials = upstream.credentials if isinstance(upstream, Registry) else None
        self.rules: List[Rule] = []
        self.requests: List[ProxyRequest] = []
        self._lock = threading.Lock()
        super().__init__(_proxy_handler(self), port)

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT` of the proxy."""
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return f"http://{self.host}"

    def add_rule(self, pattern: str, action: Action, times: Optional[int] = 1, method: Optional[str] = None) -> Rule:
        """Add a rule; the first rule that still applies to a request wins."""
        rule = Rule(re.compile(pattern), action, times, method.upper() if method else None)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop all rules and forget all requests."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def count(self, method: Optional[str] = None, path: Optional[str] = None) -> int:
        """Requests seen with `method` (if given) whose path matches the regex `path` (if given)."""
        with self._lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path)))

    def blob_gets(self, digest: str) -> int:
        """How many times a blob was fetched with GET (HEADs not counted)."""
        with self._lock:
            return sum(1 for r in self.requests if r.method == "GET" and r.path.endswith(f"/blobs/{digest}"))

    def _match(self, method: str, target: str, bearer: bool) -> Tuple[ProxyRequest, Optional[Rule]]:
        """Record the request and find its rule; a rule acting on the request itself fires now."""
        record = ProxyRequest(method, target)
        with self._lock:
            self.requests.append(record)
            rule = next((r for r in self.rules if r.matches(method, target)
                         and (bearer or not isinstance(r.action, InvalidToken))), None)
            if rule is not None and not rule.on_body:
                rule.fired += 1
                record.action = type(rule.action).__name__
        return record, rule

    def _fire_on_body(self, record: ProxyRequest, rule: Optional[Rule], status: int) -> Optional[Action]:
        """The body action of `rule` if the response is a 2xx with a body and the rule is not spent meanwhile."""
        if rule is None or not rule.on_body or record.method == "HEAD" or not 200 <= status < 300:
            return None
        with self._lock:
            if rule.spent:
                return None
            rule.fired += 1
        record.action = type(rule.action).__name__
        return rule.action


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees ECONNRESET instead of an orderly end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _chunks(rfile: BinaryIO, headers: Message) -> Tuple[Optional[Iterator[bytes]], bool]:
    """The request body as an iterator, and whether it came chunked."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        def chunked() -> Iterator[bytes]:
            while True:
                size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline().strip():  # trailers
                        pass
                    return
                yield rfile.read(size)
                rfile.readline()
        return chunked(), True
    length = int(headers.get("Content-Length") or 0)
    if not length:
        return None, False

    def sized() -> Iterator[bytes]:
        left = length
        while left:
            piece = rfile.read(min(left, 1 << 16))
            if not piece:
                return
            left -= len(piece)
            yield piece
    return sized(), False


def _proxy_handler(proxy: FaultProxy) -> type:
    upstream = urlsplit(proxy.upstream_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60

        def log_message(self, format: str, *args: object) -> None:  # requests are recorded instead
            pass

        def _local(self, record: ProxyRequest, action: Status) -> None:
            for _ in _chunks(self.rfile, self.headers)[0] or ():  # drain, to keep the connection usable
                pass
            body = action.body if action.body is not None else (
                f'{{"errors":[{{"code":"{"TOOMANYREQUESTS" if action.status == 429 else "UNAVAILABLE"}",'
                f'"message":"injected by the fault proxy"}}]}}').encode()
            self.send_response(action.status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **action.headers}
            if action.retry_after is not None:
                headers["Retry-After"] = action.retry_after
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            record.status = action.status

        def _forward(self) -> None:
            bearer = self.headers.get("Authorization", "").lower().startswith("bearer ")
            record, rule = proxy._match(self.command, self.path, bearer)
            action = rule.action if rule is not None and not rule.on_body else None
            if isinstance(action, Reset) and action.after_bytes is None:
                self.close_connection = True
                return _reset(self.connection)
            if isinstance(action, Status):
                return self._local(record, action)
            if isinstance(action, Delay) and action.after_bytes is None:
                time.sleep(action.seconds)
            headers: Dict[str, str] = {}
            for name, value in self.headers.items():  # Go clients repeat Accept: join repeats, as RFC 9110 allows
                if name.lower() not in HOP_BY_HOP:
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if isinstance(action, InvalidToken):
                headers["Authorization"] = headers["Authorization"].rsplit(".", 1)[0] + ".AAAA"
            headers["Host"] = upstream.netloc
            body, chunked = _chunks(self.rfile, self.headers)
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
            elif body is not None:
                headers["Content-Length"] = self.headers["Content-Length"]
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers, encode_chunked=chunked)
                response = conn.getresponse()
            except OSError as exc:
                conn.close()
                record.status = 502
                return self._plain(502, f"upstream failed: {exc}".encode())
            try:
                self._relay(record, proxy._fire_on_body(record, rule, response.status), response)
            finally:
                conn.close()

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _relay(self, record: ProxyRequest, action: Optional[Action], response: http.client.HTTPResponse) -> None:
            record.status = response.status
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            has_body = self.command != "HEAD" and response.status not in (204, 304)
            for name, value in response.getheaders():
                if name.lower() == "location":
                    value = value.replace(proxy.upstream_url, proxy.url)
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", length)
            chunked = has_body and length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not has_body:
                return
            sent = 0
            while True:
                piece = response.read(1 << 16)
                if not piece:
                    break
                if isinstance(action, FlipByte) and sent <= action.offset < sent + len(piece):
                    i = action.offset - sent
                    piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1:]
                limit = getattr(action, "after_bytes", None)
                if limit is not None and sent <= limit < sent + len(piece) + (1 if isinstance(action, Reset) else 0):
                    head, piece = piece[:limit - sent], piece[limit - sent:]
                    self._send(head, chunked)
                    sent += len(head)
                    if isinstance(action, Reset):
                        self.close_connection = True
                        return _reset(self.connection)
                    time.sleep(action.seconds)  # type: ignore[union-attr]
                    action = None
                self._send(piece, chunked)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

        def _send(self, data: bytes, chunked: bool) -> None:
            if not data:
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler
