"""Keep for the double: blocks stored as files by md5, and the HTTP service clients PUT and GET them through.

The service behaves as a keepproxy would (service_type "proxy" in keep_services): it stores each
block once and reports `X-Keep-Desired-Replicas` copies stored, answers with the locator signed
for the caller's token, and refuses reads whose signature does not verify (keepstore's rules).
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

from . import signing
from .errors import ApiError
from .https import QuietHandler

BLOCK_SIZE = 64 * 1024 * 1024
EMPTY_BLOCK = "d41d8cd98f00b204e9800998ecf8427e"
_PATH_RE = re.compile(r"^/([0-9a-f]{32})((\+[0-9A-Za-z@_-]+)*)$")


class Blocks:
    """Stored blocks, one file per md5 under a directory; a read-only mapping md5 -> bytes for tests."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, md5: str) -> Path:
        return self.directory / md5

    def put(self, data: bytes) -> str:
        """Store a block; its md5."""
        md5 = hashlib.md5(data).hexdigest()
        path = self._path(md5)
        with self._lock:
            if not path.exists():
                partial = path.with_suffix(f".{threading.get_ident()}.part")
                partial.write_bytes(data)
                partial.replace(path)
        return md5

    def get(self, md5: str) -> Optional[bytes]:
        """The block, or None if it is not stored."""
        try:
            return self._path(md5).read_bytes()
        except (FileNotFoundError, OSError):
            return None

    def size(self, md5: str) -> int:
        """The stored size of a block (0 if missing)."""
        try:
            return self._path(md5).stat().st_size
        except OSError:
            return 0

    def __contains__(self, md5: object) -> bool:
        return isinstance(md5, str) and re.fullmatch(r"[0-9a-f]{32}", md5) is not None and self._path(md5).exists()

    def __getitem__(self, md5: str) -> bytes:
        data = self.get(md5)
        if data is None:
            raise KeyError(md5)
        return data

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(p.name for p in self.directory.iterdir() if len(p.name) == 32))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def total_bytes(self) -> int:
        """The size of all stored blocks."""
        return sum(self.size(md5) for md5 in self)


class Counters:
    """What clients sent to and fetched from Keep over HTTP."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.put_bytes = self.put_requests = self.get_bytes = self.get_requests = 0

    def add_put(self, size: int) -> None:
        """Count a PUT of `size` bytes."""
        with self._lock:
            self.put_bytes += size
            self.put_requests += 1

    def add_get(self, size: int) -> None:
        """Count a GET answered with `size` bytes."""
        with self._lock:
            self.get_bytes += size
            self.get_requests += 1


class KeepHandler(QuietHandler):
    """PUT/GET/HEAD /<locator>; `self.server.app` is the `Cluster`."""

    def _error(self, status: int, message: str, head_only: bool = False) -> None:
        self.send_bytes(status, (message + "\n").encode(), content_type="text/plain", head_only=head_only)

    def _unauthorized(self, head_only: bool = False) -> None:
        missing = not self._token()
        self._error(401, "no token provided in Authorization header" if missing else "Unauthorized", head_only)

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme in ("Bearer", "OAuth2") else ""

    def _caller_token(self) -> Optional[str]:
        token = self._token()
        try:
            self.server.app.tokens.caller(token)  # type: ignore[attr-defined]
        except ApiError:
            return None
        return token

    def do_PUT(self) -> None:
        cluster = self.server.app  # type: ignore[attr-defined]
        match = _PATH_RE.match(self.path)
        if not match:
            self.read_body()
            return self._error(400, "invalid locator")
        token = self._caller_token()
        if token is None:
            self.read_body()
            return self._unauthorized()
        length = int(self.headers.get("Content-Length") or 0)
        if length > BLOCK_SIZE:
            self.close_connection = True
            return self._error(413, "request entity too large")
        data = self.rfile.read(length)
        cluster.keep_counters.add_put(len(data))
        md5 = hashlib.md5(data).hexdigest()
        if md5 != match.group(1):
            return self._error(400, f"content hash {md5} did not match specified locator {match.group(1)}")
        cluster.blocks.put(data)
        wanted = int(self.headers.get("X-Keep-Desired-Replicas") or cluster.settings.default_replication)
        classes = [c.strip() for c in (self.headers.get("X-Keep-Storage-Classes") or "default").split(",") if c.strip()]
        locator = cluster.sign(f"{md5}+{len(data)}", token)
        self.send_bytes(200, (locator + "\n").encode(), content_type="text/plain", headers={
            "X-Keep-Replicas-Stored": str(wanted),
            "X-Keep-Storage-Classes-Confirmed": ", ".join(f"{c}={wanted}" for c in classes),
        })

    def do_GET(self) -> None:
        self._read(head_only=False)

    def do_HEAD(self) -> None:
        self._read(head_only=True)

    def _read(self, head_only: bool) -> None:
        cluster = self.server.app  # type: ignore[attr-defined]
        match = _PATH_RE.match(self.path)
        if not match:
            return self._error(400, "invalid locator", head_only)
        locator = self.path[1:]
        md5, hints = match.group(1), match.group(2)
        if not head_only and not re.match(r"^\+[0-9]+", hints) and md5 != EMPTY_BLOCK:
            return self._error(405, "method not allowed", head_only)  # GET without a size hint
        token = self._caller_token()
        if token is None:
            return self._unauthorized(head_only)
        problem = signing.check_signature(locator, token, cluster.settings.blob_signing_key,
                                          cluster.settings.blob_signing_ttl)
        if problem == signing.EXPIRED:
            return self._error(401, "expired signature", head_only)
        if problem is not None:
            return self._error(400, "invalid signature", head_only)
        data = b"" if md5 == EMPTY_BLOCK else cluster.blocks.get(md5)
        if data is None:
            return self._error(404, "Not Found", head_only)
        headers = {}
        if (self.headers.get("X-Keep-Signature") or "").split(",")[0].strip() == "local":
            headers["X-Keep-Locator"] = cluster.sign(f"{md5}+{len(data)}", token)
        if not head_only:
            cluster.keep_counters.add_get(len(data))
        self.send_bytes(200, data, content_type="application/octet-stream", headers=headers, head_only=head_only)


def keep_service_record(cluster: Any, port: int) -> dict:
    """The keep_services record clients find through keep_services().accessible()."""
    now = cluster.store.now()
    return {"uuid": f"{cluster.settings.uuid_prefix}-bi6l4-000000000000000",
            "owner_uuid": cluster.system_user_uuid, "created_at": now, "modified_at": now,
            "modified_by_user_uuid": cluster.system_user_uuid, "service_host": "127.0.0.1", "service_port": port,
            "service_ssl_flag": True, "service_type": "proxy", "read_only": False}
