"""Which proxy the environment gives for a URL, as Go's ``http.ProxyFromEnvironment`` reads it.

HTTP(S)_PROXY, then ALL_PROXY (as curl reads it); NO_PROXY entries are "*", a name
and its subdomains, an IP or a CIDR, each optionally with a port; loopback is
never proxied. Also the host helpers the registry's scheme rules share with it.
"""

from __future__ import annotations

import ipaddress
import os
from typing import List, Optional
from urllib.parse import urlsplit


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
    """Whether an IP host falls in a CIDR entry ("10.0.0.0/8"), as NO_PROXY and insecure registries allow."""
    if "/" not in entry:
        return False
    try:
        return ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def _same_address(name: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(entry)
    except ValueError:
        return False


def _no_proxy_matches(host: str, port: int, entries: List[str]) -> bool:
    """Whether NO_PROXY excludes `host`: "*", a name and its subdomains, an IP, a CIDR, optionally with :port."""
    name = host.lower().rstrip(".")
    for entry in entries:
        if entry == "*":
            return True
        entry_host = hostname(entry)
        rest = entry.rpartition("]")[2] if entry.startswith("[") else entry[len(entry_host):]  # "" or ":port"
        if rest[1:].isdigit() and int(rest[1:]) != port:
            continue
        if in_network(name, entry_host) or _same_address(name, entry_host):
            return True
        entry_host = entry_host.lower().lstrip("*").lstrip(".")
        if entry_host and (name == entry_host or name.endswith("." + entry_host)):
            return True
    return False


def _env(name: str) -> str:
    # Go reads the upper-case name first, then the lower-case one.
    return os.environ.get(name.upper()) or os.environ.get(name.lower()) or ""


def proxy_for(url: str) -> Optional[str]:
    """The proxy URL the environment gives for `url`, or None (always None for loopback)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    proxy = _env(f"{parts.scheme}_proxy") or _env("all_proxy")
    if not proxy:
        return None
    no_proxy = [entry.strip() for entry in _env("no_proxy").split(",") if entry.strip()]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if no_proxy and _no_proxy_matches(host, port, no_proxy):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
