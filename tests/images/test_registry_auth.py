"""The registry client authenticates as registries ask: anonymously, with Basic, or with tokens.

Against the real distribution registry in its three auth modes and the real token
server, whose JWTs the registry itself verifies; a FaultProxy in front counts the
requests the client makes and spoils tokens as an expiry would.
"""

from __future__ import annotations

import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs

import pytest
import requests
from urllib3 import HTTPHeaderDict

from wes_arvados.images.errors import AuthError, RegistryError
from wes_arvados.images.manifest import Manifest
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry import RegistryOptions, Repository
from wes_arvados.images.registry.auth import Authenticator
from wes_arvados.images.registry.bearer import (
    MARGIN,
    MAX_TOKEN_ANSWER,
    MIN_EXPIRY,
    TokenCache,
)
from wes_arvados.images.registry.challenge import parse_challenges
from wes_arvados.images.registry.credentials import AuthConfig, Credentials
from wes_arvados.images.registry.mirror import Endpoint
from wes_arvados.images.registry.session import Response, make_session

from ..wes import require
from .builder import Image, ImageFactory, push
from .conftest import USERS
from .registry import REGISTRY_BIN, FaultProxy, InvalidToken, Registry
from .tokenserver import TokenServer

FAST = RegistryOptions(backoff=0.01, max_attempts=3)
REFRESH_TOKEN = "refresh-token-7d1c0ffee"
WRONG_PASSWORD = "not-the-Password-42"


def options_for(host: str, auth: Optional[AuthConfig] = None) -> RegistryOptions:
    """Fast retries, and `auth` for `host` if given."""
    return replace(FAST, credentials=Credentials({host: auth} if auth else {}))


def open_repository(host: str, name: str, auth: Optional[AuthConfig] = None, tag: str = "v1",
                    tokens: Optional[TokenCache] = None) -> Repository:
    """A `Repository` for host/name:tag with `auth` for the host."""
    return Repository(parse_normalized_named(f"{host}/{name}:{tag}"), options_for(host, auth), tokens=tokens)


def pull(repository: Repository) -> Dict[str, bytes]:
    """The manifest and every blob of a single-platform image, through the client."""
    manifest = repository.get_manifest_verified(repository.reference.identifier)
    assert isinstance(manifest, Manifest)
    blobs = {d.digest: repository.blob(d.digest, d.size).read() for d in (manifest.config, *manifest.layers)}
    return {manifest.digest: manifest.raw, **blobs}


def contents(image: Image) -> Dict[str, bytes]:
    """What `pull` returns for `image`."""
    return {image.digest: image.manifest, **dict(image.blobs())}


# ------------------------------------------------------------------------ anonymous and Basic


def test_an_anonymous_registry_is_read_without_any_challenge(registry: Registry, repo: str, small: Image) -> None:
    with FaultProxy(registry) as proxy:
        push(proxy, repo, "v1", small)
        proxy.clear()
        assert pull(open_repository(proxy.host, repo)) == contents(small)
    assert [r.status for r in proxy.requests] == [200] * len(proxy.requests)
    assert [r.target for r in proxy.requests][:2] == ["/v2/", f"/v2/{repo}/manifests/v1"]  # the API check first


def test_a_basic_registry_is_read_with_the_password(basic_registry: Registry, repo: str, small: Image) -> None:
    with FaultProxy(basic_registry) as proxy:
        push(proxy, repo, "v1", small)
        proxy.clear()
        assert pull(open_repository(proxy.host, repo, AuthConfig("reader", "bookworm"))) == contents(small)
    # The API check's 401 teaches the scheme; from then on every request carries the password.
    assert [r.status for r in proxy.requests] == [401] + [200] * (1 + len(small.blobs()))
    assert proxy.requests[0].target == "/v2/"


def test_a_wrong_basic_password_is_an_auth_error_naming_image_and_registry(basic_registry: Registry, repo: str,
                                                                             small: Image) -> None:
    with FaultProxy(basic_registry) as proxy:
        push(proxy, repo, "v1", small)
        proxy.clear()
        with pytest.raises(AuthError) as caught:
            open_repository(proxy.host, repo, AuthConfig("alice", WRONG_PASSWORD)).get_manifest("v1")
    assert caught.value.status == 401 and caught.value.registry == proxy.host
    assert str(caught.value) == (f"registry {proxy.host} answered 401 for image {proxy.host}/{repo}:v1: "
                                 "manifest v1: UNAUTHORIZED: authentication required")
    assert proxy.count() == 2  # a refused password is not sent again


