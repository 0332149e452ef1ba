"""Which Authorization header a request carries, learnt from each endpoint's 401 challenges.

The repository pings each endpoint's ``/v2/`` once, without credentials; its 401
says whether the endpoint wants Basic or a Bearer token (and from which realm),
so the first real request carries them. A later 401 (a token expired, or one
without the scope needed) is learnt from the same way.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

from .basic import basic_header
from .bearer import TokenCache, TokenKey, fetch_token
from .challenge import Challenge, find, parse_challenges
from .credentials import AuthConfig
from .mirror import Endpoint
from .options import RegistryOptions
from .session import Response, Session


class Authenticator:
    """Per repository: how each endpoint authenticates, and the credentials and tokens to do it.

    Thread-safe: layers are fetched in parallel through one instance.
    """

    def __init__(self, session: Session, options: RegistryOptions, registry: str, scope: str,
                 image: str, tokens: Optional[TokenCache] = None) -> None:
        self.session = session
        self.options = options
        self.registry = registry
        self.scope = scope
        self.image = image
        self.tokens = tokens or TokenCache()
        # base URL -> ("basic" | "bearer", challenge parameters), from the endpoint's last 401.
        self._kinds: Dict[str, Tuple[str, Dict[str, str]]] = {}
        # Looked up once per endpoint: a credential helper is a process to run.
        self._credentials: Dict[str, AuthConfig] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator(registry={self.registry!r}, scope={self.scope!r})"

    def credentials(self, endpoint: Endpoint) -> AuthConfig:
        """The credentials for an endpoint: a mirror's own, else the registry's."""
        found = self._credentials.get(endpoint.base_url)
        if found is None:
            found = self.options.credentials.for_registry(endpoint.host if endpoint.is_mirror else self.registry)
            with self._lock:
                found = self._credentials.setdefault(endpoint.base_url, found)
        return found

    def header(self, endpoint: Endpoint) -> Dict[str, str]:
        """The Authorization header to send to `endpoint` now (empty until it has asked for one)."""
        with self._lock:
            kind = self._kinds.get(endpoint.base_url)
        if kind is None:
            return {}
        scheme, params = kind
        auth = self.credentials(endpoint)
        if scheme == "basic":
            return {"Authorization": basic_header(auth)} if auth else {}
        if auth.registry_token:
            return {"Authorization": f"Bearer {auth.registry_token}"}
        key = _token_key(params)
        token = self.tokens.get(key)
        if token is None:
            token, expires_in = fetch_token(self.session, Challenge("bearer", params), key[2], auth,
                                            self.options, self.image, endpoint.host)
            self.tokens.put(key, token, expires_in)
        return {"Authorization": f"Bearer {token}"}

    def learn(self, endpoint: Endpoint, response: Response) -> bool:
        """Take in a 401 from `endpoint`; True when sending the request again may succeed.

        The caller bounds the retries: a refused Basic password is never sent
        again, and a refused token is renewed once per request (expired mid-pull,
        or `insufficient_scope` naming the scope to ask for).
        """
        sent = response.request_headers.get("Authorization", "")
        sent_scheme = sent.split(" ", 1)[0].lower()
        # Several WWW-Authenticate fields are one list of challenges (RFC 9110 5.3, 11.6.1).
        challenges = parse_challenges(", ".join(response.headers.getlist("WWW-Authenticate")))
        bearer, basic = find(challenges, "bearer"), find(challenges, "basic")
        auth = self.credentials(endpoint)
        with self._lock:
            previous = self._kinds.get(endpoint.base_url)
            if previous is not None and previous[0] == "bearer" and sent_scheme == "bearer":
                self.tokens.forget(_token_key(previous[1]), sent.split(" ", 1)[-1])
            if bearer is not None:
                params = dict(bearer.params)
                # Only an insufficient_scope answer names a scope better than ours.
                if not (params.get("error") == "insufficient_scope" and params.get("scope")):
                    params["scope"] = self.scope
                params.pop("error", None)
                params.pop("error_description", None)
                self._kinds[endpoint.base_url] = ("bearer", params)
                # A fixed registry token cannot be renewed; sending it again is pointless.
                return not (sent_scheme == "bearer" and auth.registry_token)
            if basic is not None:
                self._kinds[endpoint.base_url] = ("basic", dict(basic.params))
                return sent_scheme != "basic" and bool(auth)
        return False


def _token_key(params: Dict[str, str]) -> TokenKey:
    return (params.get("realm", ""), params.get("service", ""), params.get("scope", ""))
