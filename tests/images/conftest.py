"""Fixtures for image tests: real registries on loopback, a token server, a fault proxy and docker.

Registries and the token server live for the whole session (starting one costs ~0.1 s,
but tests are many); each test gets its own repository name from `repo` so they do not
see each other's images. Fixtures that a test can change (proxy rules, token server
settings) are reset around each test.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from ..wes import require
from .builder import Image, ImageFactory, push
from .docker import DockerDaemon
from .registry import REGISTRY_BIN, FaultProxy, Registry
from .tokenserver import TokenServer

USERS = {"alice": "wonderland", "reader": "bookworm"}
_repo_numbers = itertools.count()


def _require_registry() -> None:
    require(REGISTRY_BIN.exists(), f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def image_factory() -> ImageFactory:
    """Builds (once) the standard test images: schema2, OCI, index, zstd, many/empty layers, big."""
    return ImageFactory()


@pytest.fixture
def small(image_factory: ImageFactory) -> Image:
    """Six tiny blobs: many requests, little data."""
    return image_factory.many_layers(5)  # type: ignore[return-value]


@pytest.fixture
def pushed(fault_proxy: FaultProxy, repo: str, image_factory: ImageFactory) -> Image:
    """The schema2 busybox image in `registry`, pushed through the proxy, whose record is then cleared."""
    image = image_factory.docker_schema2()
    push(fault_proxy, repo, "v1", image)
    fault_proxy.clear()
    return image


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses, e.g. `test/push-index-3`."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-")
    return f"test/{name}-{next(_repo_numbers)}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry (pull and push without credentials)."""
    _require_registry()
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd Basic auth for USERS; `credentials` is alice's."""
    _require_registry()
    with Registry(tmp_path_factory.mktemp("basic-registry"), users=USERS) as reg:
        yield reg


@pytest.fixture(scope="session")
def _token_server_session() -> Iterator[TokenServer]:
    with TokenServer(users=USERS, access={"alice": {"*": ["*"]}, "reader": {"*": ["pull"]}},
                     anonymous={"public/*": ["pull"]}) as server:
        yield server


_TOKEN_SETTINGS = ("users", "access", "anonymous", "response_keys", "expires_in", "issued_at", "valid_for",
                   "key_reference")


@pytest.fixture
def token_server(_token_server_session: TokenServer) -> Iterator[TokenServer]:
    """The token server of `token_registry`: alice may push anything, reader may pull, anyone may pull public/*.

    Its record of requests starts empty and settings a test changes are put back after it.
    """
    server = _token_server_session
    saved = {name: getattr(server, name) for name in _TOKEN_SETTINGS}
    server.reset()
    try:
        yield server
    finally:
        for name, value in saved.items():
            setattr(server, name, value)
        server.reset()


@pytest.fixture(scope="session")
def _token_registry_session(tmp_path_factory: pytest.TempPathFactory,
                            _token_server_session: TokenServer) -> Iterator[Registry]:
    _require_registry()
    with Registry(tmp_path_factory.mktemp("token-registry"), token_server=_token_server_session) as reg:
        yield reg


@pytest.fixture
def token_registry(_token_registry_session: Registry, token_server: TokenServer) -> Registry:
    """A registry with token auth that itself verifies the JWTs of `token_server`."""
    return _token_registry_session


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of `registry`, with no rules and no counts yet.

    For another registry, build one in the test: `with FaultProxy(token_registry) as proxy:`.
    """
    with FaultProxy(registry) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """The machine's docker daemon, or a private dockerd (WES_TEST_PRIVATE_DOCKERD=1 forces one)."""
    reuse = os.environ.get("WES_TEST_PRIVATE_DOCKERD", "") != "1"
    reason = DockerDaemon.unavailable_reason(reuse)
    require(reason is None, reason or "")
    daemon = DockerDaemon(Path(tmp_path_factory.mktemp("docker")), reuse_system=reuse).start()
    try:
        yield daemon
    finally:
        daemon.stop()
