"""Talking to a wes-arvados (or any WES 1.1) server as a client: JSON calls, a streamed upload, downloads.

Every request goes through the house's one HTTP client (`wes_arvados.http`). The
server's refusals become `ClientError` with the server's own message, so the
command can print them as one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..http import Client, TransportError, read1, read_capped, release
from .multipart import MultipartBody

API_PATH = "/ga4gh/wes/v1"
# The largest JSON answer read (a RunLog with its outputs object, a page of tasks).
MAX_ANSWER = 64 << 20
DOWNLOAD_CHUNK = 1 << 20


class ClientError(Exception):
    """The server refused, could not be reached, or answered what is not WES; the message says which."""


def api_base(server: str) -> str:
    """The WES base URL of `server`, given as http(s)://host[:port] with or without /ga4gh/wes/v1."""
    base = server.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def message_of(answer: bytes) -> str:
    """The `msg` of an ErrorResponse, else the start of the body."""
    try:
        return str(json.loads(answer).get("msg", answer.decode(errors="replace")))
    except (ValueError, AttributeError):
        return answer[:200].decode(errors="replace")


class WesSession:
    """One server, as one caller (a bearer token, if any)."""

    def __init__(self, server: str, token: Optional[str] = None, insecure: bool = False) -> None:
        self.base = api_base(server)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = Client(timeout=60, insecure=insecure, user_agent="wes-arvados-run")

    def url(self, path: str) -> str:
        """The absolute URL of an API path (or `path` itself if it is absolute)."""
        return path if "://" in path else self.base + path

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, expect: int = 200,
             headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """One JSON call; its answer, or `ClientError` with the server's message."""
        sent = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            sent["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        url = self.url(path)
        try:
            response = self.http.request(method, url, sent, data)
            status, answer = response.status, read_capped(response, MAX_ANSWER, f"the answer of {url}")
        except TransportError as exc:
            raise ClientError(f"{self.base}: {exc}") from None
        return self._json(status, answer, expect)

    def _json(self, status: int, answer: bytes, expect: int) -> Dict[str, Any]:
        if status == 401:
            raise ClientError(f"{self.base} refused the token (401): {message_of(answer)}")
        if status != expect:
            raise ClientError(f"{self.base} answered {status}: {message_of(answer)}")
        try:
            value = json.loads(answer)
        except ValueError:
            raise ClientError(f"{self.base} answered what is not JSON: {answer[:200]!r}") from None
        if not isinstance(value, dict):
            raise ClientError(f"{self.base} answered what is not a JSON object")
        return value

    def send_form(self, method: str, path: str, body: MultipartBody, headers: Optional[Dict[str, str]] = None,
                  sent: Callable[[int], None] = lambda n: None, expect: int = 200) -> Dict[str, Any]:
        """`method` `path` with the multipart `body` streamed from disk; the JSON answer."""
        head = {**self.headers, **(headers or {}), "Content-Type": body.content_type,
                "Content-Length": str(body.length())}
        try:
            response = self.http.request(method, self.base + path, head, body.chunks(sent), timeout=3600)
            status, answer = response.status, read_capped(response, MAX_ANSWER, f"the answer to {method} {path}")
        except TransportError as exc:
            raise ClientError(f"{self.base}: {exc}") from None
        return self._json(status, answer, expect)

    def submit(self, body: MultipartBody, headers: Optional[Dict[str, str]] = None,
               sent: Callable[[int], None] = lambda n: None) -> str:
        """POST /runs with `body` streamed from disk; the run's id."""
        run_id = self.send_form("POST", "/runs", body, headers, sent).get("run_id")
        if not isinstance(run_id, str):
            raise ClientError(f"{self.base} answered POST /runs with no run_id")
        return run_id

    def download(self, url: str, dest: Path) -> int:
        """Stream the file at `url` into `dest` (written aside, then renamed into place); its size."""
        try:
            response = self.http.request("GET", self.url(url), self.headers, timeout=3600, redirects=5)
        except TransportError as exc:
            raise ClientError(f"cannot download {url}: {exc}") from None
        if response.status != 200:
            answer = read_capped(response, 1 << 16, f"the answer of {url}")
            raise ClientError(f"downloading {url}: {response.status}: {message_of(answer)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask decides, as for any new file
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while piece := read1(response, DOWNLOAD_CHUNK):
                    out.write(piece)
                    size += len(piece)
            os.replace(temp, dest)
        except BaseException:
            release(response)
            os.unlink(temp)
            raise
        release(response)
        return size

    def close(self) -> None:
        """Close idle connections."""
        self.http.close()
