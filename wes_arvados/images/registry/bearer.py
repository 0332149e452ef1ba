"""The Docker/OCI token flow: bearer tokens per scope, cached until they expire."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from .basic import basic_header
from .challenge import Challenge
from .credentials import AuthConfig
from .errors import raise_for_connection, raise_for_response
from .options import RegistryOptions
from .retry import with_retries
from .session import Response, Session, TransportError

# The token spec: a token without expires_in, or with less, is good for 60 s.
MIN_EXPIRY = 60
# Renew this long before expiry, so a token does not lapse in flight.
MARGIN = 5
CLIENT_ID = "wes-arvados"
# The largest token answer read: a token is a few kB.
MAX_TOKEN_ANSWER = 1 << 20
# Answers of token endpoints without the OAuth2 POST form (GCR 404, ACR 400, Artifactory 401,
# others 405): ask again with GET and the identity token as a Basic password, as containerd does.
NO_OAUTH_POST = frozenset({400, 401, 404, 405})

TokenKey = Tuple[str, str, str]  # realm, service, scope


@dataclass
class Token:
    """A bearer token and the monotonic time it stops being used."""

    value: str = field(repr=False)
    expires: float


class TokenCache:
    """Tokens per (realm, service, scope); safe for threads pulling layers in parallel."""

    def __init__(self) -> None:
        self._tokens: Dict[TokenKey, Token] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def get(self, key: TokenKey) -> Optional[str]:
        """A token still valid for `key`, if any."""
        with self._lock:
            token = self._tokens.get(key)
            return token.value if token and token.expires > time.monotonic() else None

    def put(self, key: TokenKey, value: str, expires_in: float) -> None:
        """Remember a token for `key`, for `expires_in` seconds but never less than MIN_EXPIRY."""
        with self._lock:
            self._tokens[key] = Token(value, time.monotonic() + max(expires_in, MIN_EXPIRY) - MARGIN)

    def forget(self, key: TokenKey, value: Optional[str] = None) -> None:
        """Drop a token the registry refused (only if it is still `value`: another thread may have renewed it)."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and (value is None or token.value == value):
                del self._tokens[key]


def fetch_token(session: Session, challenge: Challenge, scope: str, auth: AuthConfig,
                options: RegistryOptions, image: str, registry: str) -> Tuple[str, float]:
    """Ask the challenge's realm for a token for `scope`; return it and its lifetime in seconds."""
    realm = challenge.params.get("realm")
    if not realm:
        raise_for_connection(ValueError("bearer challenge without realm"), image, registry, "authentication")
    service = challenge.params.get("service", "")
    what = f"token request to {realm}"
    params = {"service": service, "scope": scope} if service else {"scope": scope}

    def get(username: str, password: str) -> Response:
        headers = {"Authorization": basic_header(AuthConfig(username, password))} if username or password else {}
        return session.get(_with_query(realm, params), headers)

    def post_refresh() -> Response:
        # OAuth2 refresh-token grant, as `docker login` identity tokens require.
        return session.post_form(realm, {
            "grant_type": "refresh_token", "refresh_token": auth.identity_token,
            "service": service, "scope": scope, "client_id": CLIENT_ID})

    try:
        if auth.identity_token:
            response = with_retries(post_refresh, options, what)
            if response.status_code in NO_OAUTH_POST:
                response.close()
                response = with_retries(lambda: get(auth.username, auth.identity_token), options, what)
        else:
            response = with_retries(lambda: get(auth.username, auth.password), options, what)
    except TransportError as exc:
        raise_for_connection(exc, image, registry, what)
    if response.status_code != 200:
        raise_for_response(response, image, registry, what)
    try:
        body = json.loads(response.read_capped(MAX_TOKEN_ANSWER, "the token answer"))
    except TransportError as exc:
        raise_for_connection(exc, image, registry, what)
    except ValueError:
        raise_for_connection(ValueError("token response is not JSON"), image, registry, what)
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not token or not isinstance(token, str):
        raise_for_connection(ValueError("token response has no token"), image, registry, what)
    try:
        expires_in = float(body.get("expires_in") or MIN_EXPIRY)
    except (TypeError, ValueError):
        expires_in = MIN_EXPIRY
    return token, expires_in


def _with_query(url: str, params: Dict[str, str]) -> str:
    """`url` with `params` added to its query string (a realm may carry a query of its own)."""
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)