def test_a_basic_registry_without_credentials_is_an_auth_error(basic_registry: Registry, repo: str,
                                                               small: Image) -> None:
    push(basic_registry, repo, "v1", small)
    with pytest.raises(AuthError) as caught:
        open_repository(basic_registry.host, repo).get_manifest("v1")
    assert basic_registry.host in str(caught.value) and repo in str(caught.value)


# ------------------------------------------------------------------------------------ tokens


def test_an_anonymous_token_reads_a_public_repository(token_registry: Registry, token_server: TokenServer,
                                                      repo: str, small: Image) -> None:
    public = "public/" + repo.split("/", 1)[1]
    push(token_registry, public, "v1", small)
    token_server.reset()
    assert pull(open_repository(token_registry.host, public)) == contents(small)
    assert [(r.user, r.scopes, r.status) for r in token_server.requests] == [
        (None, [f"repository:{public}:pull"], 200)]


def test_credentials_go_to_the_token_server_as_basic(token_registry: Registry, token_server: TokenServer,
                                                     repo: str, small: Image) -> None:
    push(token_registry, repo, "v1", small)
    token_server.reset()
    assert pull(open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))) == contents(small)
    assert [(r.method, r.user, r.service) for r in token_server.requests] == [("GET", "reader", token_server.service)]


def test_many_blob_fetches_need_one_token_per_scope(token_registry: Registry, token_server: TokenServer,
                                                    repo: str, small: Image) -> None:
    other = repo + "-other"
    for name in (repo, other):
        push(token_registry, name, "v1", small)
    token_server.reset()
    tokens = TokenCache()
    alice = AuthConfig("alice", "wonderland")
    for _ in range(2):
        assert pull(open_repository(token_registry.host, repo, alice, tokens=tokens)) == contents(small)
    assert token_server.count() == 1
    pull(open_repository(token_registry.host, other, alice, tokens=tokens))
    assert [r.scopes for r in token_server.requests] == [[f"repository:{repo}:pull"], [f"repository:{other}:pull"]]


@pytest.mark.parametrize("keys", [("token",), ("access_token",)])
def test_the_token_may_come_as_token_or_access_token(token_registry: Registry, token_server: TokenServer,
                                                     repo: str, small: Image, keys: Tuple[str, ...]) -> None:
    push(token_registry, repo, "v1", small)
    token_server.response_keys, token_server.expires_in, token_server.issued_at = keys, None, False
    assert pull(open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))) == contents(small)


def test_a_token_is_kept_at_least_the_minimum_expiry(token_registry: Registry, token_server: TokenServer,
                                                     repo: str, small: Image) -> None:
    cache = TokenCache()
    cache.put(("realm", "service", "scope"), "value", 1)
    assert cache._tokens[("realm", "service", "scope")].expires - time.monotonic() > MIN_EXPIRY - MARGIN - 1
    # Against the real server: a token said to live 1 s is still used 1.2 s later (the registry takes it).
    push(token_registry, repo, "v1", small)
    token_server.expires_in = 1
    token_server.reset()
    repository = open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))
    repository.get_manifest("v1")
    time.sleep(1.2)
    assert pull(repository) == contents(small)
    assert token_server.count() == 1


def test_a_token_that_expires_mid_pull_is_renewed(token_registry: Registry, token_server: TokenServer,
                                                  repo: str, small: Image) -> None:
    push(token_registry, repo, "v1", small)
    # The registry accepts it for 1 to 2 s (whole seconds), though expires_in says 300.
    token_server.valid_for = 2
    token_server.reset()
    repository = open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))
    manifest = repository.get_manifest_verified("v1")
    time.sleep(2.1)
    token_server.valid_for = None
    assert isinstance(manifest, Manifest)
    assert repository.blob(manifest.config.digest, manifest.config.size).read() == small.config
    assert token_server.count() == 2


def test_a_refused_token_is_renewed_once_per_request(token_registry: Registry, token_server: TokenServer,
                                                     repo: str, small: Image) -> None:
    with FaultProxy(token_registry) as proxy:
        push(proxy, repo, "v1", small)
        repository = open_repository(proxy.host, repo, AuthConfig("reader", "bookworm"))
        repository.get_manifest("v1")
        token_server.reset()
        proxy.clear()
        proxy.add_rule("/blobs/", InvalidToken(), method="GET")
        assert pull(repository) == contents(small)
        assert token_server.count() == 1
        assert [r.status for r in proxy.requests if "/blobs/" in r.path][:2] == [401, 200]
        # A registry that refuses every token: renewed once, then an AuthError.
        proxy.add_rule("/manifests/", InvalidToken(), times=None)
        with pytest.raises(AuthError, match="invalid_token|UNAUTHORIZED"):
            repository.get_manifest("v1")
        assert token_server.count() == 2


