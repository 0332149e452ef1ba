"""Optional bearer-token authentication for every endpoint but service-info.

Tokens come from the configuration (``auth_tokens``: may do everything;
``auth_read_tokens``: may only read). A client may send a token as
``Authorization: Bearer <token>`` or as the password of HTTP Basic auth (what
toil-wes-cwl-runner sends from TOIL_WES_USER/TOIL_WES_PASSWORD).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Iterable, Optional

import flask

from ..config import Config
from ..errors import Forbidden, Unauthorized

OPEN_PATHS = ("/service-info", "/ui", "/openapi.json", "/openapi.yaml")


def presented_token(header: Optional[str]) -> Optional[str]:
    """The token in an Authorization header: Bearer, OAuth2 (Arvados' own scheme) or Basic (the password part)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth2"):
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    return None


def _matches(token: str, tokens: Iterable[str]) -> bool:
    # Compare every token in constant time so timing reveals nothing.
    return any([hmac.compare_digest(token.encode(), t.encode()) for t in tokens])


def check_request(config: Config, path: str, method: str, header: Optional[str]) -> None:
    """Raise `Unauthorized` or `Forbidden` unless the request may proceed."""
    if not config.auth_tokens and not config.auth_read_tokens:
        return
    if any(path.endswith(p) or f"{p}/" in path for p in OPEN_PATHS):
        return
    token = presented_token(header)
    if token is None:
        raise Unauthorized("this server requires a token: send 'Authorization: Bearer <token>'")
    if _matches(token, config.auth_tokens):
        return
    if _matches(token, config.auth_read_tokens):
        if method in ("GET", "HEAD"):
            return
        raise Forbidden("this token may only read; submitting and canceling need a full token")
    raise Unauthorized("the token is not valid for this server")


def install(flask_app: flask.Flask, config: Config) -> None:
    """Check every request before its handler runs."""

    @flask_app.before_request
    def _authenticate() -> None:
        request = flask.request
        check_request(config, request.path, request.method, request.headers.get("Authorization"))
