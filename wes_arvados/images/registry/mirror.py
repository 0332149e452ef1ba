"""The endpoints a repository is read from: mirrors in order, the registry itself last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .options import RegistryOptions
from .scheme import scheme_for


@dataclass(frozen=True)
class Endpoint:
    """A base URL serving /v2/ and the registry host it stands for."""

    base_url: str
    host: str
    is_mirror: bool


def endpoints(registry: str, connect_host: str, options: RegistryOptions) -> List[Endpoint]:
    """Mirrors configured for `registry`, then `connect_host` itself."""
    found = [
        Endpoint(url.rstrip("/"), url.split("://", 1)[-1].split("/", 1)[0], True)
        for url in options.mirrors.get(registry, [])
    ]
    scheme = scheme_for(connect_host, options.insecure_registries)
    found.append(Endpoint(f"{scheme}://{connect_host}", connect_host, False))
    return found
