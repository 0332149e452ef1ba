"""Downloading an http(s) workflow_url with the server's size and time limits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..download import DownloadError, download
from ..errors import BadRequest
from ..fetch_guard import FetchGuard


def download_workflow_url(url: str, dest: Path, max_bytes: int, timeout: float,
                          guard: Optional[FetchGuard] = None) -> None:
    """Save `url` to `dest`; `BadRequest` if it fails, is too large or too slow, or `guard` refuses a host."""
    try:
        download(url, dest, max_bytes, timeout, f"workflow_url {url!r}", guard)
    except DownloadError as exc:
        raise BadRequest(str(exc)) from exc
