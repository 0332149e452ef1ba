"""How the registry client reaches registries: http or https, CA bundles, HTTP(S) proxies, and mirrors.

Nothing here leaves the machine: "remote" registries are names that a recording
forward proxy on loopback maps to a loopback registry, and Docker Hub is only ever
configured behind mirrors that answer (a CONNECT to the proxy would show otherwise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator, List, Mapping, Tuple
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wes_arvados.images.errors import NotFoundError, RegistryError
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry import RegistryOptions, Repository
from wes_arvados.images.registry.credentials import AuthConfig, Credentials
from wes_arvados.images.registry.mirror import endpoints, mirror_endpoint
from wes_arvados.images.registry.retry import with_retries
from wes_arvados.images.registry.scheme import is_loopback, scheme_for
from wes_arvados.images.registry.session import (
    CertificateRejected,
    make_session,
    proxy_for,
)

from ..threaded import ThreadedServer
from ..wes import free_port
from .builder import Image, push
from .registry import FaultProxy, Registry, Status
from .test_registry_auth import contents, pull
from .test_registry_blobs import StaticRegistry

FAST = RegistryOptions(backoff=0.01, max_attempts=3)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# A registry name that only the test proxy resolves; the test certificate is also issued to it.
TLS_NAME = "registry.example"
# An address of the documentation range: reachable here only through the test proxy.
TLS_IPV6 = "2001:db8::5"


# ------------------------------------------------------------------------------------ scheme


@pytest.mark.parametrize("host,insecure,scheme", [
    ("127.0.0.1:5000", [], "http"),
    ("127.0.0.2", [], "http"),
    ("localhost", [], "http"),
    ("localhost:5000", [], "http"),
    ("[::1]:5000", [], "http"),
    ("::1", [], "http"),
    ("registry.example", [], "https"),
    ("registry.example:5000", [], "https"),
    ("localhost.example.com:5000", [], "https"),
    ("registry-1.docker.io", [], "https"),
    ("registry.example:5000", ["registry.example:5000"], "http"),
    ("registry.example:5000", ["registry.example"], "http"),
    ("registry.example:5000", ["registry.example:6000"], "https"),
    ("10.1.2.3:5000", ["10.0.0.0/8"], "http"),
    ("[fd00::1]:5000", ["fd00::/8"], "http"),
    ("192.168.1.1", ["10.0.0.0/8"], "https"),
])
def test_loopback_and_insecure_registries_use_http_others_https(host: str, insecure: List[str],
                                                                scheme: str) -> None:
    assert scheme_for(host, insecure) == scheme


def test_a_reference_to_an_ipv6_loopback_registry_is_reached_over_http() -> None:
    repository = Repository(parse_normalized_named("[::1]:5000/test/x:v1"))
    assert [e.base_url for e in repository.endpoints] == ["http://[::1]:5000"]
    assert is_loopback("[::1]:5000") and not is_loopback("[fd00::1]:5000")


# ----------------------------------------------------------------------------------- session


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy variables (tests then set what they need)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_proxies_come_from_the_environment_and_never_serve_loopback(no_proxy_environment: pytest.MonkeyPatch) -> None:
    env = no_proxy_environment
    env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    env.setenv("HTTP_PROXY", "plain.example:8080")  # no scheme: http, as Go and curl read it
    assert proxy_for("https://registry.example/v2/") == "http://proxy.example:3128"
    assert proxy_for("http://registry.example:5000/v2/") == "http://plain.example:8080"
    for url in ("http://127.0.0.1:5000/v2/", "http://localhost:5000/v2/", "http://[::1]:5000/v2/",
                "https://registry.localhost/v2/"):
        assert proxy_for(url) is None
    env.setenv("https_proxy", "http://lower.example:3128")
    assert proxy_for("https://registry.example/v2/") == "http://proxy.example:3128"  # Go reads the upper case first
    env.delenv("HTTPS_PROXY")
    env.delenv("HTTP_PROXY")
    env.delenv("https_proxy")
    assert proxy_for("https://registry.example/v2/") is None
    env.setenv("ALL_PROXY", "http://all.example:1080")
    assert proxy_for("https://registry.example/v2/") == "http://all.example:1080"


@pytest.mark.parametrize("no_proxy,url,bypassed", [
    ("registry.example", "https://registry.example/v2/", True),
    ("registry.example", "https://eu.registry.example/v2/", True),
    ("registry.example", "https://myregistry.example/v2/", False),
    (".example", "https://registry.example/v2/", True),
    ("*.example", "https://registry.example/v2/", True),
    ("other.example, registry.example", "https://registry.example/v2/", True),
    ("registry.example:5000", "https://registry.example:5000/v2/", True),
    ("registry.example:5000", "https://registry.example/v2/", False),
    ("10.0.0.0/8", "https://10.1.2.3/v2/", True),
    ("10.0.0.0/8", "https://192.168.1.1/v2/", False),
    ("192.168.1.1", "https://192.168.1.1:5000/v2/", True),
    ("[fd00::1]:5000", "https://[fd00::1]:5000/v2/", True),
    ("*", "https://anything.example/v2/", True),
])
def test_no_proxy_excludes_names_subdomains_addresses_networks_and_ports(
        no_proxy_environment: pytest.MonkeyPatch, no_proxy: str, url: str, bypassed: bool) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    no_proxy_environment.setenv("NO_PROXY", no_proxy)
    assert (proxy_for(url) is None) == bypassed


def _certificate(tmp_path: Path) -> Tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1, TLS_IPV6 and TLS_NAME: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)

    def build(subject: str, issuer: x509.Name, public_key, signing_key, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                             x509.IPAddress(ipaddress.ip_address(TLS_IPV6)),
                                             x509.DNSName(TLS_NAME)]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wes-arvados test CA")])
    ca = build("wes-arvados test CA", ca_name, ca_key.public_key(), ca_key, True)
    server = build("127.0.0.1", ca_name, server_key.public_key(), ca_key, False)
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


def test_an_https_mirror_is_trusted_through_the_ca_bundle(tmp_path: Path, small: Image,
                                                          no_proxy_environment: pytest.MonkeyPatch) -> None:
    ca, cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream = f"127.0.0.1:{free_port()}"  # nothing listens there
    with StaticRegistry.of("test/tls", small) as static:
        static._httpd.socket = context.wrap_socket(static._httpd.socket, server_side=True)
        options = replace(FAST, mirrors={upstream: [f"https://{static.host}"]})
        reference = parse_normalized_named(f"{upstream}/test/tls:v1")
        assert pull(Repository(reference, replace(options, ca_bundle=str(ca)))) == contents(small)
        with pytest.raises(RegistryError) as caught:
            Repository(reference, options).get_manifest("v1")  # the system CAs do not know ours
    assert upstream in str(caught.value)


def _self_signed(tmp_path: Path) -> Tuple[Path, Path]:
    """A certificate signed by its own key, for 127.0.0.1 and TLS_NAME: (server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                               x509.DNSName(TLS_NAME)]), critical=False)
                   .sign(key, hashes.SHA256()))
    paths = tmp_path / "self-signed.pem", tmp_path / "self-signed.key"
    paths[0].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TLSServer:
    """Answers "yes" over TLS on loopback with the given certificate, counting the connections it accepts."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")
            except OSError:
                pass  # the client refused the certificate

    def close(self) -> None:
        """Stop listening."""
        self.listener.close()


def test_an_https_request_is_verified_with_the_ca_bundle(tmp_path: Path) -> None:
    ca, cert, key = _certificate(tmp_path)
    server = TLSServer(cert, key)
    try:
        url = f"https://127.0.0.1:{server.port}/v2/"
        assert make_session(RegistryOptions(ca_bundle=str(ca))).get(url).read_capped(100, "the answer") == b"yes"
        with pytest.raises(CertificateRejected, match="unable to get local issuer certificate"):
            make_session(RegistryOptions()).get(url)  # the system CAs do not know ours
    finally:
        server.close()


def test_a_self_signed_certificate_is_refused_at_once_naming_the_host_and_the_reason(tmp_path: Path) -> None:
    server = TLSServer(*_self_signed(tmp_path))
    session = make_session(RegistryOptions())
    slept: List[float] = []
    try:
        with pytest.raises(CertificateRejected) as caught:
            with_retries(lambda: session.get(f"https://127.0.0.1:{server.port}/v2/"), RegistryOptions(), "test",
                         sleep=slept.append)
    finally:
        server.close()
    assert str(caught.value) == f"127.0.0.1:{server.port}: TLS certificate verify failed: self-signed certificate"
    assert not caught.value.retryable and slept == [] and server.connections == 1


@contextlib.contextmanager
def _tls_registry_behind_a_proxy(cert: Path, key: Path, image: Image, env: pytest.MonkeyPatch
                                 ) -> Iterator[Tuple["StaticRegistry", "ForwardProxy"]]:
    """A registry serving `image` over TLS with `cert`, reached as TLS_NAME through a CONNECT proxy."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with StaticRegistry.of("test/tls", image) as static:
        static._httpd.socket = context.wrap_socket(static._httpd.socket, server_side=True)
        with ForwardProxy({f"{TLS_NAME}:443": f"https://{static.host}"}) as proxy:
            _use_proxy(env, proxy.url)
            yield static, proxy