def test_insufficient_scope_is_retried_exactly_once(token_registry: Registry, token_server: TokenServer,
                                                    repo: str, small: Image) -> None:
    push(token_registry, repo, "v1", small)  # not public: an anonymous token grants nothing on it
    token_server.reset()
    with FaultProxy(token_registry) as proxy:
        with pytest.raises(AuthError) as caught:
            open_repository(proxy.host, repo).get_manifest("v1")
    assert [r.status for r in proxy.requests] == [401, 401, 401]
    assert [(r.user, r.access) for r in token_server.requests] == [(None, []), (None, [])]
    message = str(caught.value)
    assert proxy.host in message and repo in message and "insufficient" in message.lower()


def test_a_wrong_password_at_the_token_server_is_an_auth_error(token_registry: Registry, token_server: TokenServer,
                                                               repo: str, small: Image) -> None:
    push(token_registry, repo, "v1", small)
    with pytest.raises(AuthError) as caught:
        open_repository(token_registry.host, repo, AuthConfig("alice", WRONG_PASSWORD)).get_manifest("v1")
    assert str(caught.value) == (f"registry {token_registry.host} answered 401 for image {token_registry.host}/"
                                 f"{repo}:v1: token request to {token_server.realm}: UNAUTHORIZED: "
                                 "wrong user name or password")


def test_a_failing_token_server_is_retried(token_registry: Registry, token_server: TokenServer, repo: str,
                                           small: Image) -> None:
    push(token_registry, repo, "v1", small)
    token_server.reset()
    token_server.fail(503, times=2)
    assert pull(open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))) == contents(small)
    assert [r.status for r in token_server.requests] == [503, 503, 200]


def test_a_token_answer_over_1_mib_is_refused_naming_the_limit(token_registry: Registry, token_server: TokenServer,
                                                               repo: str, small: Image) -> None:
    push(token_registry, repo, "v1", small)
    token_server.reset()
    token_server.pad(MAX_TOKEN_ANSWER)
    with pytest.raises(RegistryError) as caught:
        open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm")).get_manifest("v1")
    assert caught.value.status is None
    assert str(caught.value) == (f"registry {token_registry.host} failed for image {token_registry.host}/{repo}:v1: "
                                 f"token request to {token_server.realm}: "
                                 "the token answer is larger than the limit of 1 MiB")
    assert token_server.count() == 1  # not asked again

def test_a_registry_token_is_sent_as_it_is(token_registry: Registry, token_server: TokenServer, repo: str,
                                           small: Image) -> None:
    push(token_registry, repo, "v1", small)
    token = requests.get(token_server.realm, params={"service": token_server.service,
                                                     "scope": f"repository:{repo}:pull"},
                         auth=("reader", "bookworm"), timeout=10).json()["token"]
    token_server.reset()
    assert pull(open_repository(token_registry.host, repo, AuthConfig(registry_token=token))) == contents(small)
    assert token_server.count() == 0


# ----------------------------------------------------------------------------- identity tokens


