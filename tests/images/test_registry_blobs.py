"""The registry client reads manifests and blobs as the distribution spec says, and survives bad networks.

Real registries, the fault proxy, and small HTTP servers of our own on loopback
(`StaticRegistry`) where a behaviour is needed that distribution does not have:
redirects to another host, servers that ignore Range, recording request headers.
"""

from __future__ import annotations

import base64
import email.utils
import socket
import struct
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Dict, List, Mapping, Optional, Tuple

import pytest
from urllib3 import HTTPHeaderDict

from wes_arvados.images.errors import (
    DigestMismatch,
    NotFoundError,
    RegistryError,
    TooManyRequests,
)
from wes_arvados.images.manifest import (
    ACCEPT,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_SCHEMA2,
    OCI_INDEX,
    Index,
    Manifest,
)
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry import RegistryOptions, Repository
from wes_arvados.images.registry.client import MAX_MANIFEST
from wes_arvados.images.registry.credentials import AuthConfig, Credentials
from wes_arvados.images.registry.errors import MAX_ERROR_BODY
from wes_arvados.images.registry.retry import retry_after
from wes_arvados.images.registry.session import Response

from ..threaded import ThreadedServer
from .builder import Image, ImageFactory, push
from .registry import (
    FaultProxy,
    FlipByte,
    Registry,
    Reset,
    Status,
    too_many_requests,
    unavailable,
)

# Tests must not wait: retries back off for milliseconds.
FAST = RegistryOptions(backoff=0.01, max_attempts=4)


def open_repository(host: str, name: str, tag: str = "v1", options: RegistryOptions = FAST) -> Repository:
    """A `Repository` for host/name:tag."""
    return Repository(parse_normalized_named(f"{host}/{name}:{tag}"), options)


# ------------------------------------------------------------------------------- a tiny registry


class StaticRegistry(ThreadedServer):
    """A registry on loopback serving fixed manifests and blobs of one repository, recording every request.

    `users`: Basic auth required. `redirect_blobs`: a blob GET is answered with a 307
    to this base URL + the same path ("" redirects to /storage/... on this server,
    which serves the bytes). `honour_range=False` answers Range requests with the
    whole blob, and `break_after` resets the first blob GET after so many bytes.
    """

    def __init__(self, repo: str, manifests: Mapping[str, Tuple[str, bytes]] = (), blobs: Mapping[str, bytes] = (),
                 *, users: Optional[Mapping[str, str]] = None, redirect_blobs: Optional[str] = None,
                 honour_range: bool = True, break_after: Optional[int] = None, address: str = "127.0.0.1") -> None:
        self.repo = repo
        self.manifests = dict(manifests)
        self.blobs = dict(blobs)
        self.users = dict(users or {})
        self.redirect_blobs = redirect_blobs
        self.honour_range = honour_range
        self.break_after = break_after
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []
        super().__init__(_static_handler(self), address=address)

    @classmethod
    def of(cls, repo: str, image: Image, tag: str = "v1", **kwargs: object) -> "StaticRegistry":
        """Serving `image` as repo:tag (and by digest)."""
        entry = (image.media_type, image.manifest)
        return cls(repo, {tag: entry, image.digest: entry}, dict(image.blobs()), **kwargs)  # type: ignore[arg-type]

    @property
    def host(self) -> str:
        """host:port to put in a reference."""
        address, port = self._httpd.server_address[:2]
        return f"{address}:{port}"

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{self.host}"

    def headers_of(self, method: str, fragment: str) -> List[Dict[str, str]]:
        """The headers of each request with `method` whose path contains `fragment`, in order."""
        return [h for m, p, h in self.requests if m == method and fragment in p]



