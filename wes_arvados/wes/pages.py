"""Page tokens: opaque to clients, a position to the server that issued them."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Optional

from ..errors import BadRequest


def encode_token(value: int) -> str:
    """An opaque page token for a position."""
    return base64.urlsafe_b64encode(json.dumps({"p": value}).encode()).decode().rstrip("=")


def decode_token(token: Optional[str]) -> Optional[int]:
    """The position behind a page token; `BadRequest` for a token this server did not make."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value = data["p"]
        if not isinstance(value, int) or value < 0:
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest(f"page_token {token!r} is not valid") from None
