"""The one timestamp format: UTC, RFC 3339 with microseconds, as WES runs, tasks and stored images carry it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> str:
    """Now, as a timestamp string."""
    return datetime.now(timezone.utc).strftime(FORMAT)


def age_seconds(timestamp: str, now: Optional[datetime] = None) -> float:
    """Seconds from a timestamp made by `utcnow` to `now` (default: now)."""
    then = datetime.strptime(timestamp, FORMAT).replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - then).total_seconds()