def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _static_handler(server: StaticRegistry) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorized(self) -> bool:
            if not server.users:
                return True
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            if scheme != "Basic":
                return False
            user, _, password = base64.b64decode(value).decode().partition(":")
            return server.users.get(user) == password

        def _blob(self, digest: str) -> None:
            data = server.blobs.get(digest)
            if data is None:
                return self._reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
            start = 0
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and server.honour_range:
                start = int(wanted[6:].split("-")[0])
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(206 if start else 200)
            for name, value in {"Content-Length": str(len(data) - start), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if server.break_after is not None:
                cut, server.break_after = server.break_after, None
                self.wfile.write(data[start:start + cut])
                time.sleep(0.2)  # let the client read it all: a reset drops what it has not read yet
                self.close_connection = True
                return _reset(self.connection)
            self.wfile.write(data[start:])

        def do_GET(self) -> None:
            server.requests.append((self.command, self.path, dict(self.headers.items())))
            if self.path.startswith("/storage/"):
                return self._blob(self.path.rsplit("/", 1)[-1]) if self._authorized() else self._reply(401)
            if not self._authorized():
                return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                                   {"WWW-Authenticate": 'Basic realm="static"', "Content-Type": "application/json"})
            if self.path == "/v2/":  # the API check: a registry answers 200 (or 401, above)
                return self._reply(200, b"{}", {"Content-Type": "application/json",
                                                "Docker-Distribution-API-Version": "registry/2.0"})
            prefix = f"/v2/{server.repo}/"
            kind, _, ident = self.path[len(prefix):].partition("/") if self.path.startswith(prefix) else ("", "", "")
            if kind == "manifests" and ident in server.manifests:
                media_type, data = server.manifests[ident]
                return self._reply(200, data, {"Content-Type": media_type})
            if kind == "blobs":
                if server.redirect_blobs is not None:
                    target = server.redirect_blobs or f"{server.url}/storage"
                    return self._reply(307, headers={"Location": f"{target}{self.path}"
                                                     if server.redirect_blobs else f"{target}/{ident}"})
                return self._blob(ident)
            self._reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

        do_HEAD = do_GET

    return Handler


# ---------------------------------------------------------------------------------- manifests


