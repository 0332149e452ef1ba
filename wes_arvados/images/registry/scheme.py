"""Which URL scheme reaches a registry: https, or http for loopback and insecure registries."""

from __future__ import annotations

import ipaddress
from typing import Iterable


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, with or without a port."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def scheme_for(host: str, insecure: Iterable[str]) -> str:
    """"http" for loopback and operator-listed insecure registries, else "https"."""
    if is_loopback(host) or host in insecure or _hostname(host) in insecure:
        return "http"
    return "https"