def test_a_registry_with_a_self_signed_certificate_fails_in_under_a_second_without_retrying(
        tmp_path: Path, small: Image, no_proxy_environment: pytest.MonkeyPatch) -> None:
    # Reached through a CONNECT tunnel, as https is: loopback registries are always plain http.
    with _tls_registry_behind_a_proxy(*_self_signed(tmp_path), small, no_proxy_environment) as (static, proxy):
        started = time.monotonic()
        with pytest.raises(RegistryError) as caught:  # with the default backoff: 7.5 s if it were retried
            Repository(parse_normalized_named(f"{TLS_NAME}/test/tls:v1"), RegistryOptions()).get_manifest("v1")
        elapsed = time.monotonic() - started
    assert elapsed < 1
    assert proxy.requests == [("CONNECT", f"{TLS_NAME}:443")] and static.requests == []  # one try, no request
    message = str(caught.value)
    assert message.startswith(f"registry {TLS_NAME} failed for image {TLS_NAME}/test/tls:v1: manifest v1: ")
    assert message.endswith(f"{TLS_NAME}: TLS certificate verify failed: self-signed certificate")


# ------------------------------------------------------------------------------------ proxies


class ForwardProxy(ThreadedServer):
    """An HTTP forward proxy on loopback that records what it is asked and serves `routes`.

    `routes` maps a host[:port] clients ask for to the base URL of a loopback server that
    answers for it. CONNECT (https through the proxy) is recorded, and tunnelled to the
    route's host and port when there is one, else refused.
    """

    def __init__(self, routes: Mapping[str, str]) -> None:
        self.routes = dict(routes)
        self.requests: List[Tuple[str, str]] = []
        super().__init__(_proxy_handler(self))

    @property
    def url(self) -> str:
        """The proxy URL to put in HTTP_PROXY."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"



def _proxy_handler(proxy: ForwardProxy) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _refuse(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_CONNECT(self) -> None:
            proxy.requests.append(("CONNECT", self.path))
            self.close_connection = True
            target = proxy.routes.get(self.path)
            if target is None:
                return self._refuse(403)
            upstream = socket.create_connection((urlsplit(target).hostname, urlsplit(target).port))
            self.send_response(200)
            self.end_headers()
            self.wfile.flush()
            _pipe(self.connection, upstream)

        def _forward(self) -> None:
            proxy.requests.append((self.command, self.path))
            url = urlsplit(self.path)
            target = proxy.routes.get(url.netloc)
            if target is None:
                return self._refuse(502)
            upstream = urlsplit(target)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            conn.request(self.command, url.path + (f"?{url.query}" if url.query else ""), headers=headers)
            response = conn.getresponse()
            body = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            conn.close()

        do_GET = do_HEAD = _forward

    return Handler


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    def copy(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    other = threading.Thread(target=copy, args=(upstream, client), daemon=True)
    other.start()
    copy(client, upstream)
    other.join(10)
    upstream.close()


def _use_proxy(env: pytest.MonkeyPatch, url: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        env.setenv(name, url)
        env.setenv(name.lower(), url)


def test_a_remote_registry_is_reached_through_http_proxy(registry: Registry, repo: str, small: Image,
                                                         no_proxy_environment: pytest.MonkeyPatch) -> None:
    push(registry, repo, "v1", small)  # before HTTP_PROXY is set: the test helpers do not bypass loopback
    remote = "registry.example:5000"
    with ForwardProxy({remote: registry.url}) as proxy:
        _use_proxy(no_proxy_environment, proxy.url)
        options = replace(FAST, insecure_registries=[remote])
        assert pull(Repository(parse_normalized_named(f"{remote}/{repo}:v1"), options)) == contents(small)
        # Loopback registries are reached directly even so.
        assert pull(Repository(parse_normalized_named(f"{registry.host}/{repo}:v1"), options)) == contents(small)
    # The API check, the manifest and the blobs, all through the proxy.
    assert proxy.requests[0] == ("GET", f"http://{remote}/v2/") and len(proxy.requests) == 2 + len(small.blobs())
    assert all(target.startswith(f"http://{remote}/v2/{repo}/") for _, target in proxy.requests[1:])


def test_an_https_registry_is_reached_through_a_connect_tunnel_and_verified(
        tmp_path: Path, small: Image, no_proxy_environment: pytest.MonkeyPatch) -> None:
    ca, cert, key = _certificate(tmp_path)
    with _tls_registry_behind_a_proxy(cert, key, small, no_proxy_environment) as (static, proxy):
        reference = parse_normalized_named(f"{TLS_NAME}/test/tls:v1")
        assert pull(Repository(reference, replace(FAST, ca_bundle=str(ca)))) == contents(small)
        tunnels = len(proxy.requests)
        with pytest.raises(RegistryError) as caught:  # the system CAs do not know ours
            Repository(reference, FAST).get_manifest("v1")
    assert tunnels >= 1 and set(proxy.requests) == {("CONNECT", f"{TLS_NAME}:443")}
    assert f"{TLS_NAME}: TLS certificate verify failed: unable to get local issuer certificate" in str(caught.value)
    # Every request went through a tunnel, none to the proxy in the clear.
    assert static.requests[0][:2] == ("GET", "/v2/")
    assert all(method == "GET" and "/v2/test/tls/" in path for method, path, _ in static.requests[1:])


def test_an_ipv6_registry_is_tunnelled_with_its_brackets_and_a_refusal_says_what_the_proxy_answered(
        tmp_path: Path, small: Image, no_proxy_environment: pytest.MonkeyPatch) -> None:
    # Python 3.11's http.client tunnel either checks the certificate against "[2001:db8::5]" or asks
    # for "CONNECT 2001:db8::5:443"; a refusal (403 here, 407 for missing credentials) is not retried.
    ca, cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    authority, unrouted = f"[{TLS_IPV6}]:443", "[2001:db8::6]:443"
    with StaticRegistry.of("test/tls", small) as static:
        static._httpd.socket = context.wrap_socket(static._httpd.socket, server_side=True)
        with ForwardProxy({authority: f"https://{static.host}"}) as proxy:
            _use_proxy(no_proxy_environment, proxy.url)
            options = replace(FAST, ca_bundle=str(ca))
            assert pull(Repository(parse_normalized_named(f"[{TLS_IPV6}]/test/tls:v1"), options)) == contents(small)
            with pytest.raises(RegistryError) as refused:  # the test proxy refuses what it has no route for
                Repository(parse_normalized_named("[2001:db8::6]/test/tls:v1"), options).get_manifest("v1")
    assert set(proxy.requests) == {("CONNECT", authority), ("CONNECT", unrouted)}
    assert proxy.requests.count(("CONNECT", unrouted)) == 1
    assert f"refused a tunnel to {unrouted}: 403 Forbidden" in str(refused.value)
    # Inside the tunnel, the Host header keeps the brackets too.
    assert {headers.get("Host") for _, _, headers in static.requests} == {f"[{TLS_IPV6}]"}


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "ALL_PROXY"])
def test_a_proxy_that_is_not_http_is_refused_by_name_without_its_credentials(
        variable: str, no_proxy_environment: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    no_proxy_environment.setenv(variable, "socks5://reader:s3cret@127.0.0.1:1080")
    with caplog.at_level(logging.INFO), pytest.raises(RegistryError) as caught:
        Repository(parse_normalized_named(f"{TLS_NAME}/test/x:v1"), FAST).get_manifest("v1")
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # a setting: sending again cannot help
    message = str(caught.value)
    assert "the proxy socks5://127.0.0.1:1080" in message and "only http:// proxies" in message
    assert "s3cret" not in message and "reader" not in message


# ------------------------------------------------------------------------------------ mirrors


def test_mirror_keys_and_urls_are_read_as_docker_writes_them() -> None:
    options = RegistryOptions(mirrors={"index.docker.io": ["127.0.0.1:5000", "https://user:pw@mirror.example/v2/"]})
    found = endpoints("docker.io", "registry-1.docker.io", options)
    assert [(e.base_url, e.host, e.is_mirror) for e in found] == [
        ("http://127.0.0.1:5000", "127.0.0.1:5000", True),
        ("https://user:pw@mirror.example", "mirror.example", True),
        ("https://registry-1.docker.io", "registry-1.docker.io", False)]
    assert mirror_endpoint("mirror.example:5000", ["mirror.example:5000"]).base_url == "http://mirror.example:5000"
    assert endpoints("quay.io", "quay.io", options) == [found[-1].__class__("https://quay.io", "quay.io", False)]


def _library_name(repo: str) -> str:
    return "library/" + repo.split("/", 1)[1]


def test_docker_hub_images_come_from_the_first_mirror_that_answers(registry: Registry, repo: str, small: Image,
                                                                   no_proxy_environment: pytest.MonkeyPatch) -> None:
    name = _library_name(repo)
    push(registry, name, "1", small)
    dead = f"http://127.0.0.1:{free_port()}"
    options = replace(FAST, mirrors={"docker.io": [dead, registry.url]})
    repository = Repository(parse_normalized_named(f"{name.split('/', 1)[1]}:1"), options)
    assert repository.reference.registry == "docker.io" and repository.endpoints[-1].host == "registry-1.docker.io"
    with ForwardProxy({}) as hub_guard:  # Docker Hub made unreachable: any CONNECT is recorded and refused
        _use_proxy(no_proxy_environment, hub_guard.url)
        assert pull(repository) == contents(small)
    assert hub_guard.requests == []


def test_a_mirror_is_authenticated_with_its_own_credentials(basic_registry: Registry, repo: str, small: Image,
                                                            no_proxy_environment: pytest.MonkeyPatch) -> None:
    name = _library_name(repo)
    push(basic_registry, name, "1", small)
    credentials = Credentials({basic_registry.host: AuthConfig("reader", "bookworm")})
    options = replace(FAST, mirrors={"docker.io": [basic_registry.url]}, credentials=credentials)
    with ForwardProxy({}) as hub_guard:
        _use_proxy(no_proxy_environment, hub_guard.url)
        assert pull(Repository(parse_normalized_named(f"docker.io/{name}:1"), options)) == contents(small)
    assert hub_guard.requests == []


def test_failing_mirrors_fall_through_to_the_registry(registry: Registry, repo: str, small: Image,
                                                      no_proxy_environment: pytest.MonkeyPatch) -> None:
    push(registry, repo, "v1", small)
    with FaultProxy(registry) as unavailable, FaultProxy(registry) as missing, FaultProxy(registry) as broken:
        unavailable.add_rule("", Status(503), times=None)
        missing.add_rule("", Status(404), times=None)
        broken.add_rule("", Status(500), times=None)
        dead = f"http://127.0.0.1:{free_port()}"
        mirrors = [dead, unavailable.url, missing.url, broken.url]
        options = replace(FAST, mirrors={registry.host: mirrors})
        assert pull(Repository(parse_normalized_named(f"{registry.host}/{repo}:v1"), options)) == contents(small)
    # Each mirror fails its API check (GET /v2/): a 5xx after the retries, a 404 at once (not a registry);
    # either way it is left alone for the rest of the pull.
    assert unavailable.count() == broken.count() == FAST.max_attempts
    assert missing.count() == 1
    assert [r.target for r in unavailable.requests] == ["/v2/"] * FAST.max_attempts


def test_a_server_that_is_not_a_registry_is_told_apart_by_its_api_check(
        no_proxy_environment: pytest.MonkeyPatch) -> None:
    class NotARegistry(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b"<html><body>Welcome to our web site</body></html>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with ThreadedServer(NotARegistry) as web:
        with pytest.raises(NotFoundError) as caught:
            Repository(parse_normalized_named(f"127.0.0.1:{web.port}/x/img:1"), FAST).get_manifest("1")
    assert caught.value.status == 404
    assert "the registry API check (GET /v2/)" in str(caught.value) and f"127.0.0.1:{web.port}" in str(caught.value)


def test_when_every_endpoint_fails_the_error_is_the_registrys(registry: Registry, repo: str,
                                                              no_proxy_environment: pytest.MonkeyPatch) -> None:
    with FaultProxy(registry) as missing:
        missing.add_rule("", Status(404), times=None)
        options = replace(FAST, mirrors={registry.host: [missing.url]})
        with pytest.raises(RegistryError) as caught:
            Repository(parse_normalized_named(f"{registry.host}/{repo}:v1"), options).get_manifest("v1")
    assert caught.value.status == 404 and caught.value.registry == registry.host
    assert "MANIFEST_UNKNOWN" in str(caught.value) or "NAME_UNKNOWN" in str(caught.value)

