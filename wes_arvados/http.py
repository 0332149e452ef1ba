"""The one way this package speaks HTTP to other servers: urllib3 pools, configured once.

`Client` sends every outgoing request (the registry client's, `download`'s, the
``pull --server`` client's) through `pool_manager`s built alike: a CA bundle or the
system's, timeouts, many connections per origin, and the proxy that
HTTP(S)_PROXY / NO_PROXY / ALL_PROXY give for the URL as Go's
``http.ProxyFromEnvironment`` reads them (loopback never proxied; only http://
proxies; https through a CONNECT tunnel). Bodies are neither preloaded nor
decoded (digests are of the bytes as sent) and urllib3 retries nothing: callers
that retry do it in one place of their own. A `Client` with a guard (the server's
fetches, `fetch_guard`) opens each connection only to an address the guard checked
for its host, resolved once, and has each URL's host checked before a proxy gets it.

Every failure is a `TransportError` saying in words what failed and where:
`CannotConnect` before an answer began (with whether sending again may help;
`FetchRefused` when a guard refused the host), `BrokenConnection` after.
`read_capped` reads a body whole within a limit.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Type, Union, cast
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ProxyError
from urllib3.util.connection import create_connection
from urllib3.util.ssl_match_hostname import CertificateError

from .proxies import proxy_for

if TYPE_CHECKING:
    from .fetch_guard import FetchGuard

# Connections kept per origin: a pull downloads its layers in parallel.
POOL_SIZE = 32
# Seconds to connect, and to wait for the next bytes of an answer.
TIMEOUT = 60.0
_TUNNEL_REFUSED = re.compile(r"Tunnel connection failed: (\d{3})\s*(.*)")


class TransportError(Exception):
    """A server could not be reached, or its answer could not be read."""


class CannotConnect(TransportError):
    """No answer began: refused, unreachable, reset or timed out before the status line.

    `retryable` says whether sending again may help: not for a URL, a request or an
    answer this client cannot handle, a certificate that fails verification, nor a
    proxy that refuses a tunnel.
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProxyRefused(CannotConnect):
    """The proxy refused to carry the request, or is of a kind this client does not speak."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message, retryable)


class CertificateRejected(CannotConnect):
    """The server's TLS certificate failed verification: asking again gets the same certificate."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class FetchRefused(CannotConnect):
    """A guarded client's host is, or resolves to, an address the server does not fetch from (`fetch_guard`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class BrokenConnection(TransportError):
    """An answer began and then broke off (reset, closed early, timed out)."""


class BodyTooLarge(TransportError):
    """A body read whole is larger than its limit (read no further)."""


def _proxy_name(proxy: str) -> str:
    """A proxy URL without its credentials, to name it in messages."""
    parts = urlsplit(proxy)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


# ------------------------------------------------------------------------------ the factory


class _Counted:
    """Remembers whether a connection has carried an answer since it opened; connects where `guard` allows.

    A request that fails without an answer on such a connection most likely met an
    idle keep-alive connection the server had just closed: `Client` sends it once more.
    """

    carried = False
    # Set on the classes of a guarded `pool_manager` (`fetch_guard`): connections go only to checked addresses.
    guard: Optional["FetchGuard"] = None

    def _new_conn(self) -> socket.socket:
        if self.guard is None or getattr(self, "proxy", None) is not None:  # a proxy's: `_CheckedProxyManager`
            return super()._new_conn()  # type: ignore[misc]
        return _pinned_socket(cast(HTTPConnection, self), self.guard)

    def connect(self) -> None:
        self.carried = False
        super().connect()  # type: ignore[misc]

    def getresponse(self) -> Any:
        try:
            response = super().getresponse()  # type: ignore[misc]
        except ConnectionError as exc:  # RemoteDisconnected, reset, broken pipe
            exc.stale = self.carried  # type: ignore[attr-defined]
            raise
        self.carried = True
        return response


def _pinned_socket(conn: HTTPConnection, guard: "FetchGuard") -> socket.socket:
    """A socket to one of the addresses `guard` checked for the connection's host, resolved once.

    The connection keeps the name as its host: the Host header, SNI and certificate
    verification use it, while the socket goes to an address that was checked (a
    second DNS answer, as in DNS rebinding, is never asked for).
    """
    try:
        addresses = guard.addresses(conn._dns_host, conn.port or 80)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    error: Optional[OSError] = None
    for address in addresses:
        try:
            return create_connection((address, conn.port or 80), conn.timeout, source_address=conn.source_address,
                                     socket_options=conn.socket_options)
        except OSError as exc:
            error = exc
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class _HTTPConnection(_Counted, HTTPConnection):
    pass


class _HTTPSConnection(_Counted, HTTPSConnection):
    def set_tunnel(self, host: str, port: Optional[int] = None, headers: Optional[Mapping[str, str]] = None,
                   scheme: str = "http") -> None:
        # urllib3 names an IPv6 host in brackets, and the standard library brackets it again in the Host header.
        super().set_tunnel(host[1:-1] if host.startswith("[") else host, port, headers, scheme)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _pool_classes(guard: Optional["FetchGuard"]) -> Dict[str, Type[urllib3.HTTPConnectionPool]]:
    """The pool classes by scheme; with a `guard`, ones whose connections it checks and pins."""
    if guard is None:
        return {"http": _HTTPPool, "https": _HTTPSPool}
    http = type("_GuardedHTTPConnection", (_HTTPConnection,), {"guard": guard})
    https = type("_GuardedHTTPSConnection", (_HTTPSConnection,), {"guard": guard})
    return {"http": type("_GuardedHTTPPool", (_HTTPPool,), {"ConnectionCls": http}),
            "https": type("_GuardedHTTPSPool", (_HTTPSPool,), {"ConnectionCls": https})}


class _CheckedProxyManager(urllib3.ProxyManager):
    """A ProxyManager that has `guard` check each URL's host (each redirect's too) before the proxy gets it.

    The proxy resolves and connects, so nothing is pinned: what the name resolves to
    here is checked (`FetchGuard.check_proxied`).
    """

    guard: Optional["FetchGuard"] = None

    def urlopen(self, method: str, url: str, redirect: bool = True,  # type: ignore[override]
                **kw: Any) -> urllib3.BaseHTTPResponse:
        if self.guard is not None:
            parts = urlsplit(url)
            self.guard.check_proxied(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        return super().urlopen(method, url, redirect=redirect, **kw)


def tls_context(ca_bundle: Optional[str] = None, insecure: bool = False) -> ssl.SSLContext:
    """TLS settings that verify servers with `ca_bundle` (a PEM file), else the system's CAs; none if `insecure`."""
    context = urllib3.util.create_urllib3_context(cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED)
    if not insecure:
        if ca_bundle:
            context.load_verify_locations(cafile=ca_bundle)
        else:
            context.load_default_certs()
    return context


