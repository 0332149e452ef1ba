"""The one error hierarchy: every failure a client can see is a `WesError`."""

from __future__ import annotations

import errno
import sqlite3


class WesError(Exception):
    """Base of every error the server reports; carries its HTTP status code."""

    status_code = 500

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def to_response(self) -> dict:
        """Shape this error as a WES `ErrorResponse` body."""
        return {"msg": self.msg, "status_code": self.status_code}


class BadRequest(WesError):
    """The request is malformed or asks for something the server refuses."""

    status_code = 400


class TooLarge(WesError):
    """The request goes over one of the server's limits on sizes or counts (RunWorkflow's `Limits`)."""

    status_code = 413


class Unauthorized(WesError):
    """The request carries no valid credentials."""

    status_code = 401


class Forbidden(WesError):
    """The credentials are valid but do not allow this request."""

    status_code = 403


class NotFound(WesError):
    """The run, task or file named in the request does not exist."""

    status_code = 404


class NotSupported(WesError):
    """The operation exists, but not on this server's backend (501)."""

    status_code = 501


class ServerError(WesError):
    """The server failed; the message is safe to show, details are in the log."""

    status_code = 500


class InsufficientStorage(WesError):
    """The server has no space left (a full disk or quota) to keep the request; it may be sent again later."""

    status_code = 507


# OSError numbers of a full disk or an exhausted quota; SQLite says the same with SQLITE_FULL.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed because the disk (or a quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL  # extended codes keep the primary in the low byte


class ConfigError(Exception):
    """The configuration given to the server is invalid (reported at start-up)."""
