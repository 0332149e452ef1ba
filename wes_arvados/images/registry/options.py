"""Settings of the registry client, shared by every repository it talks to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

from ...fetch_guard import FetchGuard
from ..errors import ImageError
from .credentials import Credentials


def parse_mirrors(values: Iterable[str]) -> Dict[str, List[str]]:
    """``REGISTRY=URL`` strings as a registry → mirror URLs map, in the order given."""
    mirrors: Dict[str, List[str]] = {}
    for value in values:
        registry, sep, url = value.partition("=")
        if not sep or not registry or not url:
            raise ImageError(f"registry mirror {value!r}: expected REGISTRY=URL")
        mirrors.setdefault(registry, []).append(url)
    return mirrors


@dataclass
class RegistryOptions:
    """How to reach registries: transport security, mirrors, credentials, retries."""

    # Registries (host[:port]) reached over plain http; loopback always is.
    insecure_registries: List[str] = field(default_factory=list)
    # CA bundle for https (a file path); None uses the system's.
    ca_bundle: Optional[str] = None
    # Registry host → base URLs of mirrors tried in order before it, e.g.
    # {"docker.io": ["http://127.0.0.1:5000"]}. A mirror that cannot be reached, or
    # still answers 5xx after the retries, is skipped for the rest of that Repository.
    mirrors: Dict[str, List[str]] = field(default_factory=dict)
    credentials: Credentials = field(default_factory=Credentials)
    # Attempts for one request on 429, 5xx and connection errors.
    max_attempts: int = 5
    # First backoff in seconds, doubled at each attempt (Retry-After wins when given).
    backoff: float = 0.5
    # Longest wait we accept from a Retry-After header before giving up.
    max_retry_after: float = 60.0
    # Times a broken blob download is resumed with a Range request.
    max_resumes: int = 5
    timeout: float = 60.0
    user_agent: str = "wes-arvados"
    # The server's: every host but the registries' own endpoints (token realms, redirects) is checked by it.
    # None (the pull command on a user's machine): nothing is checked.
    fetch_guard: Optional[FetchGuard] = None
