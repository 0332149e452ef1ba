"""The one timestamp format: UTC, RFC 3339 with microseconds, as WES runs, tasks and stored images carry it."""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> str:
    """Now, as a timestamp string."""
    return datetime.now(timezone.utc).strftime(FORMAT)


def age_seconds(timestamp: str) -> float:
    """Seconds since a timestamp made by `utcnow`."""
    then = datetime.strptime(timestamp, FORMAT).replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()
