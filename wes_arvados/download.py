"""Saving an http(s) URL to a file within a size and a time limit, for the server's own downloads.

The web layer fetches a run's ``workflow_url`` with it, and the local backend a
``dockerLoad`` archive; each turns `DownloadError` into its own error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from .fetch_guard import FetchGuard
from .http import Client, TransportError, read1, release

CHUNK = 1 << 20
# Longest wait for a connection or for the next bytes, in seconds.
STALL = 60.0
# Redirects followed (a download link often redirects to storage once or twice).
MAX_REDIRECTS = 5


class DownloadError(Exception):
    """A URL could not be saved; the message names it (as the caller's `label` does) and says why."""


def download(url: str, dest: Path, max_bytes: int, timeout: float, label: str,
             guard: Optional[FetchGuard] = None) -> int:
    """Save `url` to `dest` (following redirects); return its size in bytes.

    Raises `DownloadError` when the answer is not 200, the body passes `max_bytes`,
    the whole takes longer than `timeout` seconds (a silent connection, longer than
    `STALL` seconds), the connection fails, or `guard` refuses a host on the way
    (the URL's or a redirect's); `dest` may then hold a part, which the caller removes.
    """
    deadline = time.monotonic() + timeout
    client = Client(timeout=min(timeout, STALL), guard=guard)
    try:
        response = client.request("GET", url, redirects=MAX_REDIRECTS)
        try:
            if response.status != 200:
                raise DownloadError(f"{label} answered HTTP {response.status}")
            size = 0
            with open(dest, "wb") as out:
                while True:
                    chunk = read1(response, CHUNK)
                    if not chunk:
                        return size
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{label} is larger than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{label} took longer than {timeout:g} s to download")
                    out.write(chunk)
        finally:
            release(response)
    except TransportError as exc:
        raise DownloadError(f"{label} could not be fetched: {exc}") from exc
    finally:
        client.close()