@pytest.fixture
def refresh_registry(tmp_path: Path) -> Iterator[Tuple[Registry, TokenServer]]:
    """A token registry whose token server also takes the OAuth2 refresh-token grant (for alice)."""
    require(REGISTRY_BIN.exists(), f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")
    server = TokenServer(users=USERS, access={"alice": {"*": ["*"]}})
    base = server._httpd.RequestHandlerClass

    class RefreshHandler(base):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            params = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            if params.get("grant_type") != ["refresh_token"]:
                return self._reply(400, {"error": "unsupported_grant_type"})
            if params.get("refresh_token") != [REFRESH_TOKEN] or params.get("client_id") != ["wes-arvados"]:
                return self._reply(401, {"error": "invalid_grant"})
            self._reply(*server._answer("POST", "alice", server.users["alice"], params))

    server._httpd.RequestHandlerClass = RefreshHandler
    with server, Registry(tmp_path, token_server=server) as reg:
        yield reg, server


def test_an_identity_token_is_exchanged_with_the_refresh_token_grant(refresh_registry: Tuple[Registry, TokenServer],
                                                                     small: Image) -> None:
    reg, server = refresh_registry
    push(reg, "test/identity", "v1", small)
    server.reset()
    auth = AuthConfig(username="alice", identity_token=REFRESH_TOKEN)
    assert pull(open_repository(reg.host, "test/identity", auth)) == contents(small)
    assert [(r.method, r.user, r.scopes) for r in server.requests] == [
        ("POST", "alice", ["repository:test/identity:pull"])]


def test_an_identity_token_falls_back_to_get_where_post_is_unsupported(token_registry: Registry,
                                                                       token_server: TokenServer, repo: str,
                                                                       small: Image) -> None:
    # As ACR: the refresh token is also accepted as a password on GET.
    push(token_registry, repo, "v1", small)
    token_server.reset()
    auth = AuthConfig(username="alice", identity_token="wonderland")
    assert pull(open_repository(token_registry.host, repo, auth)) == contents(small)
    assert [(r.method, r.user, r.status) for r in token_server.requests] == [("GET", "alice", 200)]


# --------------------------------------------------------------------------- secrets stay secret


def _texts_of(exc: BaseException) -> List[str]:
    texts: List[str] = []
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def test_credentials_never_reach_logs_errors_or_reprs(basic_registry: Registry, token_registry: Registry,
                                                      refresh_registry: Tuple[Registry, TokenServer], repo: str,
                                                      small: Image, caplog: pytest.LogCaptureFixture) -> None:
    reg, _ = refresh_registry
    push(basic_registry, repo, "v1", small)
    push(token_registry, repo, "v1", small)
    push(reg, repo, "v1", small)
    caplog.set_level(logging.DEBUG)
    texts: List[str] = []
    secrets = ["wonderland", "bookworm", WRONG_PASSWORD, REFRESH_TOKEN,
               *(base64.b64encode(pair.encode()).decode() for pair in ("alice:wonderland", f"alice:{WRONG_PASSWORD}"))]

    failing = [(basic_registry.host, AuthConfig("alice", WRONG_PASSWORD)),
               (token_registry.host, AuthConfig("alice", WRONG_PASSWORD))]
    for host, auth in failing:
        repository = open_repository(host, repo, auth)
        with pytest.raises(AuthError) as caught:
            pull(repository)
        texts += _texts_of(caught.value) + [repr(repository), repr(repository.options), repr(auth)]
    succeeding = [(basic_registry.host, AuthConfig("alice", "wonderland")),
                  (token_registry.host, AuthConfig("reader", "bookworm")),
                  (reg.host, AuthConfig("alice", identity_token=REFRESH_TOKEN))]
    for host, auth in succeeding:
        repository = open_repository(host, repo, auth)
        assert pull(repository) == contents(small)
        secrets += [value.value for value in repository.auth.tokens._tokens.values()]
        texts += [repr(repository), repr(repository.options), repr(repository.options.credentials),
                  repr(repository.auth), repr(repository.auth.tokens), repr(auth), str(auth)]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert len(secrets) == 8  # the two tokens the successful bearer pulls used are checked too
    for secret in secrets:
        assert not [text for text in texts if secret in text], f"a secret leaked: {secret[:6]}…"


# ------------------------------------------------------------------------------ challenges


def test_challenges_are_parsed_as_registries_send_them() -> None:
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:a/b:pull,push" , Basic realm="say \\"hi\\", please"')
    bearer, basic = parse_challenges(header)
    assert (bearer.scheme, bearer.params) == ("bearer", {"realm": "https://auth.example/token",
                                                          "service": "registry.example",
                                                          "scope": "repository:a/b:pull,push"})
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'say "hi", please'})
    assert parse_challenges('Bearer realm=unquoted,error=insufficient_scope')[0].params == {
        "realm": "unquoted", "error": "insufficient_scope"}
    assert parse_challenges(None) == [] and parse_challenges("") == []


def test_layers_fetched_in_parallel_share_one_token(token_registry: Registry, token_server: TokenServer,
                                                    repo: str, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(12)
    push(token_registry, repo, "v1", image)
    token_server.reset()
    repository = open_repository(token_registry.host, repo, AuthConfig("reader", "bookworm"))
    manifest = repository.get_manifest_verified("v1")
    assert isinstance(manifest, Manifest)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda d: repository.blob(d.digest, d.size).read(), manifest.layers))
    assert got == [lay.blob for lay in image.layers]
    assert token_server.count() == 1


@pytest.mark.parametrize("fields", [
    [("WWW-Authenticate", 'Basic realm="registry"'), ("www-authenticate", 'Bearer realm="https://auth.test/token"')],
    [("WWW-Authenticate", 'Basic realm="registry", Bearer realm="https://auth.test/token"')],
])
def test_every_www_authenticate_field_is_read_not_only_the_first(fields: List[Tuple[str, str]]) -> None:
    # A registry may offer Basic in one field and Bearer in the next; both are one list of challenges.
    options = options_for("registry.test", AuthConfig(registry_token="fixed-token"))
    authenticator = Authenticator(make_session(options), options, "registry.test", "repository:x:pull", "x")
    endpoint = Endpoint("https://registry.test", "registry.test", False)
    answer = Response(401, "Unauthorized", HTTPHeaderDict(fields), "https://registry.test/v2/", {})
    assert authenticator.learn(endpoint, answer)
    assert authenticator.header(endpoint) == {"Authorization": "Bearer fixed-token"}
