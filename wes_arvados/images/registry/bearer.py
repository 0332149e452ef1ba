"""The Docker/OCI token flow: bearer tokens per scope, cached until they expire."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import requests

from .basic import basic_header
from .challenge import Challenge
from .credentials import AuthConfig
from .errors import raise_for_connection, raise_for_response
from .options import RegistryOptions

# The token spec: a token without expires_in, or with less, is good for 60 s.
MIN_EXPIRY = 60
# Renew this long before expiry, so a token does not lapse in flight.
MARGIN = 5
CLIENT_ID = "wes-arvados"


@dataclass
class Token:
    """A bearer token and the monotonic time it stops being used."""

    value: str
    expires: float


class TokenCache:
    """Tokens per (realm, service, scope); safe for threads pulling layers in parallel."""

    def __init__(self) -> None:
        self._tokens: Dict[Tuple[str, str, str], Token] = {}
        self._lock = threading.Lock()

    def get(self, key: Tuple[str, str, str]) -> Optional[str]:
        """A token still valid for `key`, if any."""
        with self._lock:
            token = self._tokens.get(key)
            return token.value if token and token.expires > time.monotonic() else None

    def put(self, key: Tuple[str, str, str], value: str, expires_in: float) -> None:
        """Remember a token for `key`."""
        with self._lock:
            self._tokens[key] = Token(value, time.monotonic() + max(expires_in, MIN_EXPIRY) - MARGIN)

    def forget(self, key: Tuple[str, str, str]) -> None:
        """Drop a token the registry refused."""
        with self._lock:
            self._tokens.pop(key, None)


def fetch_token(session: requests.Session, challenge: Challenge, scope: str, auth: AuthConfig,
                options: RegistryOptions, image: str, registry: str) -> Tuple[str, float]:
    """Ask the challenge's realm for a token for `scope`; return it and its lifetime in seconds."""
    realm = challenge.params.get("realm")
    if not realm:
        raise_for_connection(ValueError("bearer challenge without realm"), image, registry, "authentication")
    service = challenge.params.get("service", "")
    what = f"token request to {realm}"
    try:
        if auth.identity_token:
            # OAuth2 refresh-token grant, as `docker login` identity tokens require.
            response = session.post(realm, timeout=options.timeout, data={
                "grant_type": "refresh_token", "refresh_token": auth.identity_token,
                "service": service, "scope": scope, "client_id": CLIENT_ID})
        else:
            headers = {"Authorization": basic_header(auth)} if auth.username or auth.password else {}
            params = {"service": service, "scope": scope} if service else {"scope": scope}
            response = session.get(realm, params=params, headers=headers, timeout=options.timeout)
    except requests.RequestException as exc:
        raise_for_connection(exc, image, registry, what)
    if response.status_code != 200:
        raise_for_response(response, image, registry, what)
    try:
        body = response.json()
    except ValueError:
        raise_for_connection(ValueError("token response is not JSON"), image, registry, what)
    token = body.get("token") or body.get("access_token")
    if not token:
        raise_for_connection(ValueError("token response has no token"), image, registry, what)
    try:
        expires_in = float(body.get("expires_in") or MIN_EXPIRY)
    except (TypeError, ValueError):
        expires_in = MIN_EXPIRY
    return token, expires_in
