"""Page tokens: opaque to clients, a position (any JSON value) to the server that issued them."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Optional

from ..errors import BadRequest

DEFAULT_PAGE_SIZE = 100
# The largest page ListRuns and ListTasks return; openapi/wes.yaml declares it too.
MAX_PAGE_SIZE = 1000


def page_size(requested: Optional[int]) -> int:
    """The page size to use for a request's `page_size`; `BadRequest` naming the limit when out of range."""
    if requested is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size {requested} is out of range: this server takes 1 to {MAX_PAGE_SIZE}")
    return requested


def encode(position: Any) -> str:
    """An opaque page token for a position."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode(token: str) -> Any:
    """The position behind a page token; `BadRequest` for a token this server did not make."""
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"page_token {token!r} is not valid") from None


def encode_token(value: int) -> str:
    """An opaque page token for an index."""
    return encode({"p": value})


def decode_token(token: Optional[str]) -> Optional[int]:
    """The index behind a page token made by `encode_token`; `BadRequest` for any other."""
    if not token:
        return None
    value = decode(token)
    if not isinstance(value, dict) or not isinstance(value.get("p"), int) or value["p"] < 0:
        raise BadRequest(f"page_token {token!r} is not valid")
    return value["p"]
