"""Who is calling: a request's token turned into a `Caller`, from the sources the configuration names.

- the operator's tokens (``auth_tokens``, ``auth_read_tokens``): admins, who see every run;
- a token file (``auth_token_file``, `tokens`): one user per token, some admins;
- an OIDC issuer (``oidc_issuer``, `oidc`): JWTs naming their user in a claim.

With none configured, authentication is off and every caller is one user (the
configuration allows that only on loopback). The Arvados backend needs none of
them: Arvados checks the caller's own token, and its permissions decide.
"""

from __future__ import annotations

import hmac
from typing import Iterable, Optional

from ..config import Config
from ..errors import Unauthorized
from ..wes.caller import Caller, anonymous
from .oidc import OidcVerifier, looks_like_jwt
from .tokens import TokenFile

OPERATOR_USER = "operator"
# Who a request without valid credentials is on the open paths (service-info): no one, owner of nothing.
NOBODY = Caller("")


def _matches(token: str, tokens: Iterable[str]) -> bool:
    # Compare every token in constant time so timing reveals nothing.
    return any([hmac.compare_digest(token.encode(), t.encode()) for t in tokens])


class Authenticator:
    """Finds the caller of a token in the configured sources."""

    def __init__(self, config: Config) -> None:
        self.full_tokens = list(config.auth_tokens)
        self.read_tokens = list(config.auth_read_tokens)
        self.token_file = TokenFile(config.auth_token_file) if config.auth_token_file else None
        self.oidc = OidcVerifier(config.oidc_issuer, config.oidc_audience, config.oidc_jwks_url,
                                 config.oidc_user_claim, config.admin_users) if config.oidc_issuer else None
        self.admins = frozenset(config.admin_users)

    @property
    def enabled(self) -> bool:
        """Whether callers must show a token."""
        return bool(self.full_tokens or self.read_tokens or self.token_file or self.oidc)

    def caller(self, token: Optional[str]) -> Caller:
        """The caller `token` belongs to; `Unauthorized` (saying why) if it belongs to none."""
        if not self.enabled:
            return anonymous(token)
        if token is None:
            raise Unauthorized("this server requires a token: send 'Authorization: Bearer <token>'")
        if self.oidc is not None and looks_like_jwt(token):
            return self.oidc.caller(token)
        if _matches(token, self.full_tokens):
            return Caller(OPERATOR_USER, admin=True, token=token)
        if _matches(token, self.read_tokens):
            return Caller(OPERATOR_USER, admin=True, read_only=True, token=token)
        found = self.token_file.caller(token) if self.token_file is not None else None
        if found is None:
            raise Unauthorized("the token is not valid for this server")
        if found.user in self.admins and not found.admin:
            return Caller(found.user, admin=True, read_only=found.read_only, token=token)
        return found

