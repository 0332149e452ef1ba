"""Turning a registry's failure into an error that names the image, the registry and its words."""

from __future__ import annotations

import json
from typing import NoReturn

from ..errors import AuthError, NotFoundError, RegistryError, TooManyRequests
from .session import BodyTooLarge, Response, TransportError

# The largest error body read: what a registry says fits in far less.
MAX_ERROR_BODY = 1 << 20


def registry_message(response: Response) -> str:
    """What the registry said: its JSON `errors` list, else a short text body, else the reason."""
    try:
        body = response.read_capped(MAX_ERROR_BODY, "the error body")[:4096]
    except BodyTooLarge as exc:
        return f"{response.reason or 'no reason given'} ({exc})"
    except TransportError:
        body = b""
    try:
        errors = json.loads(body).get("errors") or []
        parts = [": ".join(str(e.get(k)) for k in ("code", "message") if e.get(k)) for e in errors]
        parts = [p for p in parts if p]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", errors="replace").strip()
    if text and len(text) < 300 and "<html" not in text.lower():
        return text
    return response.reason or "no reason given"


def raise_for_response(response: Response, image: str, registry: str, what: str) -> NoReturn:
    """Raise the `RegistryError` subclass that fits a failed response."""
    message = f"{what}: {registry_message(response)}"
    status = response.status_code
    if status in (401, 403):
        raise AuthError(image, registry, status, message)
    if status == 404:
        raise NotFoundError(image, registry, status, message)
    if status == 429:
        raise TooManyRequests(image, registry, status, message)
    raise RegistryError(image, registry, status, message)


def raise_for_connection(exc: Exception, image: str, registry: str, what: str) -> NoReturn:
    """Raise a `RegistryError` for a registry that could not be reached or broke off."""
    # A transport error's message is written to be read; another's type says what it is.
    reason = str(exc) if isinstance(exc, TransportError) else f"{type(exc).__name__}: {exc}"
    raise RegistryError(image, registry, None, f"{what}: {reason}") from exc
