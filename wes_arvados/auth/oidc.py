"""OIDC bearer tokens: JWTs signed by an issuer, checked with PyJWT against the issuer's JWKS.

RS256 and ES256 only; the issuer, the audience and the expiry are required and
checked. The key set comes from ``jwks_url``, or from the issuer's discovery
document. Keys are cached; a token with a key id the cache does not hold makes
one fetch of the set at once (then no other for `REFRESH_MIN_SECONDS`, so that
forged key ids cannot make this server hammer the issuer), and the set is fetched
again after `KEYS_MAX_AGE` whatever happens: rotated keys are picked up either way.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, Optional, Sequence

import jwt

from ..errors import ServerError, Unauthorized
from ..http import Client, TransportError, read_capped
from ..wes.caller import Caller

ALGORITHMS = ["RS256", "ES256"]
REFRESH_MIN_SECONDS = 30.0
KEYS_MAX_AGE = 3600.0
LEEWAY_SECONDS = 30
FETCH_TIMEOUT = 10.0
DOCUMENT_MAX = 1 << 20


def looks_like_jwt(token: str) -> bool:
    """Whether a token has a JWT's three dot-separated parts (opaque tokens are looked up elsewhere)."""
    return token.count(".") == 2 and token.startswith("eyJ")


class OidcVerifier:
    """Turns a JWT into a `Caller`: its `user_claim` is the user, `admins` are admins."""

    def __init__(self, issuer: str, audience: str, jwks_url: str = "", user_claim: str = "sub",
                 admins: Sequence[str] = (), ca_bundle: Optional[str] = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.user_claim = user_claim
        self.admins = frozenset(admins)
        self._client = Client(ca_bundle=ca_bundle, timeout=FETCH_TIMEOUT)
        self._lock = threading.Lock()
        self._keys: Dict[str, Any] = {}
        self._fetched = float("-inf")
        self._refetched = float("-inf")  # the last fetch an unknown key id caused

    def _get_json(self, url: str, what: str) -> Any:
        try:
            response = self._client.request("GET", url, redirects=3)
            body = read_capped(response, DOCUMENT_MAX, what)
        except TransportError as exc:
            raise ServerError(f"cannot fetch {what} from {url}: {exc}") from None
        if response.status != 200:
            raise ServerError(f"cannot fetch {what}: {url} answered {response.status}")
        try:
            return json.loads(body)
        except ValueError:
            raise ServerError(f"{what} at {url} is not JSON") from None

    def _key_set_url(self) -> str:
        if not self.jwks_url:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = self._get_json(url, "the issuer's discovery document")
            if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
                raise ServerError(f"the issuer's discovery document at {url} names no jwks_uri")
            self.jwks_url = document["jwks_uri"]
        return self.jwks_url

    def _key(self, kid: str) -> Any:
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched > KEYS_MAX_AGE  # the first time too
            unknown = kid not in self._keys and now - self._refetched > REFRESH_MIN_SECONDS
            if stale or unknown:
                if not stale:
                    self._refetched = now
                url = self._key_set_url()
                try:
                    key_set = jwt.PyJWKSet.from_dict(self._get_json(url, "the issuer's key set"))
                except jwt.PyJWKSetError as exc:
                    raise ServerError(f"the issuer's key set at {url} is unusable: {exc}") from None
                self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
                self._fetched = time.monotonic()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("the token is signed with a key the issuer does not publish")
        return key

    def caller(self, token: str) -> Caller:
        """The caller a JWT names; `Unauthorized` saying why when it is not valid for this server."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not a valid JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized(f"the token's algorithm must be one of {', '.join(ALGORITHMS)}")
        if not header.get("kid"):
            raise Unauthorized("the token names no key id (kid) of the issuer's key set")
        key = self._key(str(header["kid"]))
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the token is not for this service (its audience must be {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"the token is not from the issuer this server trusts ({self.issuer})") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token was refused: {exc}") from None
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user:
            raise Unauthorized(f"the token has no {self.user_claim!r} claim")
        return Caller(user, admin=user in self.admins, token=token)
