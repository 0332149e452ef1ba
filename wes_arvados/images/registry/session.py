"""The registry client's one HTTP session, on connections of `http1`.

A session keeps idle connections per origin (and proxy) for reuse, takes
HTTP(S)_PROXY and NO_PROXY from the environment as Go's ``http.ProxyFromEnvironment``
does (loopback is never proxied; ALL_PROXY, as curl reads it, is the fallback; https goes
through a CONNECT tunnel; only http:// proxies), verifies https
with the CA bundle of the options or the system's, and answers `Response`
objects whose bodies are read as they arrive. It follows no redirects and
decodes no Content-Encoding: the client does the first by hand so that
credentials never leave their host, and digests are of the bytes as stored.

Every failure to reach a server or to read an answer is a `TransportError`:
`CannotConnect` before an answer began (safe to send again), `BrokenConnection`
after (a blob download resumes from where it broke). A request on a reused
connection that the server had closed meanwhile is sent once more on a fresh
one, since nothing was answered.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from .http1 import ClosedBeforeAnswer, Connection, Headers, RawResponse, TunnelRefused, Unsupported, authority
from .options import RegistryOptions
from .scheme import hostname, in_network, is_loopback

if TYPE_CHECKING:
    import ssl

# Idle connections kept per origin; layers download in parallel.
POOL_SIZE = 32


class TransportError(Exception):
    """A server could not be reached, or its answer could not be read."""


class CannotConnect(TransportError):
    """No answer began: refused, unreachable, reset or timed out before the status line.

    `retryable` says whether sending again may help: not for a URL or an answer
    this client cannot handle, nor for a proxy that refuses a tunnel.
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProxyRefused(CannotConnect):
    """The proxy refused to carry the request, or is of a kind this client does not speak; its answer is named."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message, retryable)


class BrokenConnection(TransportError):
    """An answer began and then broke off (reset, closed early, timed out)."""


_Origin = Tuple[str, str, int, Optional[str]]  # scheme, host, port, proxy URL


class Response:
    """A status, headers and a body read on demand; `close` it (or read it all) to free the connection."""

    def __init__(self, status_code: int, reason: str, headers: Headers, url: str,
                 request_headers: Mapping[str, str], raw: Optional[RawResponse] = None,
                 release: Optional[Any] = None) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.url = url
        self.request_headers = request_headers
        self._raw = raw
        self._release = release  # called with True when the connection can serve another request
        self._content: Optional[bytes] = None

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.url}>"

    def read1(self, size: int) -> bytes:
        """At most `size` bytes of the body, as soon as some have arrived; b"" at its end."""
        if self._raw is None:
            return b""
        data = self._read(self._raw.read1, size)
        if not data:
            remaining = self._raw.length  # b"" also when the peer closes early
            if remaining:
                self.close()
                raise BrokenConnection(f"the connection closed with {remaining} bytes of the body unread")
            self.close()
        return data

    @property
    def content(self) -> bytes:
        """The whole body."""
        if self._content is None:
            self._content = b"" if self._raw is None else self._read(self._raw.read)
            self.close()
        return self._content

    def _read(self, read: Callable[..., bytes], *args: int) -> bytes:
        try:
            return read(*args)
        except OSError as exc:
            self.close()
            raise BrokenConnection(f"{type(exc).__name__}: {exc}") from exc

    def json(self) -> Any:
        """The body parsed as JSON (ValueError if it is not)."""
        return json.loads(self.content)

    def close(self) -> None:
        """Stop reading; a connection with body left unread is closed rather than reused."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        raw.close()
        if self._release is not None:
            self._release(raw.complete and not raw.will_close)
            self._release = None


def _no_proxy_matches(host: str, port: int, entries: List[str]) -> bool:
    """Whether NO_PROXY excludes `host`: "*", a name and its subdomains, an IP, a CIDR, optionally with :port."""
    name = host.lower().rstrip(".")
    for entry in entries:
        if entry == "*":
            return True
        entry_host = hostname(entry)
        rest = entry.rpartition("]")[2] if entry.startswith("[") else entry[len(entry_host):]  # "" or ":port"
        if rest[1:].isdigit() and int(rest[1:]) != port:
            continue
        if in_network(name, entry_host) or _same_address(name, entry_host):
            return True
        entry_host = entry_host.lower().lstrip("*").lstrip(".")
        if entry_host and (name == entry_host or name.endswith("." + entry_host)):
            return True
    return False


def _same_address(name: str, entry: str) -> bool:
    import ipaddress  # here: most NO_PROXY entries are names

    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(entry)
    except ValueError:
        return False


def _env(name: str) -> str:
    # Go reads the upper-case name first, then the lower-case one.
    return os.environ.get(name.upper()) or os.environ.get(name.lower()) or ""


