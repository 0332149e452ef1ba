"""Which URL scheme reaches a registry: https, or http for loopback and insecure registries."""

from __future__ import annotations

import ipaddress
from typing import Iterable


def hostname(host: str) -> str:
    """The host name or IP of a `host[:port]` ("[::1]:5000" → "::1")."""
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, with or without a port."""
    name = hostname(host).lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def in_network(name: str, entry: str) -> bool:
    """Whether an IP host falls in a CIDR entry ("10.0.0.0/8"), as insecure registries and NO_PROXY allow."""
    if "/" not in entry:
        return False
    try:
        return ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def scheme_for(host: str, insecure: Iterable[str]) -> str:
    """"http" for loopback and operator-listed insecure registries (host, host:port or CIDR), else "https"."""
    name = hostname(host)
    if is_loopback(host) or any(entry in (host, name) or in_network(name, entry) for entry in insecure):
        return "http"
    return "https"
