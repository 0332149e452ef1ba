"""One repository on one registry: manifests and blobs, with auth, retries, mirrors and redirects."""

from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple
from urllib.parse import urljoin, urlparse

import requests

from ..errors import RegistryError
from ..manifest import ACCEPT
from ..reference import Reference
from .basic import basic_header
from .bearer import TokenCache, fetch_token
from .challenge import Challenge, find, parse_challenges
from .errors import raise_for_connection, raise_for_response
from .mirror import Endpoint, endpoints
from .options import RegistryOptions
from .resumable import BlobStream
from .retry import RETRY_EXCEPTIONS, with_retries
from .session import make_session

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10


def _token_key(params: Dict[str, str], default_scope: str) -> Tuple[str, str, str]:
    return (params.get("realm", ""), params.get("service", ""), params.get("scope", default_scope))


class Repository:
    """Reads manifests and blobs of one repository, trying mirrors first.

    Thread-safe: layers of one image are fetched in parallel through one instance.
    """

    def __init__(self, reference: Reference, options: Optional[RegistryOptions] = None,
                 session: Optional[requests.Session] = None, tokens: Optional[TokenCache] = None) -> None:
        self.reference = reference
        self.options = options or RegistryOptions()
        self.session = session or make_session(self.options)
        self.tokens = tokens or TokenCache()
        self.image = reference.familiar_string()
        self.scope = f"repository:{reference.repository}:pull"
        self.endpoints = endpoints(reference.registry, reference.registry_host, self.options)
        # Per endpoint, how it wants to be authenticated, learnt from its first 401.
        self._auth_kind: Dict[str, Tuple[str, dict]] = {}

    # ---- requests ------------------------------------------------------------------------

    def _auth_header(self, endpoint: Endpoint) -> Dict[str, str]:
        kind = self._auth_kind.get(endpoint.base_url)
        if kind is None:
            return {}
        scheme, params = kind
        auth = self.options.credentials.for_registry(
            self.reference.registry if not endpoint.is_mirror else endpoint.host)
        if scheme == "basic":
            return {"Authorization": basic_header(auth)} if auth else {}
        if auth.registry_token:
            return {"Authorization": f"Bearer {auth.registry_token}"}
        key = _token_key(params, self.scope)
        token = self.tokens.get(key)
        if token is None:
            token, expires_in = fetch_token(self.session, Challenge("bearer", params), key[2], auth,
                                            self.options, self.image, endpoint.host)
            self.tokens.put(key, token, expires_in)
        return {"Authorization": f"Bearer {token}"}

    def _learn_challenge(self, endpoint: Endpoint, response: requests.Response) -> bool:
        """Remember how the endpoint wants to be authenticated; False when it offers nothing to try."""
        challenges = parse_challenges(response.headers.get("WWW-Authenticate"))
        bearer, basic = find(challenges, "bearer"), find(challenges, "basic")
        previous = self._auth_kind.get(endpoint.base_url)
        if previous is not None and previous[0] == "bearer":
            self.tokens.forget(_token_key(previous[1], self.scope))  # refused: expired, or too narrow
        if bearer is not None:
            params = dict(bearer.params)
            if not (params.get("error") == "insufficient_scope" and params.get("scope")):
                params["scope"] = self.scope
            self._auth_kind[endpoint.base_url] = ("bearer", params)
        elif basic is not None:
            self._auth_kind[endpoint.base_url] = ("basic", basic.params)
        else:
            return False
        return True

    def _send(self, endpoint: Endpoint, method: str, path: str, headers: Dict[str, str],
              stream: bool) -> requests.Response:
        """One request with redirects followed by hand (Authorization never leaves its host)."""
        url = endpoint.base_url + path
        auth = self._auth_header(endpoint)
        for _ in range(MAX_REDIRECTS):
            same_host = urlparse(url).netloc == urlparse(endpoint.base_url).netloc
            response = self.session.request(method, url, headers={**headers, **(auth if same_host else {})},
                                            stream=stream, allow_redirects=False, timeout=self.options.timeout)
            if response.status_code not in (301, 302, 303, 307, 308) or "Location" not in response.headers:
                return response
            url = urljoin(url, response.headers["Location"])
            response.close()
            if method == "HEAD" and response.status_code == 303:
                method = "GET"
        raise RegistryError(self.image, endpoint.host, None, f"more than {MAX_REDIRECTS} redirects for {path}")

    def request(self, method: str, path: str, what: str, headers: Optional[Dict[str, str]] = None,
                stream: bool = False, ok: Tuple[int, ...] = (200,)) -> requests.Response:
        """A request to the first endpoint that answers it, authenticated and retried.

        Mirrors that fail in any way fall through to the next endpoint; the
        registry itself is last and its failure is raised as a `RegistryError`.
        """
        headers = headers or {}
        for index, endpoint in enumerate(self.endpoints):
            last = index == len(self.endpoints) - 1
            try:
                response = self._authenticated(endpoint, method, path, headers, stream, what)
            except RegistryError:
                if last:
                    raise
                continue
            except RETRY_EXCEPTIONS as exc:
                if last:
                    raise_for_connection(exc, self.image, endpoint.host, what)
                log.info("mirror %s unreachable for %s: %s", endpoint.base_url, what, exc)
                continue
            if response.status_code in ok:
                return response
            if last:
                raise_for_response(response, self.image, endpoint.host, what)
            log.info("mirror %s answered %d for %s", endpoint.base_url, response.status_code, what)
            response.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticated(self, endpoint: Endpoint, method: str, path: str, headers: Dict[str, str],
                       stream: bool, what: str) -> requests.Response:
        def send() -> requests.Response:
            return self._send(endpoint, method, path, headers, stream)

        response = with_retries(send, self.options, f"{what} at {endpoint.host}")
        # A 401 teaches us the auth scheme (or that a token expired mid-pull); try again once per lesson.
        for _ in range(2):
            if response.status_code != 401 or not self._learn_challenge(endpoint, response):
                break
            response.close()
            response = with_retries(send, self.options, f"{what} at {endpoint.host}")
        return response

    # ---- manifests -----------------------------------------------------------------------

    def get_manifest(self, identifier: str) -> Tuple[bytes, str]:
        """The raw bytes and Content-Type of a manifest or index, by tag or digest."""
        response = self.request("GET", f"/v2/{self.reference.repository}/manifests/{identifier}",
                                f"manifest {identifier}", headers={"Accept": ", ".join(ACCEPT)})
        return response.content, response.headers.get("Content-Type", "").split(";")[0].strip()

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

        def open_at(offset: int) -> requests.Response:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            return self.request("GET", path, f"blob {digest}", headers=headers, stream=True, ok=(200, 206))

        return BlobStream(open_at, digest, size, self.options.max_resumes, self.image, self.reference.registry)