def proxy_for(url: str) -> Optional[str]:
    """The proxy URL the environment gives for `url`, or None (always None for loopback)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    proxy = _env(f"{parts.scheme}_proxy") or _env("all_proxy")
    if not proxy:
        return None
    no_proxy = [entry.strip() for entry in _env("no_proxy").split(",") if entry.strip()]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if no_proxy and _no_proxy_matches(host, port, no_proxy):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class Session:
    """Pooled connections to registries, with proxies from the environment and a CA bundle.

    Thread-safe: every request takes a connection of its own from the pool.
    """

    def __init__(self, options: RegistryOptions) -> None:
        self.ca_bundle = options.ca_bundle
        self.user_agent = options.user_agent
        self.timeout = options.timeout
        self._context: "Optional[ssl.SSLContext]" = None
        self._idle: Dict[_Origin, List[Connection]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Session(ca_bundle={self.ca_bundle!r})"

    @property
    def context(self) -> "ssl.SSLContext":
        """The TLS settings: the CA bundle of the options, else the system's."""
        if self._context is None:
            import ssl  # here: plain-http registries (loopback, insecure ones) never need it

            self._context = ssl.create_default_context(cafile=self.ca_bundle)
        return self._context

    def request(self, method: str, url: str, headers: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None,
                timeout: Optional[float] = None) -> Response:
        """Send one request and return the answer once its headers have arrived (the body is read later)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CannotConnect(f"unsupported URL {url!r}", retryable=False)
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        proxy = proxy_for(url)
        origin: _Origin = (parts.scheme, parts.hostname, port, proxy)
        host = authority(parts.hostname, None if port == default_port else port)
        sent = {"Host": host, "User-Agent": self.user_agent, "Accept-Encoding": "identity", **(headers or {})}
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if proxy and parts.scheme == "http":
            target = url.split("#", 1)[0]  # a plain-http proxy takes the absolute URL
            sent.update(_proxy_authorization(proxy))
        for attempt in range(2):
            conn, reused = self._connection(origin, timeout, pooled=attempt == 0)
            try:
                conn.request(method, target, sent, body)
                raw = conn.getresponse(method)
            except TunnelRefused as exc:
                conn.close()
                # A proxy's 5xx may pass (its upstream was unreachable); its 403 or 407 will not.
                raise ProxyRefused(str(exc), retryable=500 <= exc.code < 600) from None
            except OSError as exc:
                conn.close()
                stale = isinstance(exc, (ClosedBeforeAnswer, BrokenPipeError, ConnectionResetError))
                if reused and stale and attempt == 0:
                    continue  # the server closed an idle connection: nothing was answered; a new one now
                raise CannotConnect(f"{type(exc).__name__}: {exc}",
                                    retryable=not isinstance(exc, Unsupported)) from exc
            break

        def release(reusable: bool) -> None:
            self._release(origin, conn, reusable)

        response = Response(raw.status, raw.reason, raw.headers, url, sent, raw, release)
        if raw.length == 0:
            response.close()
        return response

    def get(self, url: str, headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None) -> Response:
        """A GET whose body the caller reads."""
        return self.request("GET", url, headers, timeout=timeout)

    def post_form(self, url: str, form: Mapping[str, str], timeout: Optional[float] = None) -> Response:
        """A POST of an application/x-www-form-urlencoded body."""
        from urllib.parse import urlencode

        return self.request("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                            urlencode(form).encode(), timeout)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _connection(self, origin: _Origin, timeout: Optional[float], pooled: bool = True) -> Tuple[Connection, bool]:
        """An idle connection to `origin` if there is one (and `pooled`), else a new one; and whether it was idle."""
        with self._lock:
            idle = self._idle.get(origin)
            if idle and pooled:
                return idle.pop(), True
        return self._new_connection(origin, self.timeout if timeout is None else timeout), False

    def _new_connection(self, origin: _Origin, timeout: float) -> Connection:
        scheme, host, port, proxy = origin
        if proxy is None:
            return Connection((host, port), timeout, self.context if scheme == "https" else None)
        proxy_parts = urlsplit(proxy)
        proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port or 80
        if proxy_parts.scheme != "http":  # named without its credentials
            where = proxy_host + (f":{proxy_parts.port}" if proxy_parts.port else "")
            raise ProxyRefused(f"the proxy {proxy_parts.scheme}://{where} (from HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) "
                               "is not supported: only http:// proxies are")
        if scheme == "http":
            return Connection((proxy_host, proxy_port), timeout)
        # https inside a CONNECT tunnel, the certificate checked against the registry's name or address.
        return Connection((host, port), timeout, self.context,
                          tunnel=((proxy_host, proxy_port), _proxy_authorization(proxy)))

    def _release(self, origin: _Origin, conn: Connection, reusable: bool) -> None:
        if reusable:
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < POOL_SIZE:
                    idle.append(conn)
                    return
        conn.close()


def _proxy_authorization(proxy: str) -> Dict[str, str]:
    parts = urlsplit(proxy)
    if parts.username is None:
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}


def make_session(options: RegistryOptions) -> Session:
    """A session with the options' CA bundle, timeout and User-Agent."""
    return Session(options)
