"""The server's fetches go nowhere private unless allow-listed: `fetch_guard` on `http.Client` and `download`.

Real HTTP(S) servers on loopback addresses; the resolver is replaced only where a
name must answer differently on a second lookup (DNS rebinding) or name a test
certificate's host, which no real resolver here does.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from wes_arvados.config import load_config
from wes_arvados.download import DownloadError, download
from wes_arvados.errors import ConfigError
from wes_arvados.fetch_guard import FetchGuard, FetchRefused, refusal
from wes_arvados.http import CertificateRejected, Client, read_capped

from .images.test_registry_transport import TLSServer, _certificate
from .threaded import ThreadedServer, redirected


class Recorder(BaseHTTPRequestHandler):
    """Answers its own address as the body; `/to/<url>` redirects there. Every request is recorded."""

    protocol_version = "HTTP/1.1"
    seen: List[str] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            type(self).seen.append(f"{self.server.server_address[0]} {self.path}")
        if redirected(self):
            return
        body = str(self.server.server_address[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def one() -> Iterator[ThreadedServer]:
    """A server on 127.0.0.1."""
    Recorder.seen = []
    with ThreadedServer(Recorder) as running:
        yield running


@pytest.fixture
def two(one: ThreadedServer) -> Iterator[ThreadedServer]:
    """A server on 127.0.0.2, on the same port as `one`."""
    with ThreadedServer(Recorder, port=one.port, address="127.0.0.2") as running:
        yield running


def fetch(url: str, tmp_path: Path, guard: FetchGuard) -> bytes:
    """`download` `url` as the server does; the bytes."""
    dest = tmp_path / "fetched"
    download(url, dest, 1 << 20, 10, f"workflow_url {url!r}", guard)
    return dest.read_bytes()


# ------------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize("address, what", [
    ("127.0.0.1", "a loopback address"), ("::1", "a loopback address"),
    ("10.1.2.3", "a private address (RFC 1918)"), ("172.16.0.1", "a private address (RFC 1918)"),
    ("192.168.1.1", "a private address (RFC 1918)"), ("100.64.0.1", "a carrier-grade NAT address (RFC 6598)"),
    ("0.0.0.0", "a 'this network' address"), ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"), ("fd12:3456::1", "a unique local address (fc00::/7)"),
    ("224.0.0.251", "a multicast address"), ("ff02::1", "a multicast address"), ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"), ("169.254.169.254", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"), ("::ffff:127.0.0.1", "a loopback address"),
    ("64:ff9b::a9fe:a9fe", "a cloud metadata address"), ("2002:7f00:1::", "a loopback address"),
    ("8.8.8.8", None), ("2606:4700:4700::1111", None),
])
def test_loopback_private_link_local_multicast_reserved_and_metadata_addresses_are_refused(
        address: str, what: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == what


def test_an_allow_listed_network_covers_its_addresses_but_never_a_metadata_address() -> None:
    everything = FetchGuard(["0.0.0.0/0", "::/0"])
    assert everything.addresses("127.0.0.1", 80) == ["127.0.0.1"]
    assert everything.addresses("10.0.0.1", 80) == ["10.0.0.1"]
    for metadata in ("169.254.169.254", "fd00:ec2::254"):
        with pytest.raises(FetchRefused, match="cloud metadata address.*only by naming it in the fetch_allow"):
            everything.addresses(metadata, 80)
    with pytest.raises(FetchRefused, match="cloud metadata address"):
        FetchGuard(["169.254.0.0/16"]).addresses("169.254.169.254", 80)
    assert FetchGuard(["169.254.0.0/16"]).addresses("169.254.1.1", 80) == ["169.254.1.1"]
    # Named alone, it is allowed.
    assert FetchGuard(["169.254.169.254"]).addresses("169.254.169.254", 80) == ["169.254.169.254"]
    assert FetchGuard(["169.254.169.254/32"]).addresses("169.254.169.254", 80) == ["169.254.169.254"]


def test_a_metadata_name_is_refused_before_it_is_resolved_unless_named() -> None:
    with pytest.raises(FetchRefused, match="metadata.google.internal is a cloud metadata name"):
        FetchGuard(["0.0.0.0/0"]).addresses("metadata.google.internal", 80)


def test_a_host_entry_allows_that_name_on_its_port_only(one: ThreadedServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{one.port}/x"
    assert fetch(url, tmp_path, FetchGuard([f"127.0.0.1:{one.port}"])) == b"127.0.0.1"
    assert fetch(url, tmp_path, FetchGuard(["127.0.0.1"])) == b"127.0.0.1"
    with pytest.raises(DownloadError, match=f"127.0.0.1:{one.port} is refused"):
        fetch(url, tmp_path, FetchGuard([f"127.0.0.1:{one.port + 1}"]))


@pytest.mark.parametrize("entry", ["not a host", "host:port", "[::1]:70000", "10.0.0.0/33", "[nothost]"])
def test_an_allow_list_entry_that_is_none_of_address_network_or_host_stops_the_start_up(entry: str) -> None:
    with pytest.raises(ConfigError, match="fetch_allow"):
        load_config(environ={"WES_ARVADOS_FETCH_ALLOW": entry})


def test_the_setting_is_read_from_the_environment_and_survives_the_hand_over_to_workers() -> None:
    config = load_config(environ={"WES_ARVADOS_FETCH_ALLOW": "10.0.0.0/8,minio.internal:9000"})
    assert config.fetch_allow == ["10.0.0.0/8", "minio.internal:9000"]
    assert load_config(environ={"WES_ARVADOS_RESOLVED_CONFIG": config.to_json()}).fetch_allow == config.fetch_allow
    assert load_config(environ={}).fetch_allow == []


# ------------------------------------------------------------------------------ fetches, for real


def test_a_loopback_url_is_refused_by_default_and_nothing_is_asked(one: ThreadedServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{one.port}/secret"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, FetchGuard())
    assert str(caught.value) == (
        f"workflow_url {url!r} could not be fetched: 127.0.0.1:{one.port} is refused: 127.0.0.1 is a loopback "
        "address; this server does not fetch from loopback, link-local, private or cloud metadata addresses "
        "(the operator may allow-list it in the fetch_allow setting)")
    assert Recorder.seen == []


def test_a_name_that_resolves_to_loopback_is_refused(one: ThreadedServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"localhost:\d+ is refused: it resolves to (127\.0\.0\.1|::1), a loopback"):
        fetch(f"http://localhost:{one.port}/", tmp_path, FetchGuard())
    assert Recorder.seen == []


def test_each_redirect_is_checked_again(one: ThreadedServer, two: ThreadedServer, tmp_path: Path) -> None:
    guard = FetchGuard([f"127.0.0.1:{one.port}"])
    target = f"http://127.0.0.2:{two.port}/inside"
    with pytest.raises(DownloadError, match=f"127.0.0.2:{two.port} is refused: 127.0.0.2 is a loopback"):
        fetch(f"http://127.0.0.1:{one.port}/to/{target}", tmp_path, guard)
    assert Recorder.seen == [f"127.0.0.1 /to/{target}"]  # the second server was never asked
    # Allowed too, it is followed.
    assert fetch(f"http://127.0.0.1:{one.port}/to/{target}", tmp_path, FetchGuard(["127.0.0.0/8"])) == b"127.0.0.2"


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """A resolver for which rebind.test is 127.0.0.1 once, then 127.0.0.2; the names asked are returned."""
    real = socket.getaddrinfo
    asked: List[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("rebind.test", "registry.example"):
            asked.append(host)
            address = "127.0.0.1" if host != "rebind.test" or asked.count(host) == 1 else "127.0.0.2"
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_address_connected_to_is_the_one_checked(one: ThreadedServer, two: ThreadedServer,
                                                     rebinding: List[str], tmp_path: Path) -> None:
    # 127.0.0.1 is allowed; a second lookup would give 127.0.0.2, which is not.
    assert fetch(f"http://rebind.test:{one.port}/", tmp_path, FetchGuard(["127.0.0.1"])) == b"127.0.0.1"
    assert rebinding == ["rebind.test"]  # resolved once
    assert Recorder.seen == ["127.0.0.1 /"]


def test_a_pinned_https_connection_verifies_the_certificate_for_the_name(rebinding: List[str],
                                                                         tmp_path: Path) -> None:
    ca, cert, key = _certificate(tmp_path)  # for 127.0.0.1 and registry.example
    server = TLSServer(cert, key)
    try:
        client = Client(ca_bundle=str(ca), guard=FetchGuard(["127.0.0.1"]))
        answer = client.request("GET", f"https://registry.example:{server.port}/")
        assert read_capped(answer, 100, "the answer") == b"yes"
        assert rebinding == ["registry.example"]
        # rebind.test also goes to 127.0.0.1, whose address the certificate names: the name must match, not it.
        with pytest.raises(CertificateRejected, match="rebind.test"):
            client.request("GET", f"https://rebind.test:{server.port}/")
    finally:
        server.close()


def test_through_a_proxy_a_refused_address_never_reaches_the_proxy(one: ThreadedServer, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{one.port}")
    with pytest.raises(DownloadError, match="169.254.169.254:80 is refused: 169.254.169.254 is a cloud metadata"):
        fetch("http://169.254.169.254/latest/meta-data/", tmp_path, FetchGuard(["0.0.0.0/0"]))
    assert Recorder.seen == []
    # What is allowed goes through the proxy (which answers for it here).
    assert fetch("http://8.8.8.8/x", tmp_path, FetchGuard()) == b"127.0.0.1"
    assert Recorder.seen == ["127.0.0.1 http://8.8.8.8/x"]


def test_without_a_guard_nothing_is_checked(one: ThreadedServer, tmp_path: Path) -> None:
    dest = tmp_path / "fetched"
    download(f"http://localhost:{one.port}/", dest, 100, 10, "the file")
    assert dest.read_bytes() in (b"127.0.0.1", b"::1") and os.path.getsize(dest) > 0