def pool_manager(proxy: Optional[str] = None, *, ssl_context: Optional[ssl.SSLContext] = None,
                 ca_bundle: Optional[str] = None, insecure: bool = False,
                 timeout: Union[float, urllib3.Timeout] = TIMEOUT, maxsize: int = POOL_SIZE,
                 guard: Optional["FetchGuard"] = None) -> urllib3.PoolManager:
    """A PoolManager (a ProxyManager when `proxy` is given) configured as every request of this package wants.

    `maxsize` connections are kept per origin and more are opened when all are busy;
    nothing is retried and no redirect is followed unless a request asks. https is
    verified with `ssl_context` (a `tls_context`, its CAs loaded once) if given, else
    with `ca_bundle` or the system's CAs loaded by urllib3 for each connection. With a
    `guard`, every host (redirects included) is checked, and connected to at an
    address it checked.
    """
    if proxy is not None and urlsplit(proxy).scheme != "http":
        raise ProxyRefused(f"the proxy {_proxy_name(proxy)} (from HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) "
                           "is not supported: only http:// proxies are")
    settings: Dict[str, Any] = dict(
        maxsize=maxsize, block=False, retries=False,
        timeout=timeout if isinstance(timeout, urllib3.Timeout) else urllib3.Timeout(connect=timeout, read=timeout),
        cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED, assert_hostname=False if insecure else None)
    if ssl_context is not None:
        settings["ssl_context"] = ssl_context
    elif ca_bundle and not insecure:
        settings["ca_certs"] = ca_bundle
    if proxy is None:
        manager = urllib3.PoolManager(**settings)
    else:
        parts = urlsplit(proxy)
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}" if parts.username is not None else None
        manager = _CheckedProxyManager(f"http://{parts.netloc.rpartition('@')[2]}",
                                       proxy_headers=urllib3.make_headers(proxy_basic_auth=auth) if auth else None,
                                       **settings)
        manager.guard = guard
    manager.pool_classes_by_scheme = _pool_classes(guard)
    return manager


