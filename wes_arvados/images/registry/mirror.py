"""The endpoints a repository is read from: mirrors in order, the registry itself last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List
from urllib.parse import urlsplit

from .credentials import canonical_registry
from .options import RegistryOptions
from .scheme import scheme_for


@dataclass(frozen=True)
class Endpoint:
    """A base URL serving /v2/ and the host[:port] it names in messages (never with user info)."""

    base_url: str
    host: str
    is_mirror: bool


def mirror_endpoint(url: str, insecure: List[str]) -> Endpoint:
    """An endpoint for a mirror given as a URL, or as a bare host[:port] (scheme as for a registry)."""
    if "://" not in url:
        url = f"{scheme_for(url.split('/', 1)[0], insecure)}://{url}"
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path.rstrip("/")
    # Docker's registry-mirrors are base URLs; tolerate ones written with the /v2 API prefix.
    if path.endswith("/v2"):
        path = path[:-3]
    return Endpoint(f"{parts.scheme}://{parts.netloc}{path}", host, True)


def endpoints(registry: str, connect_host: str, options: RegistryOptions) -> List[Endpoint]:
    """Mirrors configured for `registry` (keys as config.json spells them: docker.io, index.docker.io…),
    then `connect_host` itself."""
    wanted = canonical_registry(registry)
    found = [mirror_endpoint(url, options.insecure_registries)
             for key, urls in options.mirrors.items() if canonical_registry(key) == wanted for url in urls]
    scheme = scheme_for(connect_host, options.insecure_registries)
    found.append(Endpoint(f"{scheme}://{connect_host}", connect_host, False))
    return found
