"""Authentication of every request but the open ones (service-info, the API document and its UI).

The request's token goes to the `Authenticator` (wes_arvados/auth), which says who
the caller is; handlers give that `Caller` to the backend. A client may send its
token as ``Authorization: Bearer <token>`` or as the password of HTTP Basic auth
(what toil-wes-cwl-runner sends from TOIL_WES_USER/TOIL_WES_PASSWORD). Read-only
callers may only GET.
"""

from __future__ import annotations

import base64
import binascii
from typing import Optional

import flask

from ..auth import NOBODY, Authenticator
from ..errors import Forbidden, Unauthorized
from ..wes.caller import Caller

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


def request_caller(authenticator: Authenticator, path: str, method: str, header: Optional[str]) -> Caller:
    """Who the request acts for; `Unauthorized` or `Forbidden` unless it may proceed.

    On the open paths a request without valid credentials is `NOBODY` (whose state
    counts are empty) rather than refused.
    """
    token = presented_token(header)
    if any(path.endswith(p) or f"{p}/" in path for p in OPEN_PATHS):
        try:
            return authenticator.caller(token)
        except Unauthorized:
            return NOBODY
    caller = authenticator.caller(token)
    if caller.read_only and method not in ("GET", "HEAD"):
        raise Forbidden("this token may only read; submitting and canceling need a full token")
    return caller


def install(flask_app: flask.Flask, authenticator: Authenticator) -> None:
    """Find every request's caller (in ``flask.g.caller``) before its handler runs."""

    @flask_app.before_request
    def _authenticate() -> None:
        request = flask.request
        flask.g.caller = request_caller(authenticator, request.path, request.method,
                                        request.headers.get("Authorization"))
