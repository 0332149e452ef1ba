"""One repository on one registry: manifests and blobs, with auth, retries, mirrors and redirects."""

from __future__ import annotations

import logging
import threading
from typing import Dict, Optional, Set, Tuple, Union
from urllib.parse import urljoin, urlsplit

from ..errors import DigestMismatch, InvalidReference, RegistryError
from ..manifest import ACCEPT, Index, Manifest, digest_of, parse_manifest
from ..reference import Reference, validate_digest
from .auth import Authenticator
from .bearer import TokenCache
from .errors import raise_for_connection, raise_for_response
from .mirror import Endpoint, endpoints
from .options import RegistryOptions
from .resumable import BlobStream
from .retry import RETRY_EXCEPTIONS, RETRY_STATUSES, with_retries
from .session import BodyTooLarge, Response, Session, TransportError, make_session

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
# The largest manifest read, as distribution enforces on push.
MAX_MANIFEST = 4 << 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _netloc(url: str) -> str:
    """host[:port] of a URL, without user info."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


class Repository:
    """Reads manifests and blobs of one repository, trying mirrors first.

    Thread-safe: layers of one image are fetched in parallel through one instance.
    """

    def __init__(self, reference: Reference, options: Optional[RegistryOptions] = None,
                 session: Optional[Session] = None, tokens: Optional[TokenCache] = None) -> None:
        self.reference = reference
        self.options = options or RegistryOptions()
        self.session = session or make_session(self.options)
        self.image = reference.familiar_string()
        self.scope = f"repository:{reference.repository}:pull"
        self.endpoints = endpoints(reference.registry, reference.registry_host, self.options)
        for endpoint in self.endpoints:  # the registry and the operator's mirrors; not their realms nor redirects
            self.session.trust(endpoint.base_url)
        self.auth = Authenticator(self.session, self.options, reference.registry, self.scope, self.image, tokens)
        # Mirrors that could not be reached or kept failing: not tried again by this instance.
        self._given_up: Set[str] = set()
        # Endpoints whose /v2/ answered as a registry does.
        self._pinged: Set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Repository({self.image!r}, endpoints={[e.base_url for e in self.endpoints]!r})"

    # ---- requests ------------------------------------------------------------------------

    def _send(self, endpoint: Endpoint, method: str, path: str, headers: Dict[str, str]) -> Response:
        """One request with redirects followed by hand: Authorization never leaves the endpoint's host."""
        url = endpoint.base_url + path
        auth = self.auth.header(endpoint)
        home = _netloc(endpoint.base_url)
        for _ in range(MAX_REDIRECTS):
            response = self.session.request(method, url, {**headers, **(auth if _netloc(url) == home else {})})
            if response.status_code not in REDIRECTS or "Location" not in response.headers:
                return response
            url = urljoin(url, response.headers["Location"])
            response.close()
            if response.status_code == 303 and method != "HEAD":
                method = "GET"
        raise RegistryError(self.image, endpoint.host, None, f"more than {MAX_REDIRECTS} redirects for {path}")

    def _authenticated(self, endpoint: Endpoint, method: str, path: str, headers: Dict[str, str],
                       what: str) -> Response:
        """A request retried on 429/5xx, and sent again when a 401 teaches how to authenticate.

        At most: one more after learning the scheme, and one more with a renewed
        token (expired mid-pull, or `insufficient_scope`); a refused password is final.
        """
        def send() -> Response:
            return self._send(endpoint, method, path, headers)

        label = f"{what} at {endpoint.host}"
        response = with_retries(send, self.options, label, retry_connection_errors=not endpoint.is_mirror)
        renewed = False
        for _ in range(3):
            if response.status_code != 401 or _netloc(response.url) != _netloc(endpoint.base_url):
                break
            if response.request_headers.get("Authorization", "").lower().startswith("bearer "):
                if renewed:
                    break
                renewed = True
            if not self.auth.learn(endpoint, response):
                break
            response.close()
            response = with_retries(send, self.options, label, retry_connection_errors=not endpoint.is_mirror)
        return response

    def _ping(self, endpoint: Endpoint) -> None:
        """``GET /v2/`` once per endpoint, without credentials: is it a registry, and how does it authenticate?

        200 and 401 are a registry's answers; a 401's challenge tells `auth` the
        scheme (and token realm), so the first real request carries credentials.
        Anything else is raised as a `RegistryError` that says the endpoint does
        not answer the registry API; a mirror that does not is not tried again.
        """
        if endpoint.base_url in self._pinged:
            return
        what = "the registry API check (GET /v2/)"
        response = with_retries(lambda: self._send(endpoint, "GET", "/v2/", {}), self.options,
                                f"{what} at {endpoint.host}", retry_connection_errors=not endpoint.is_mirror)
        try:
            if response.status_code == 401:
                self.auth.learn(endpoint, response)
            elif response.status_code != 200:
                if endpoint.is_mirror:
                    self._give_up(endpoint)
                raise_for_response(response, self.image, endpoint.host, what)
        finally:
            response.close()
        with self._lock:
            self._pinged.add(endpoint.base_url)

    def request(self, method: str, path: str, what: str, headers: Optional[Dict[str, str]] = None,
                ok: Tuple[int, ...] = (200,)) -> Response:
        """A request to the first endpoint that answers it, authenticated and retried.

        Each endpoint is checked once first (`_ping`). Mirrors that fail in any way
        fall through to the next endpoint; one that cannot be reached, keeps failing
        with 5xx or is not a registry is not tried again. The
        registry itself is last, and its failure is raised as a `RegistryError`.
        """
        headers = headers or {}
        last_index = len(self.endpoints) - 1
        for index, endpoint in enumerate(self.endpoints):
            last = index == last_index
            if not last and endpoint.base_url in self._given_up:
                continue
            try:
                self._ping(endpoint)
                response = self._authenticated(endpoint, method, path, headers, what)
            except RegistryError as exc:
                if last:
                    raise
                log.info("mirror %s failed %s: %s", endpoint.host, what, exc)
                continue
            except RETRY_EXCEPTIONS as exc:
                if last:
                    raise_for_connection(exc, self.image, endpoint.host, what)
                log.info("mirror %s unreachable for %s: %s; not trying it again", endpoint.host, what,
                         type(exc).__name__)
                self._give_up(endpoint)
                continue
            if response.status_code in ok:
                return response
            if last:
                raise_for_response(response, self.image, endpoint.host, what)
            log.info("mirror %s answered %d for %s", endpoint.host, response.status_code, what)
            if response.status_code in RETRY_STATUSES:
                self._give_up(endpoint)
            response.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _give_up(self, endpoint: Endpoint) -> None:
        with self._lock:
            self._given_up.add(endpoint.base_url)

    # ---- manifests -----------------------------------------------------------------------

    def get_manifest(self, identifier: str) -> Tuple[bytes, str]:
        """The raw bytes and Content-Type of a manifest or index, by tag or digest (not verified)."""
        raw, media_type, _, _ = self._get_manifest(identifier)
        return raw, media_type

    def _get_manifest(self, identifier: str, size: Optional[int] = None) -> Tuple[bytes, str, Optional[str], str]:
        response = self.request("GET", f"/v2/{self.reference.repository}/manifests/{identifier}",
                                f"manifest {identifier}", headers={"Accept": ", ".join(ACCEPT)})
        served_by = _netloc(response.url)
        try:
            raw = response.read_capped(MAX_MANIFEST if size is None else min(size, MAX_MANIFEST), "the manifest")
        except BodyTooLarge as exc:
            if size is None or size >= MAX_MANIFEST:
                raise_for_connection(exc, self.image, served_by, f"manifest {identifier}")
            raise DigestMismatch(f"manifest {identifier} of image {self.image} from registry {served_by} "
                                 "(larger than its descriptor says)", f"{identifier} ({size} bytes)",
                                 f"more than {size} bytes") from None
        except TransportError as exc:
            raise_for_connection(exc, self.image, served_by, f"manifest {identifier}")
        return (raw, response.headers.get("Content-Type", "").split(";")[0].strip(),
                response.headers.get("Docker-Content-Digest"), served_by)

    def get_manifest_verified(self, identifier: str, expected_digest: Optional[str] = None,
                              expected_size: Optional[int] = None) -> Union[Manifest, Index]:
        """A parsed manifest or index whose bytes hash to the digest that names it.

        The digest is `expected_digest`, else `identifier` when it is a digest,
        else the Docker-Content-Digest the registry sent; `DigestMismatch` when
        the bytes do not match, naming the image and the registry. With
        `expected_size` (an index's descriptor), no more than that is read, and
        another size is a `DigestMismatch` too.
        """
        raw, media_type, header_digest, served_by = self._get_manifest(identifier, expected_size)
        if expected_size is not None and len(raw) != expected_size:
            raise DigestMismatch(f"manifest {identifier} of image {self.image} from registry {served_by} "
                                 "(not the size its descriptor says)", f"{identifier} ({expected_size} bytes)",
                                 f"{len(raw)} bytes")
        expected = expected_digest or (identifier if ":" in identifier else None)
        source = "digest"
        if expected is None and header_digest:
            try:
                expected, source = validate_digest(header_digest), "Docker-Content-Digest"
            except InvalidReference:
                log.info("registry %s sent an unusable Docker-Content-Digest %r", served_by, header_digest)
        if expected is not None:
            actual = digest_of(raw, validate_digest(expected).split(":", 1)[0])
            if actual != expected:
                raise DigestMismatch(f"manifest {identifier} of image {self.image} from registry {served_by} "
                                     f"(checked against its {source})", expected, actual)
        return parse_manifest(raw, media_type, expected)

    def head_manifest(self, identifier: str) -> Tuple[Optional[str], str, Optional[int]]:
        """The digest (Docker-Content-Digest), media type and size of a manifest, without its body."""
        response = self.request("HEAD", f"/v2/{self.reference.repository}/manifests/{identifier}",
                                f"manifest {identifier}", headers={"Accept": ", ".join(ACCEPT)})
        length = response.headers.get("Content-Length")
        return (response.headers.get("Docker-Content-Digest"),
                response.headers.get("Content-Type", "").split(";")[0].strip(),
                int(length) if length and length.isdigit() else None)

    # ---- blobs ---------------------------------------------------------------------------

    def blob(self, digest: str, size: Optional[int]) -> BlobStream:
        """A verified, resumable stream of a blob's bytes."""
        path = f"/v2/{self.reference.repository}/blobs/{digest}"

        def open_at(offset: int) -> Response:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            return self.request("GET", path, f"blob {digest}", headers=headers, ok=(200, 206))

        return BlobStream(open_at, digest, size, self.options.max_resumes, self.image, self.reference.registry)
