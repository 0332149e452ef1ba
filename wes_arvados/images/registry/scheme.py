"""Which URL scheme reaches a registry: https, or http for loopback and insecure registries."""

from __future__ import annotations

from typing import Iterable

from ...proxies import hostname, in_network, is_loopback

__all__ = ["hostname", "in_network", "is_loopback", "scheme_for"]


def scheme_for(host: str, insecure: Iterable[str]) -> str:
    """"http" for loopback and operator-listed insecure registries (host, host:port or CIDR), else "https"."""
    name = hostname(host)
    if is_loopback(host) or any(entry in (host, name) or in_network(name, entry) for entry in insecure):
        return "http"
    return "https"
