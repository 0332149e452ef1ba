"""Blob permission signatures, as sdk/go/arvados/blob_signature.go makes and checks them.

A signed locator is `<md5>+<size>+A<hmac>@<expiry>` where hmac is the hex SHA-1 HMAC, keyed by
the cluster's BlobSigningKey, of `<md5>@<token>@<expiry hex>@<BlobSigningTTL in seconds, hex>`
and token is the API token exactly as the client presented it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Optional

SIGNED_LOCATOR_RE = re.compile(r"^([0-9a-f]{32})(\+[0-9]+)?((\+[B-Z][A-Za-z0-9@_-]*)*)"
                               r"(\+A([0-9a-f]{40})@([0-9a-f]{8}))((\+[B-Z][A-Za-z0-9@_-]*)*)$")
_PERMISSION_HINT_RE = re.compile(r"\+A[^+]*")

MISSING = "missing"
INVALID = "invalid"
EXPIRED = "expired"


def _signature(key: bytes, blob_hash: str, token: str, expiry_hex: str, ttl: int) -> str:
    message = "@".join([blob_hash, token, expiry_hex, format(ttl, "x")]).encode()
    return hmac.new(key, message, hashlib.sha1).hexdigest()


def strip_signature(locator: str) -> str:
    """The locator without its `+A...` permission hint(s)."""
    return _PERMISSION_HINT_RE.sub("", locator)


def sign_locator(locator: str, token: str, key: bytes, ttl: int, expiry: Optional[int] = None) -> str:
    """`locator` (any old signature dropped) signed for `token`, valid until `expiry` (default now + ttl)."""
    locator = strip_signature(locator)
    if not token or not key:
        return locator
    expiry_hex = f"{int(time.time() + ttl) if expiry is None else expiry:08x}"
    return f"{locator}+A{_signature(key, locator.split('+')[0], token, expiry_hex, ttl)}@{expiry_hex}"


def check_signature(locator: str, token: str, key: bytes, ttl: int) -> Optional[str]:
    """None if the locator carries a valid, unexpired signature for `token`; else MISSING, INVALID or EXPIRED."""
    match = SIGNED_LOCATOR_RE.match(locator)
    if not match:
        return MISSING
    expiry_hex = match.group(7)
    if int(expiry_hex, 16) < time.time():
        return EXPIRED
    if not hmac.compare_digest(match.group(6), _signature(key, match.group(1), token, expiry_hex, ttl)):
        return INVALID
    return None
