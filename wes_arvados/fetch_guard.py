"""Where the server may fetch from: public addresses, and what its operator allow-lists (``fetch_allow``).

The server fetches URLs that others chose: a run's http(s) ``workflow_url`` and
``dockerLoad`` archives, a registry's token realm and its redirects. Such a URL
must not reach the server's own host, its private network or the cloud's
metadata service, whose answers the server would then report or use. A
`FetchGuard` refuses loopback, link-local, private (RFC 1918, ULA, CGNAT),
multicast, reserved and the like, and the cloud metadata addresses and names,
unless an allow-list entry covers them:

- a network or an address (``10.0.0.0/8``, ``127.0.0.1``, ``fd00::/8``): the
  addresses in it, on any port;
- a host, with or without a port (``minio.internal``, ``127.0.0.1:8000``,
  ``[::1]:8080``): that name as a URL writes it, whatever it resolves to.

A cloud metadata address (169.254.169.254, fd00:ec2::254…) is allowed only by an
entry that names it alone (``169.254.169.254`` or ``/32``, or a host entry), never
by a wider network such as ``169.254.0.0/16`` or ``0.0.0.0/0``; a metadata name
(``metadata.google.internal``) only by a host entry naming it.

`addresses` resolves a name once and checks every address; `wes_arvados.http`
connects to one of those addresses and never asks the resolver again (no DNS
rebinding between check and connect), keeping the name for the Host header, SNI
and certificate verification. A registry that an image reference names (or an
operator's mirror) is the image policy's to allow: a registry session `trust`s
its endpoints (private ones too, but never a metadata address unless named), and
everything else it is sent to is checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from typing import Any, Iterable, List, Optional, Set, Tuple, Union

from urllib3.util.connection import allowed_gai_family

from .http import FetchRefused

__all__ = ["FetchGuard", "FetchRefused", "METADATA_ADDRESSES", "METADATA_NAMES", "refusal"]

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

SETTING = "fetch_allow"
METADATA = "a cloud metadata address"
# Instance metadata services: AWS, GCP, Azure, OpenStack, Oracle (IMDS), AWS ECS and EKS Pod Identity, Alibaba.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "fd00:ec2::23", "100.100.100.200"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal"})

# Refused unless allow-listed, each with what it is. Anything else that is not global is refused too.
_REFUSED: List[Tuple[Network, str]] = [(ipaddress.ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "a 'this network' address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol address (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol address (RFC 6890)"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique local address (fc00::/7)"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


def _name(host: str) -> str:
    """A host as entries and URLs are compared: lower case, no brackets, no trailing dot."""
    return host.strip("[]").rstrip(".").lower()


def _parse_entry(entry: str) -> Union[Network, Tuple[str, Optional[int]]]:
    """An allow-list entry as a network, or as (host, port or None); `ValueError` saying what is wrong."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host, port = text, None
    bracketed = re.match(r"^\[([^\]]+)\](?::(\d+))?$", text)
    if bracketed:
        host, port = bracketed.group(1), int(bracketed.group(2)) if bracketed.group(2) else None
        ipaddress.ip_address(host.split("%")[0])  # a bracketed host is an IPv6 address
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit():
            raise ValueError(f"{entry!r}: the port must be a number")
        port = int(number)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{entry!r}: port {port} is out of range")
    if not bracketed and not _HOST.match(_name(host)):
        raise ValueError(f"{entry!r} is neither an address, a network (CIDR) nor a host[:port]")
    return _name(host), port


def _literal(host: str) -> Optional[Address]:
    """The address a host is written as, if it is one."""
    try:
        return ipaddress.ip_address(_name(host))
    except ValueError:
        return None


