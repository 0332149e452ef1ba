"""Input locations of a run: relative ones resolved against the staged attachments, escapes refused."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional
from urllib.parse import unquote, urlparse

from ..errors import BadRequest
from ..fetch_guard import FetchGuard, FetchRefused

REMOTE_SCHEMES = ("http", "https")


def inside(path: Path, roots: Iterable[str]) -> bool:
    """Whether `path` (symlinks resolved) is one of `roots` or below one; never for a path that cannot be resolved."""
    try:
        resolved = str(path.resolve())
    except (ValueError, OSError, RuntimeError):  # a NUL in it, a symlink loop
        return False
    return any(resolved == r or resolved.startswith(r.rstrip("/") + "/") for r in roots)


def check_remote(url: str, what: str, guard: FetchGuard) -> None:
    """`BadRequest` when the http(s) `url` names a host the server may not fetch from (loopback, private, metadata).

    The engine fetches such URLs on the server's host when the run starts; this
    refuses the submission at once, naming the reason. A name that does not
    resolve now is left for the engine to report. (The local runner checks
    again at every connection, redirects included: `FetchGuard.guard_resolution`.)
    """
    parsed = urlparse(url)
    if parsed.scheme.lower() not in REMOTE_SCHEMES:
        return
    try:
        port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    except ValueError:
        raise BadRequest(f"{what} {url!r} has an invalid port") from None
    if not parsed.hostname:
        raise BadRequest(f"{what} {url!r} names no host")
    try:
        guard.addresses(parsed.hostname, port)
    except FetchRefused as exc:
        raise BadRequest(f"{what} {url!r} will not be fetched: {exc}") from None
    except (socket.gaierror, UnicodeError):
        pass


def _map_file_objects(obj: Any, fn: Callable[[Dict[str, Any]], None]) -> None:
    """Call `fn` on every CWL File/Directory object inside an input object."""
    if isinstance(obj, dict):
        if obj.get("class") in ("File", "Directory"):
            fn(obj)
        for value in obj.values():
            _map_file_objects(value, fn)
    elif isinstance(obj, list):
        for value in obj:
            _map_file_objects(value, fn)


def resolve_locations(params: Dict[str, Any], base: Path, allowed_dirs: List[str], check_only: bool = False,
                      guard: Optional[FetchGuard] = None) -> Dict[str, Any]:
    """Make relative input locations absolute file:// URIs below `base`; refuse escapes.

    Relative `location`/`path` values resolve against the attachments; server
    paths are refused unless an operator allowed their directory; http(s) ones
    are checked against `guard` when given (`check_remote`); other URL schemes
    are left for the engine.
    """
    roots = [str(base.resolve())] + list(allowed_dirs)

    def fix(obj: Dict[str, Any]) -> None:
        for key in ("location", "path"):
            value = obj.get(key)
            if not isinstance(value, str):
                continue
            parsed = urlparse(value)
            if parsed.scheme and parsed.scheme != "file" and len(parsed.scheme) > 1:
                if guard is not None:
                    check_remote(value, f"input {key}", guard)
                continue
            if parsed.scheme == "file":
                raw = unquote(parsed.path)
            elif key == "location":  # a URI reference: the engine reads "%2e%2e" as ".."
                raw = unquote(value)
            else:
                raw = value
            target = Path(raw) if raw.startswith("/") else base / raw
            if not inside(target, roots):
                raise BadRequest(f"input {key} {value!r} is outside the attachments and not in an allowed directory")
            if not check_only:
                obj[key] = target.resolve().as_uri() if key == "location" else str(target.resolve())

    _map_file_objects(params, fix)
    return params
