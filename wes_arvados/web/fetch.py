"""Downloading an http(s) workflow_url with the server's size and time limits."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from ..errors import BadRequest


def fetch_url(url: str, dest: Path, max_bytes: int, timeout: float) -> None:
    """Save `url` to `dest`; `BadRequest` if it fails, is too large or too slow."""
    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, stream=True, timeout=timeout, allow_redirects=True) as response:
            if response.status_code != 200:
                raise BadRequest(f"workflow_url {url!r} answered HTTP {response.status_code}")
            size = 0
            with open(dest, "wb") as out:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadRequest(f"workflow_url {url!r} is larger than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise BadRequest(f"workflow_url {url!r} took longer than {timeout:g} s to download")
                    out.write(chunk)
    except requests.RequestException as exc:
        raise BadRequest(f"workflow_url {url!r} could not be fetched: {type(exc).__name__}") from exc
