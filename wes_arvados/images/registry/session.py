"""The registry client's HTTP session: `wes_arvados.http` with the registry options, answers as `Response`.

It follows no redirects (the client does, by hand, so that credentials never leave
their host), decodes no Content-Encoding (digests are of the bytes as stored) and
retries nothing (`retry` does). Proxies, the CA bundle, pooling and the wording of
failures are `wes_arvados.http`'s; its errors are re-exported here for the
registry modules.
"""

from __future__ import annotations

from typing import Mapping, Optional
from urllib.parse import urlencode, urlsplit

import urllib3

from ...http import (
    BodyTooLarge,
    BrokenConnection,
    CannotConnect,
    CertificateRejected,
    Client,
    ProxyRefused,
    TransportError,
    read1,
    read_capped,
    release,
)
from ...proxies import proxy_for
from .options import RegistryOptions

__all__ = ["BodyTooLarge", "BrokenConnection", "CannotConnect", "CertificateRejected", "ProxyRefused", "Response",
           "Session", "TransportError", "make_session", "proxy_for"]


class Response:
    """A status, headers and a body read on demand; `close` it (or read it all) to free the connection.

    `headers` is urllib3's `HTTPHeaderDict` (`getlist` gives each of repeated fields);
    `request_headers` are the ones the request was sent with.
    """

    def __init__(self, status_code: int, reason: str, headers: urllib3.HTTPHeaderDict, url: str,
                 request_headers: Mapping[str, str], raw: Optional[urllib3.BaseHTTPResponse] = None) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.url = url
        self.request_headers = request_headers
        self._raw = raw

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.url}>"

    def read1(self, size: int) -> bytes:
        """At most `size` bytes of the body, as soon as some have arrived; b"" at its end."""
        return b"" if self._raw is None else read1(self._raw, size)

    def read_capped(self, limit: int, what: str) -> bytes:
        """The whole body; `BodyTooLarge` naming `what` once it passes `limit` bytes."""
        return b"" if self._raw is None else read_capped(self._raw, limit, what)

    def close(self) -> None:
        """Stop reading; a connection with body left unread is closed rather than reused."""
        raw, self._raw = self._raw, None
        if raw is not None:
            release(raw)


class Session:
    """Pooled connections to registries, with proxies from the environment and the options' CA bundle.

    Thread-safe: layers download in parallel through one session. With the options'
    `fetch_guard`, every host but the `trust`ed endpoints is checked (token realms,
    redirects): a `FetchRefused` when refused.
    """

    def __init__(self, options: RegistryOptions) -> None:
        self.ca_bundle = options.ca_bundle
        self.guard = options.fetch_guard.trusting() if options.fetch_guard is not None else None
        self.client = Client(ca_bundle=options.ca_bundle, timeout=options.timeout, user_agent=options.user_agent,
                             guard=self.guard)

    def __repr__(self) -> str:
        return f"Session(ca_bundle={self.ca_bundle!r})"

    def request(self, method: str, url: str, headers: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None,
                timeout: Optional[float] = None) -> Response:
        """Send one request and return the answer once its headers have arrived (the body is read later)."""
        sent = dict(headers or {})
        raw = self.client.request(method, url, sent, body, timeout=timeout)
        response = Response(raw.status, raw.reason or "", raw.headers, url, sent, raw)
        if raw.length_remaining == 0:
            response.close()  # no body (HEAD, 204, Content-Length: 0): the connection is free at once
        return response

    def trust(self, base_url: str) -> None:
        """Let the guard pass a registry endpoint unchecked: the image policy governs the registries used."""
        parts = urlsplit(base_url)
        if self.guard is not None and parts.hostname:
            self.guard.trust(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def get(self, url: str, headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None) -> Response:
        """A GET whose body the caller reads."""
        return self.request("GET", url, headers, timeout=timeout)

    def post_form(self, url: str, form: Mapping[str, str], timeout: Optional[float] = None) -> Response:
        """A POST of an application/x-www-form-urlencoded body."""
        return self.request("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                            urlencode(form).encode(), timeout)

    def close(self) -> None:
        """Close every idle connection."""
        self.client.close()


def make_session(options: RegistryOptions) -> Session:
    """A session with the options' CA bundle, timeout and User-Agent."""
    return Session(options)