def test_manifests_are_requested_with_every_supported_media_type(image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    with StaticRegistry.of("test/accept", image) as static:
        repository = open_repository(static.host, "test/accept")
        manifest = repository.get_manifest_verified("v1")
        repository.head_manifest("v1")
    assert isinstance(manifest, Manifest) and manifest.digest == image.digest
    for headers in static.headers_of("GET", "/manifests/") + static.headers_of("HEAD", "/manifests/"):
        assert {t.strip() for t in headers["Accept"].split(",")} == set(ACCEPT)


@pytest.mark.parametrize("oci", [True, False], ids=["oci-index", "docker-manifest-list"])
def test_an_index_comes_back_as_an_index(registry: Registry, repo: str, image_factory: ImageFactory,
                                         oci: bool) -> None:
    index = image_factory.index(oci=oci, attestations=False)
    push(registry, repo, "v1", index)
    got = open_repository(registry.host, repo).get_manifest_verified("v1")
    assert isinstance(got, Index) and got.media_type == (OCI_INDEX if oci else DOCKER_MANIFEST_LIST)
    assert got.raw == index.data and got.digest == index.digest
    assert [d.digest for d in got.manifests] == [i.digest for i in index.images]


def test_head_manifest_gives_digest_media_type_and_size(registry: Registry, repo: str,
                                                        image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(registry, repo, "v1", image)
    repository = open_repository(registry.host, repo)
    assert repository.head_manifest("v1") == (image.digest, DOCKER_MANIFEST_SCHEMA2, len(image.manifest))
    assert repository.head_manifest(image.digest)[0] == image.digest
    with pytest.raises(NotFoundError) as caught:
        repository.head_manifest("v2")
    assert caught.value.status == 404 and registry.host in str(caught.value) and repo in str(caught.value)


def test_a_manifest_fetched_by_digest_is_verified(fault_proxy: FaultProxy, repo: str,
                                                  image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(fault_proxy, repo, "v1", image)
    repository = open_repository(fault_proxy.host, repo)
    assert repository.get_manifest_verified(image.digest).raw == image.manifest
    fault_proxy.add_rule("/manifests/", FlipByte(offset=40), method="GET", times=None)
    with pytest.raises(DigestMismatch) as by_digest:
        repository.get_manifest_verified(image.digest)
    # By tag, the registry's Docker-Content-Digest is what the bytes must match.
    with pytest.raises(DigestMismatch) as by_header:
        repository.get_manifest_verified("v1")
    for caught in (by_digest, by_header):
        message = str(caught.value)
        assert image.digest in message and fault_proxy.host in message and repo in message
    assert "Docker-Content-Digest" in str(by_header.value)


def test_a_manifest_must_match_the_digest_the_caller_expects(registry: Registry, repo: str,
                                                              image_factory: ImageFactory) -> None:
    image, other = image_factory.docker_schema2(), image_factory.oci()
    push(registry, repo, "v1", image)
    repository = open_repository(registry.host, repo)
    assert repository.get_manifest_verified("v1", expected_digest=image.digest).digest == image.digest
    with pytest.raises(DigestMismatch, match=other.digest):
        repository.get_manifest_verified("v1", expected_digest=other.digest)



class ManifestWithoutLength(BaseHTTPRequestHandler):
    """A registry whose manifest comes chunked (no Content-Length), 256 MiB of it unless the client hangs up."""

    protocol_version = "HTTP/1.1"
    sent = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", DOCKER_MANIFEST_SCHEMA2)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b" " * (1 << 16)
        try:
            for _ in range(64 * MAX_MANIFEST // len(piece)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                type(self).sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client stopped reading, as it should


def test_a_manifest_over_4_mib_is_refused_naming_the_limit(fault_proxy: FaultProxy, repo: str,
                                                           pushed: Image) -> None:
    big = b"{" + b" " * MAX_MANIFEST + b"}"
    fault_proxy.add_rule("/manifests/v1$", Status(200, headers={"Content-Type": DOCKER_MANIFEST_SCHEMA2}, body=big),
                         method="GET")
    with pytest.raises(RegistryError) as caught:
        open_repository(fault_proxy.host, repo).get_manifest_verified("v1")
    assert str(caught.value) == (f"registry {fault_proxy.host} failed for image {fault_proxy.host}/{repo}:v1: "
                                 "manifest v1: the manifest is larger than the limit of 4 MiB")
    assert fault_proxy.count("GET", "/manifests/") == 1  # not asked again


def test_a_manifest_without_a_length_is_read_no_further_than_the_limit() -> None:
    with ThreadedServer(ManifestWithoutLength) as server:
        with pytest.raises(RegistryError, match="manifest v1: the manifest is larger than the limit of 4 MiB"):
            open_repository(f"127.0.0.1:{server.port}", "test/chunked").get_manifest("v1")
    assert ManifestWithoutLength.sent < 8 * MAX_MANIFEST  # the client hung up soon past the limit


def test_an_error_body_over_1_mib_is_not_shown_and_the_error_says_so(fault_proxy: FaultProxy, repo: str,
                                                                    pushed: Image) -> None:
    fault_proxy.add_rule("/manifests/v1$", Status(404, body=b"x" * (MAX_ERROR_BODY + 1)), method="GET")
    with pytest.raises(NotFoundError) as caught:
        open_repository(fault_proxy.host, repo).get_manifest("v1")
    assert caught.value.status == 404
    assert str(caught.value).endswith("manifest v1: Not Found (the error body is larger than the limit of 1 MiB)")
    assert "xxx" not in str(caught.value)

# ------------------------------------------------------------------------------------- blobs


def read_all(repository: Repository, image: Image) -> Dict[str, bytes]:
    """Every blob of `image`, read through the client."""
    manifest = repository.get_manifest_verified("v1")
    assert isinstance(manifest, Manifest)
    return {d.digest: repository.blob(d.digest, d.size).read() for d in (manifest.config, *manifest.layers)}


def test_redirected_blobs_never_carry_authorization_to_another_host(image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    with StaticRegistry.of("test/redirect", image, address="127.0.0.2") as storage, \
            StaticRegistry.of("test/redirect", image, users={"alice": "wonderland"},
                              redirect_blobs=storage.url) as front:
        credentials = Credentials({front.host: AuthConfig("alice", "wonderland")})
        got = read_all(open_repository(front.host, "test/redirect", options=replace(FAST, credentials=credentials)),
                       image)
    assert got == dict(image.blobs())
    assert all(h["Authorization"].startswith("Basic ") for h in front.headers_of("GET", "/blobs/"))
    assert len(storage.headers_of("GET", "/blobs/")) == len(image.blobs())
    assert not any("Authorization" in h for h in storage.headers_of("GET", "/blobs/"))


def test_redirects_on_the_same_host_keep_authorization(image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    with StaticRegistry.of("test/same-host", image, users={"alice": "wonderland"}, redirect_blobs="") as front:
        credentials = Credentials({front.host: AuthConfig("alice", "wonderland")})
        got = read_all(open_repository(front.host, "test/same-host", options=replace(FAST, credentials=credentials)),
                       image)
    assert got == dict(image.blobs())
    assert len(front.headers_of("GET", "/storage/")) == len(image.blobs())


def test_a_connection_reset_mid_blob_resumes_with_a_range_request(fault_proxy: FaultProxy, repo: str,
                                                                   pushed: Image) -> None:
    blob = pushed.layers[0]
    fault_proxy.add_rule(f"/blobs/{blob.digest}$", Reset(after_bytes=100_000), method="GET")
    stream = open_repository(fault_proxy.host, repo).blob(blob.digest, blob.size)
    assert stream.read() == blob.blob
    assert stream.resumes == 1 and fault_proxy.blob_gets(blob.digest) == 2
    # The registry answered the second GET with 206: the client asked for the rest only.
    assert [r.status for r in fault_proxy.requests if r.path.endswith(blob.digest)] == [200, 206]


def test_a_blob_resumes_from_a_server_that_ignores_range(image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    blob = image.layers[0]
    with StaticRegistry.of("test/no-range", image, honour_range=False, break_after=300_000) as static:
        stream = open_repository(static.host, "test/no-range").blob(blob.digest, blob.size)
        assert stream.read() == blob.blob
    assert stream.resumes == 1
    assert static.headers_of("GET", "/blobs/")[1]["Range"] == "bytes=300000-"


def test_a_blob_that_keeps_breaking_fails_naming_image_and_registry(fault_proxy: FaultProxy, repo: str,
                                                                     pushed: Image) -> None:
    blob = pushed.layers[0]
    fault_proxy.add_rule(f"/blobs/{blob.digest}$", Reset(after_bytes=1000), method="GET", times=None)
    options = replace(FAST, max_resumes=2)
    with pytest.raises(RegistryError) as caught:
        open_repository(fault_proxy.host, repo, options=options).blob(blob.digest, blob.size).read()
    message = str(caught.value)
    assert fault_proxy.host in message and repo in message and "broke 3 times" in message
    assert fault_proxy.blob_gets(blob.digest) == 3


def test_429_and_503_are_retried_honouring_retry_after(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    blob = pushed.layers[1]
    fault_proxy.add_rule("/manifests/v1", unavailable(), times=2)
    fault_proxy.add_rule(f"/blobs/{blob.digest}", too_many_requests(1), method="GET")
    repository = open_repository(fault_proxy.host, repo)
    assert repository.get_manifest_verified("v1").digest == pushed.digest
    started = time.monotonic()
    assert repository.blob(blob.digest, blob.size).read() == blob.blob
    # The backoff is 10 ms: only Retry-After explains a wait of a second.
    assert time.monotonic() - started >= 0.95
    assert fault_proxy.count("GET", "/manifests/v1") == 3 and fault_proxy.blob_gets(blob.digest) == 2


def test_429_beyond_the_retries_is_too_many_requests(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    fault_proxy.add_rule("/manifests/", too_many_requests(0), times=None)
    with pytest.raises(TooManyRequests) as caught:
        open_repository(fault_proxy.host, repo).get_manifest_verified("v1")
    message = str(caught.value)
    assert caught.value.status == 429 and fault_proxy.host in message and repo in message
    assert "TOOMANYREQUESTS: injected by the fault proxy" in message
    assert fault_proxy.count("GET", "/manifests/") == FAST.max_attempts


def test_a_retry_after_longer_than_we_accept_fails_at_once(fault_proxy: FaultProxy, repo: str,
                                                            pushed: Image) -> None:
    fault_proxy.add_rule("/manifests/", too_many_requests(3600), times=None)
    started = time.monotonic()
    with pytest.raises(TooManyRequests):
        open_repository(fault_proxy.host, repo).get_manifest_verified("v1")
    assert time.monotonic() - started < 5 and fault_proxy.count("GET", "/manifests/") == 1


def test_a_5xx_that_persists_names_image_registry_and_message(fault_proxy: FaultProxy, repo: str,
                                                              pushed: Image) -> None:
    fault_proxy.add_rule("/manifests/", Status(502), times=None)
    with pytest.raises(RegistryError) as caught:
        open_repository(fault_proxy.host, repo).get_manifest("v1")
    assert caught.value.status == 502
    assert str(caught.value) == (f"registry {fault_proxy.host} answered 502 for image {fault_proxy.host}/{repo}:v1: "
                                 "manifest v1: UNAVAILABLE: injected by the fault proxy")


def test_a_flipped_byte_is_a_digest_mismatch(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    blob = pushed.layers[1]
    fault_proxy.add_rule("/blobs/", FlipByte(offset=7), method="GET")
    with pytest.raises(DigestMismatch) as caught:
        open_repository(fault_proxy.host, repo).blob(blob.digest, blob.size).read()
    message = str(caught.value)
    assert blob.digest in message and fault_proxy.host in message and repo in message


@pytest.mark.parametrize("delta", [-1, 1], ids=["longer-than-said", "shorter-than-said"])
def test_a_blob_of_another_size_is_a_digest_mismatch(registry: Registry, repo: str, image_factory: ImageFactory,
                                                     delta: int) -> None:
    image = image_factory.docker_schema2()
    push(registry, repo, "v1", image)
    config = image.config
    with pytest.raises(DigestMismatch) as caught:
        open_repository(registry.host, repo).blob(image.config_digest, len(config) + delta).read()
    assert f"({len(config) + delta} bytes)" in str(caught.value) and registry.host in str(caught.value)


def test_a_missing_blob_is_not_found(registry: Registry, repo: str, image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(registry, repo, "v1", image)
    missing = "sha256:" + "0" * 64
    with pytest.raises(NotFoundError) as caught:
        open_repository(registry.host, repo).blob(missing, 10).read()
    assert "BLOB_UNKNOWN" in str(caught.value) and registry.host in str(caught.value)



def test_an_unreachable_registry_fails_after_retries_naming_it() -> None:
    with StaticRegistry("test/gone") as static:
        host = static.host
    started = time.monotonic()
    with pytest.raises(RegistryError) as caught:
        open_repository(host, "test/gone").get_manifest("v1")
    assert caught.value.status is None and caught.value.registry == host
    assert str(caught.value).startswith(f"registry {host} failed for image {host}/test/gone:v1: manifest v1: ")
    assert time.monotonic() - started >= FAST.backoff * (2 ** (FAST.max_attempts - 1) - 1)


@pytest.mark.parametrize("value,seconds", [
    ("3", 3.0), (" 0 ", 0.0), ("-5", 0.0), ("soon", None), ("", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
])
def test_retry_after_reads_seconds_and_http_dates(value: str, seconds: Optional[float]) -> None:
    assert retry_after(_answer({"Retry-After": value})) == seconds


def test_retry_after_in_the_future_is_waited_for() -> None:
    response = _answer({"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)})
    assert 28 <= (retry_after(response) or 0) <= 30


def _answer(headers: Mapping[str, str]) -> Response:
    return Response(429, "Too Many Requests", HTTPHeaderDict(list(headers.items())), "http://registry.example/v2/",
                    {})