def _embedded(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries to (IPv4-mapped, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def refusal(address: Address) -> Optional[str]:
    """What `address` is, when it is one the server does not fetch from unless allow-listed; None if public."""
    effective = _embedded(address)
    if address in METADATA_ADDRESSES or effective in METADATA_ADDRESSES:
        return METADATA
    for network, why in _REFUSED:
        if effective.version == network.version and effective in network:
            return why
    if not effective.is_global or effective.is_multicast:
        return "not a public address"
    return None


class FetchGuard:
    """Checks the hosts the server is sent to against the refused ranges and the operator's allow-list.

    Thread-safe. `trusting` gives a copy whose `trust`ed endpoints (a registry
    session's own) may be private, though not metadata addresses.
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = [str(entry) for entry in allow]
        self._networks: List[Network] = []
        self._hosts: Set[Tuple[str, Optional[int]]] = set()
        for entry in self.allow:
            parsed = _parse_entry(entry)
            if isinstance(parsed, tuple):
                self._hosts.add(parsed)
            else:
                self._networks.append(parsed)
        self._trusted: Set[Tuple[str, int]] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FetchGuard(allow={self.allow!r})"

    def trusting(self) -> "FetchGuard":
        """A copy of this guard with a set of trusted endpoints of its own (empty)."""
        return FetchGuard(self.allow)

    def trust(self, host: str, port: int) -> None:
        """Let `host`:`port` be private: an endpoint another policy governs (a registry, a mirror)."""
        with self._lock:
            self._trusted.add((_name(host), port))

    def _named(self, host: str, port: int) -> bool:
        """Whether a host entry names `host` (on `port`)."""
        return (host, None) in self._hosts or (host, port) in self._hosts

    def _is_trusted(self, host: str, port: int) -> bool:
        with self._lock:
            return (host, port) in self._trusted

    def _allowed(self, address: Address) -> bool:
        """Whether an allow-listed network covers `address`; a metadata address only when named alone."""
        forms = {address, _embedded(address)}
        if forms & METADATA_ADDRESSES:
            return any(net.num_addresses == 1 and net.network_address in forms for net in self._networks)
        return any(form.version == net.version and form in net for net in self._networks for form in forms)

    def check_address(self, address: Address, host: str, port: int, metadata_only: bool = False) -> None:
        """`FetchRefused` if `address` (what `host` resolved to) is refused and not allow-listed.

        `metadata_only`: only a cloud metadata address is refused (a trusted endpoint's).
        """
        why = refusal(address)
        if why is None or (metadata_only and why != METADATA) or self._allowed(address):
            return
        said = f"{address} is {why}" if _literal(host) == address else f"it resolves to {address}, {why}"
        raise FetchRefused(self._message(host, port, said, metadata=why == METADATA))

    def _message(self, host: str, port: int, said: str, metadata: bool = False) -> str:
        where = f"[{host}]" if ":" in host else host
        allow = ("the operator may allow it only by naming it in " if metadata
                 else "the operator may allow-list it in ")
        return (f"{where}:{port} is refused: {said}; this server does not fetch from loopback, link-local, "
                f"private or cloud metadata addresses ({allow}the {SETTING} setting)")

    def addresses(self, host: str, port: int) -> List[str]:
        """The addresses to connect to for `host`:`port`: resolved once, every one checked.

        `FetchRefused` if the host is a metadata name or any of its addresses is
        refused (a name with one private address among public ones is refused);
        `socket.gaierror` if it does not resolve. A `trust`ed endpoint may be
        private, but not a metadata address or name unless an entry names it.
        """
        name = _name(host)
        self._check_name(name, port)
        found: List[str] = []
        for _family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(name, port, allowed_gai_family(),
                                                                           socket.SOCK_STREAM):
            address = str(sockaddr[0])
            if address not in found:
                found.append(address)
        self._check_found(name, port, found)
        return found

    def _check_name(self, name: str, port: int) -> None:
        """`FetchRefused` for a cloud metadata name that no entry names."""
        if name in METADATA_NAMES and not self._named(name, port):
            raise FetchRefused(self._message(name, port, f"{name} is a cloud metadata name", metadata=True))

    def _check_found(self, name: str, port: int, found: Iterable[str]) -> None:
        """`FetchRefused` unless every address `name` resolved to may be fetched from."""
        if self._named(name, port):
            return
        trusted = self._is_trusted(name, port)
        for address in found:
            self.check_address(ipaddress.ip_address(address), name, port, metadata_only=trusted)

    def guard_resolution(self) -> None:
        """Check every name this process resolves from now on, as `addresses` does, the process being one that fetches
        what its users name through code that is not ours (the local runner: cwltool reads a run's remote documents
        and inputs, and follows their redirects).

        Each answer is checked before it is used to connect, so a name cannot
        rebind between check and connect. A refusal is a `socket.gaierror`
        carrying the reason, which HTTP libraries report as a failed connection.
        """
        resolve = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host is None:  # a listening socket's wildcard
                return resolve(host, port, *args, **kwargs)
            name = _name(host.decode("idna") if isinstance(host, bytes) else str(host))
            number = int(port) if str(port).isdigit() else 0
            try:
                self._check_name(name, number)
                answers = resolve(host, port, *args, **kwargs)
                self._check_found(name, number, {str(answer[4][0]) for answer in answers})
            except FetchRefused as exc:
                raise socket.gaierror(socket.EAI_FAIL, str(exc)) from None
            return answers

        socket.getaddrinfo = getaddrinfo

    def check_proxied(self, host: str, port: int) -> None:
        """Check a host that a proxy will resolve and connect to: nothing can be pinned here.

        An address, a metadata name, or a name that resolves here is checked as
        `addresses` checks it; a name that does not resolve here is left to the
        proxy (an operator's, and often the only resolver of outside names).
        """
        try:
            self.addresses(host, port)
        except socket.gaierror:
            pass
