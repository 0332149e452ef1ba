"""Retrying requests on 429, 5xx and broken connections, honouring Retry-After."""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from .options import RegistryOptions
from .session import CannotConnect, Response

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A request that got no answer may be sent again; one whose answer broke off is the caller's to resume.
RETRY_EXCEPTIONS = (CannotConnect,)


def retry_after(response: Response) -> Optional[float]:
    """Seconds a Retry-After header asks us to wait (delta-seconds or an HTTP date), if any."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import datetime as dt  # here: an HTTP date is rare, and email.utils costs every pull ~10 ms to import
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def with_retries(send: Callable[[], Response], options: RegistryOptions, what: str,
                 sleep: Callable[[float], None] = time.sleep, retry_connection_errors: bool = True
                 ) -> Response:
    """Call `send` until it answers with a non-retryable status or attempts run out.

    Returns the last response (the caller turns a failure into an error);
    re-raises the last connection error when every attempt failed to connect,
    or the first one without `retry_connection_errors` (mirrors: the next
    endpoint is a better bet than waiting).
    """
    delay = options.backoff
    for attempt in range(1, options.max_attempts + 1):
        last = attempt == options.max_attempts
        try:
            response = send()
        except RETRY_EXCEPTIONS as exc:
            if last or not retry_connection_errors or not exc.retryable:
                raise
            log.info("%s: %s; retrying in %.2f s", what, type(exc).__name__, delay)
            sleep(delay)
            delay *= 2
            continue
        if response.status_code not in RETRY_STATUSES or last:
            return response
        wait = retry_after(response)
        if wait is not None and wait > options.max_retry_after:
            return response  # the registry asks for longer than we are willing to wait
        wait = delay if wait is None else wait
        log.info("%s: HTTP %d; retrying in %.2f s", what, response.status_code, wait)
        response.close()
        sleep(wait)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
