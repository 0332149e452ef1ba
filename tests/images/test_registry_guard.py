"""With the server's fetch guard, a registry's token realm and redirects go nowhere private unless allow-listed.

The registry an image reference names is the image policy's to allow, so it is
trusted; what it sends the client to (a realm, a blob's storage) is checked. Real
registries, the token server, the fault proxy and small registries of our own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from wes_arvados.config import Config, image_settings
from wes_arvados.fetch_guard import FetchGuard
from wes_arvados.images.errors import RegistryError
from wes_arvados.images.pull import PullOptions, pull
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry import RegistryOptions, Repository

from .builder import Image, ImageFactory, push
from .registry import FaultProxy, Registry, Status
from .test_registry_auth import contents
from .test_registry_auth import pull as read_image
from .test_registry_blobs import StaticRegistry
from .tokenserver import TokenServer

FAST = RegistryOptions(backoff=0.01, max_attempts=3)


def guarded(*allow: str) -> RegistryOptions:
    """Registry options as the server's, with `allow` as its fetch_allow."""
    return replace(FAST, fetch_guard=FetchGuard(allow))


def test_the_server_gives_its_registry_client_the_guard_of_its_setting() -> None:
    settings = image_settings(Config(fetch_allow=["10.0.0.0/8"]).validate())
    assert settings.registry.fetch_guard is not None and settings.registry.fetch_guard.allow == ["10.0.0.0/8"]


def test_a_token_realm_at_a_metadata_address_is_refused_and_nothing_is_stored(
        fault_proxy: FaultProxy, repo: str, pushed: Image, tmp_path: Path) -> None:
    realm = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    fault_proxy.add_rule("^/v2/$", Status(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'}),
                         times=None)
    with pytest.raises(RegistryError) as caught:
        # Even with every private range allowed: a metadata address must be named alone.
        pull(parse_normalized_named(f"{fault_proxy.host}/{repo}:v1"), tmp_path / "out.tar",
             PullOptions(cache_dir=tmp_path / "cache", registry=guarded("0.0.0.0/0", "::/0")))
    message = str(caught.value)
    assert f"token request to {realm}" in message
    assert "169.254.169.254:80 is refused: 169.254.169.254 is a cloud metadata address" in message
    assert "only by naming it in the fetch_allow setting" in message
    assert not (tmp_path / "out.tar").exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "sha256" in p.parts] == []
    assert fault_proxy.count("GET", "/manifests/") == 0


def test_a_token_realm_on_another_loopback_port_is_refused_unless_allow_listed(
        token_registry: Registry, token_server: TokenServer, repo: str, small: Image) -> None:
    public = "public/" + repo.split("/", 1)[1]
    push(token_registry, public, "v1", small)
    token_server.reset()
    reference = parse_normalized_named(f"{token_registry.host}/{public}:v1")
    with pytest.raises(RegistryError) as caught:
        read_image(Repository(reference, guarded()))
    realm_host = token_server.url.split("//", 1)[1].split("/", 1)[0]
    assert f"{realm_host} is refused: 127.0.0.1 is a loopback address" in str(caught.value)
    assert token_server.requests == []
    # The registry itself is the image policy's: allowing the realm is enough.
    assert read_image(Repository(reference, guarded(realm_host))) == contents(small)
    assert read_image(Repository(reference, guarded("127.0.0.0/8"))) == contents(small)
    # The pull command on a user's machine has no guard.
    assert read_image(Repository(reference, FAST)) == contents(small)


def test_a_blob_redirect_to_a_private_address_is_refused_unless_allow_listed(image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    with StaticRegistry.of("test/redirect", image, address="127.0.0.2") as storage, \
            StaticRegistry.of("test/redirect", image, redirect_blobs=storage.url) as front:
        reference = parse_normalized_named(f"{front.host}/test/redirect:v1")
        with pytest.raises(RegistryError) as caught:
            read_image(Repository(reference, guarded()))
        assert f"{storage.host} is refused: 127.0.0.2 is a loopback address" in str(caught.value)
        assert storage.headers_of("GET", "/") == []
        assert read_image(Repository(reference, guarded("127.0.0.2"))) == contents(image)
    assert len(storage.headers_of("GET", "/blobs/")) == len(image.blobs())


def test_a_mirror_the_operator_configured_is_trusted_as_the_registry_is(fault_proxy: FaultProxy, repo: str,
                                                                         pushed: Image) -> None:
    upstream = "registry.invalid"
    options = replace(guarded(), mirrors={upstream: [fault_proxy.url]})
    reference = parse_normalized_named(f"{upstream}/{repo}:v1")
    assert read_image(Repository(reference, options)) == contents(pushed)
    assert fault_proxy.count("GET", "/manifests/") == 1


def test_a_registry_an_image_names_may_be_private_but_never_a_metadata_address(fault_proxy: FaultProxy, repo: str,
                                                                               pushed: Image) -> None:
    reference = parse_normalized_named(f"{fault_proxy.host}/{repo}:v1")
    assert read_image(Repository(reference, guarded())) == contents(pushed)  # loopback: the image policy's
    with pytest.raises(RegistryError, match="169.254.169.254:80 is refused: 169.254.169.254 is a cloud metadata"):
        Repository(parse_normalized_named("169.254.169.254:80/latest/meta-data:v1"), guarded("0.0.0.0/0")
                   ).get_manifest("v1")
