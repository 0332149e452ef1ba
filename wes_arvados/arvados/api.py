"""The Arvados API, as each caller: a client per token, and Arvados' refusals as the server's errors."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ..errors import Forbidden, NotFound, ServerError, Unauthorized


def client_for(host: str, token: str, insecure: bool = False) -> Any:
    """An `arvados.api('v1')` client that makes every call with `token` (nothing process-wide is set)."""
    import arvados  # here: the local backend never needs the SDK

    return arvados.api("v1", host=host, token=token, insecure=insecure, num_retries=3)


@contextlib.contextmanager
def api_errors(not_found: str) -> Iterator[None]:
    """Turn Arvados' answers into the server's errors: 401, 403, and 404 (or a malformed uuid) as `not_found`."""
    from arvados.errors import ApiError

    try:
        yield
    except ApiError as exc:
        status = getattr(exc.resp, "status", None)
        if status == 401:
            raise Unauthorized("Arvados refused the token; send a valid Arvados API token") from None
        if status == 403:
            raise Forbidden(f"Arvados refused: {_reason(exc)}") from None
        if status in (404, 422):
            raise NotFound(not_found) from None
        raise ServerError(f"Arvados answered {status}: {_reason(exc)}") from None


def _reason(exc: Any) -> str:
    errors = getattr(exc, "_get_reason", lambda: "")() or str(exc)
    return " ".join(str(errors).split())[:500]
