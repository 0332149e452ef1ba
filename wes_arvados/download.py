"""Saving an http(s) URL to a file within a size and a time limit, for the server's own downloads.

The web layer fetches a run's ``workflow_url`` with it, and the local backend a
``dockerLoad`` archive; each turns `DownloadError` into its own error.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

CHUNK = 1 << 20
# Longest wait for a connection or for the next bytes, in seconds.
STALL = 60.0


class DownloadError(Exception):
    """A URL could not be saved; the message names it (as the caller's `label` does) and says why."""


def download(url: str, dest: Path, max_bytes: int, timeout: float, label: str) -> int:
    """Save `url` to `dest` (following redirects); return its size in bytes.

    Raises `DownloadError` when the answer is not 200, the body passes `max_bytes`,
    the whole takes longer than `timeout` seconds (a silent connection, longer than
    `STALL` seconds), or the connection fails; `dest` may then hold a part, which
    the caller removes.
    """
    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, stream=True, timeout=min(timeout, STALL), allow_redirects=True) as response:
            if response.status_code != 200:
                raise DownloadError(f"{label} answered HTTP {response.status_code}")
            size = 0
            with open(dest, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{label} is larger than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{label} took longer than {timeout:g} s to download")
                    out.write(chunk)
            return size
    except requests.RequestException as exc:
        raise DownloadError(f"{label} could not be fetched: {type(exc).__name__}") from exc