class Client:
    """Sends requests through a `pool_manager` per proxy the environment names (and one for none).

    Thread-safe. Answers come with their bodies unread: read them (`read1`,
    `read_capped`) or `release` them to give the connection back. With a `guard`
    (the server's fetches), hosts it refuses are `FetchRefused`.
    """

    def __init__(self, *, ca_bundle: Optional[str] = None, insecure: bool = False, timeout: float = TIMEOUT,
                 connect_timeout: Optional[float] = None, maxsize: int = POOL_SIZE,
                 user_agent: Optional[str] = None, guard: Optional["FetchGuard"] = None) -> None:
        self.guard = guard
        self.ca_bundle = ca_bundle
        self.insecure = insecure
        self.timeout = urllib3.Timeout(connect=connect_timeout or timeout, read=timeout)
        self.maxsize = maxsize
        self.headers = {"User-Agent": user_agent} if user_agent else {}
        self._context: Optional[ssl.SSLContext] = None
        self._managers: Dict[Tuple[Optional[str], str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client(ca_bundle={self.ca_bundle!r}, insecure={self.insecure})"

    def _manager(self, proxy: Optional[str], scheme: str) -> urllib3.PoolManager:
        # One per scheme, so that plain http never loads CAs (~20 ms for the system's); the https one
        # shares a context loaded once. (The http one verifies an https redirect as urllib3 does.)
        with self._lock:
            manager = self._managers.get((proxy, scheme))
            if manager is None:
                context = None
                if scheme == "https":
                    if self._context is None:
                        self._context = tls_context(self.ca_bundle, self.insecure)
                    context = self._context
                manager = pool_manager(proxy, ssl_context=context, ca_bundle=self.ca_bundle, insecure=self.insecure,
                                       timeout=self.timeout, maxsize=self.maxsize, guard=self.guard)
                self._managers[(proxy, scheme)] = manager
            return manager

    def request(self, method: str, url: str, headers: Optional[Mapping[str, str]] = None,
                body: Union[None, bytes, Iterable[bytes]] = None, *, timeout: Optional[float] = None,
                redirects: int = 0) -> urllib3.BaseHTTPResponse:
        """Send one request; return the answer once its head has arrived, its body unread and undecoded.

        Up to `redirects` redirects are followed (none by default). A request that met
        an idle connection the server had closed is sent once more on another, unless
        its body is an iterable (streamed, it cannot be sent again).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CannotConnect(f"unsupported URL {url!r}", retryable=False)
        proxy = proxy_for(url)
        manager = self._manager(proxy, parts.scheme)
        retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=redirects,
                                respect_retry_after_header=False)
        for attempt in range(2 if body is None or isinstance(body, bytes) else 1):
            try:
                response = manager.urlopen(
                    method, url, body=body, headers={**self.headers, **(headers or {})}, retries=retries,
                    redirect=redirects > 0, preload_content=False, decode_content=False,
                    timeout=self.timeout if timeout is None else urllib3.Timeout(connect=timeout, read=timeout))
            except TransportError:
                raise  # FetchRefused: a guarded connection refused its host
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if attempt == 0 and any(getattr(cause, "stale", False) for cause in _causes(exc)):
                    continue
                raise transport_error(exc, url, proxy) from exc
            break
        redirected = bool(redirects and response.retries and response.retries.history)
        response.url = urljoin(url, response.url or "") if redirected else url  # urllib3 keeps the path only
        coding = response.headers.get("Transfer-Encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            # Framed by the connection's end instead, as bytes that are not the content's.
            release(response)
            raise CannotConnect(f"{_where(url)}: the transfer coding {coding} is not supported", retryable=False)
        return response

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.clear()


# ------------------------------------------------------------------------------------ bodies


def read1(response: urllib3.BaseHTTPResponse, size: int) -> bytes:
    """At most `size` bytes of the body as soon as some have arrived (undecoded); b"" at its end."""
    try:
        return response.read1(size, decode_content=False)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        release(response)
        raise transport_error(exc, response.url or "", answered=True) from exc


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit and limit % (1 << 20) == 0 else f"{limit} bytes"


def read_capped(response: urllib3.BaseHTTPResponse, limit: int, what: str) -> bytes:
    """The whole body, or `BodyTooLarge` (naming `what` and the limit) once it passes `limit` bytes."""
    over = BodyTooLarge(f"{what} is larger than the limit of {_size(limit)}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        release(response)
        raise over
    pieces: List[bytes] = []
    size = 0
    while size <= limit:
        piece = read1(response, limit + 1 - size)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
    release(response)
    raise over


def release(response: urllib3.BaseHTTPResponse) -> None:
    """Done with an answer: its connection goes back to the pool, closed first if body is left unread."""
    if response.length_remaining == 0:
        response.drain_conn()  # nothing left (HEAD, 204, a body read to its end): the connection stays open
    else:
        response.close()
    response.release_conn()


# ------------------------------------------------------------------------------------ errors


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it wraps (urllib3 nests the one that tells what happened)."""
    seen: List[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 16:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        yield current
        wrapped = [getattr(current, "reason", None), getattr(current, "original_error", None), current.__cause__,
                   *current.args]
        pending += [inner for inner in wrapped if isinstance(inner, BaseException)]


def _where(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _tunnel_target(url: str) -> str:
    """host:port as a CONNECT request names it (the port always, an IPv6 address in brackets)."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _reason(exc: BaseException) -> str:
    """The innermost error urllib3 wrapped, as "Name: message"."""
    inner = [cause for cause in _causes(exc) if not isinstance(cause, urllib3.exceptions.HTTPError)] or [exc]
    return f"{type(inner[-1]).__name__}: {inner[-1]}"


def _timed_out(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, unreachable) is a ConnectTimeoutError too.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError))


def transport_error(exc: BaseException, url: str, proxy: Optional[str] = None,
                    answered: bool = False) -> TransportError:
    """The `TransportError` that says what failed with urllib3's `exc` for `url` (through `proxy`), and where.

    `answered`: the failure came while reading a body (`BrokenConnection`), not
    before an answer (`CannotConnect`, retryable unless sending again cannot help).
    """
    if isinstance(exc, TransportError):
        return exc
    where = _where(url)
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, (ssl.SSLCertVerificationError, CertificateError)):
            reason = getattr(cause, "verify_message", None) or str(cause)
            return CertificateRejected(f"{where}: TLS certificate verify failed: {reason}")
        refused = _TUNNEL_REFUSED.match(str(cause)) if isinstance(cause, OSError) else None
        if refused:  # 403 or 407 will not change; a 5xx may be the proxy's upstream failing for a while
            code = int(refused.group(1))
            return ProxyRefused(f"the proxy {_proxy_name(proxy or '')} refused a tunnel to {_tunnel_target(url)}: "
                                f"{code} {refused.group(2)}".rstrip(), retryable=500 <= code < 600)
    timed_out = any(_timed_out(cause) for cause in causes)
    if answered:
        incomplete = next((c for c in causes if isinstance(c, urllib3.exceptions.IncompleteRead)), None)
        if incomplete is not None and isinstance(incomplete.expected, int):
            return BrokenConnection(f"the connection to {where} closed with {incomplete.expected} bytes "
                                    "of the body unread")
        if timed_out:
            return BrokenConnection(f"the answer from {where} stalled: nothing came within the timeout")
        return BrokenConnection(f"the connection to {where} broke: {_reason(exc)}")
    if proxy is not None and any(isinstance(cause, ProxyError) for cause in causes):
        return CannotConnect(f"cannot reach {where} through the proxy {_proxy_name(proxy)}: {_reason(exc)}")
    if timed_out:
        return CannotConnect(f"cannot reach {where}: no answer within the timeout")
    if isinstance(exc, ValueError):  # a header or URL refused before anything was sent
        return CannotConnect(f"cannot send the request to {where}: {exc}", retryable=False)
    return CannotConnect(f"cannot reach {where}: {_reason(exc)}")
