"""Where the registry client finds credentials: Docker config files, credential helpers, per-call entries.

Helpers are real executables (`docker-credential-<name>` shell scripts put on PATH)
that speak Docker's credential-helper protocol: `get` with the server URL on stdin,
JSON on stdout, "credentials not found" when there are none.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Dict, Mapping, Tuple

import pytest

from wes_arvados.images.errors import AuthError, ImageError
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry import RegistryOptions, Repository
from wes_arvados.images.registry.credentials import (
    AuthConfig,
    Credentials,
    DockerConfig,
    canonical_registry,
    default_docker_config,
)

from .builder import Image, ImageFactory, push
from .registry import Registry
from .test_registry_auth import REFRESH_TOKEN, contents, pull
from .test_registry_auth import refresh_registry as _refresh_registry
from .tokenserver import TokenServer

FAST = RegistryOptions(backoff=0.01, max_attempts=3)
refresh_registry = _refresh_registry  # the fixture, shared with test_registry_auth


@pytest.fixture
def small(image_factory: ImageFactory) -> Image:
    """Six tiny blobs."""
    return image_factory.many_layers(5)


def write_config(path: Path, config: dict) -> Path:
    """A config.json-like file, as `docker login` or a Kubernetes Secret leaves it."""
    path.write_text(json.dumps(config))
    return path


def b64(text: str) -> str:
    """The `auth` field's encoding."""
    return base64.b64encode(text.encode()).decode()


def open_repository(host: str, name: str, credentials: Credentials) -> Repository:
    """A Repository for host/name:v1 that knows `credentials`."""
    return Repository(parse_normalized_named(f"{host}/{name}:v1"), replace(FAST, credentials=credentials))


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install `docker-credential-<name>` on PATH answering `answers` (server URL -> (Username, Secret)).

    Returns a function `install(name, answers) -> log path`; each `get` appends "ACTION SERVER" to the log.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def install(name: str, answers: Mapping[str, Tuple[str, str]]) -> Path:
        log = tmp_path / f"{name}.log"
        answer = {server: json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
                  for server, (user, secret) in answers.items()}
        cases = "".join(f"  '{server}') printf '%s' '{text}' ;;\n" for server, text in answer.items())
        script = bin_dir / f"docker-credential-{name}"
        script.write_text("#!/bin/sh\n"
                          "read -r server\n"
                          f"echo \"$1 $server\" >> '{log}'\n"
                          "case \"$server\" in\n"
                          f"{cases}"
                          "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
                          "esac\n")
        script.chmod(0o755)
        return log

    return install


# ------------------------------------------------------------------------------ config files


@pytest.mark.parametrize("entry", [
    {"auth": b64("reader:bookworm")},
    {"username": "reader", "password": "bookworm"},
], ids=["base64-auth", "username-password"])
def test_a_config_file_gives_credentials_for_its_registry(basic_registry: Registry, repo: str, small: Image,
                                                          tmp_path: Path, entry: Dict[str, str]) -> None:
    push(basic_registry, repo, "v1", small)
    path = write_config(tmp_path / "config.json", {"auths": {f"http://{basic_registry.host}/": entry}})
    assert pull(open_repository(basic_registry.host, repo, Credentials.from_files([path]))) == contents(small)


def test_a_mounted_kubernetes_secret_is_read_in_both_formats(basic_registry: Registry, repo: str, small: Image,
                                                             tmp_path: Path) -> None:
    push(basic_registry, repo, "v1", small)
    # kubernetes.io/dockerconfigjson holds a config.json; the older kubernetes.io/dockercfg a bare auths map.
    new = write_config(tmp_path / ".dockerconfigjson", {"auths": {basic_registry.host: {"auth": b64("reader:x")}}})
    old = write_config(tmp_path / ".dockercfg", {basic_registry.host: {"auth": b64("reader:bookworm")}})
    assert pull(open_repository(basic_registry.host, repo, Credentials.from_files([old]))) == contents(small)
    # The first file that names the registry wins, so the wrong password in `new` is used.
    with pytest.raises(AuthError):
        pull(open_repository(basic_registry.host, repo, Credentials.from_files([new, old])))


def test_per_call_credentials_win_over_config_files(basic_registry: Registry, repo: str, small: Image,
                                                    tmp_path: Path) -> None:
    push(basic_registry, repo, "v1", small)
    path = write_config(tmp_path / "config.json", {"auths": {basic_registry.host: {"auth": b64("reader:wrong")}}})
    from_file = Credentials.from_files([path])
    with pytest.raises(AuthError):
        pull(open_repository(basic_registry.host, repo, from_file))
    per_call = from_file.with_explicit({f"https://{basic_registry.host}": AuthConfig("reader", "bookworm")})
    assert pull(open_repository(basic_registry.host, repo, per_call)) == contents(small)
    assert from_file.for_registry(basic_registry.host).password == "wrong"  # the original is unchanged


def test_an_identitytoken_in_a_config_file_is_exchanged_for_tokens(refresh_registry: Tuple[Registry, TokenServer],
                                                                   small: Image, tmp_path: Path) -> None:
    reg, server = refresh_registry
    push(reg, "test/identity-file", "v1", small)
    server.reset()
    path = write_config(tmp_path / "config.json", {"auths": {reg.host: {"auth": b64("alice:"),
                                                                         "identitytoken": REFRESH_TOKEN}}})
    assert pull(open_repository(reg.host, "test/identity-file", Credentials.from_files([path]))) == contents(small)
    assert [r.method for r in server.requests] == ["POST"]


def test_unreadable_config_files_are_errors_that_keep_secrets(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read registry config"):
        Credentials.from_files([tmp_path / "missing.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ImageError, match="not valid JSON"):
        Credentials.from_files([bad])
    secret = "c2VjcmV0LXdpdGhvdXQtY29sb24"  # base64 of a password without "user:"
    path = write_config(tmp_path / "config.json", {"auths": {"registry.example": {"auth": secret}}})
    with pytest.raises(ImageError) as caught:
        Credentials.from_files([path])
    assert str(path) in str(caught.value) and secret not in str(caught.value)


def test_registry_keys_are_read_as_docker_writes_them() -> None:
    assert canonical_registry("https://index.docker.io/v1/") == "docker.io"
    assert canonical_registry("registry-1.docker.io") == "docker.io"
    assert canonical_registry("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert canonical_registry("Quay.io/some/path") == "quay.io"
    config = DockerConfig.parse({"auths": {"https://index.docker.io/v1/": {"auth": b64("me:pw")}}})
    assert Credentials(configs=[config]).for_registry("docker.io").username == "me"


def test_the_default_config_follows_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert default_docker_config() is None
    write_config(tmp_path / "config.json", {"auths": {}})
    assert default_docker_config() == tmp_path / "config.json"


# --------------------------------------------------------------------------- credential helpers


def test_a_cred_helper_answers_for_its_registry(basic_registry: Registry, repo: str, small: Image, tmp_path: Path,
                                                helper) -> None:
    push(basic_registry, repo, "v1", small)
    log = helper("westest", {basic_registry.host: ("reader", "bookworm")})
    path = write_config(tmp_path / "config.json", {"credHelpers": {basic_registry.host: "westest"},
                                                   "auths": {basic_registry.host: {"auth": b64("reader:wrong")}}})
    assert pull(open_repository(basic_registry.host, repo, Credentials.from_files([path]))) == contents(small)
    assert log.read_text().splitlines() == [f"get {basic_registry.host}"]


def test_a_creds_store_answers_for_every_registry_it_knows(basic_registry: Registry, registry: Registry, repo: str,
                                                           small: Image, tmp_path: Path, helper) -> None:
    push(basic_registry, repo, "v1", small)
    push(registry, repo, "v1", small)
    log = helper("westore", {basic_registry.host: ("reader", "bookworm")})
    credentials = Credentials.from_files([write_config(tmp_path / "config.json", {"credsStore": "westore"})])
    assert pull(open_repository(basic_registry.host, repo, credentials)) == contents(small)
    # Asked once per pull, not once per request.
    assert log.read_text().splitlines() == [f"get {basic_registry.host}"]
    # An anonymous registry never asks for credentials, so the helper is not run for it.
    assert pull(open_repository(registry.host, repo, credentials)) == contents(small)
    assert log.read_text().splitlines() == [f"get {basic_registry.host}"]
    # A registry the store knows nothing of is anonymous.
    assert credentials.for_registry(registry.host) == AuthConfig()
    # Docker Hub is asked for by its historical server URL.
    assert credentials.for_registry("docker.io") == AuthConfig()
    assert "get https://index.docker.io/v1/" in log.read_text().splitlines()


def test_a_helper_token_answer_is_an_identity_token(refresh_registry: Tuple[Registry, TokenServer], small: Image,
                                                    tmp_path: Path, helper) -> None:
    reg, server = refresh_registry
    push(reg, "test/helper-token", "v1", small)
    server.reset()
    helper("wetoken", {reg.host: ("<token>", REFRESH_TOKEN)})
    path = write_config(tmp_path / "config.json", {"credHelpers": {reg.host: "wetoken"}})
    assert pull(open_repository(reg.host, "test/helper-token", Credentials.from_files([path]))) == contents(small)
    assert [r.method for r in server.requests] == ["POST"]


def test_a_missing_or_failing_helper_is_an_error_without_secrets(tmp_path: Path, helper) -> None:
    config = DockerConfig.parse({"credHelpers": {"registry.example": "absent"}})
    with pytest.raises(ImageError, match="docker-credential-absent could not run"):
        Credentials(configs=[config]).for_registry("registry.example")
    broken = tmp_path / "bin" / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'password hunter2 rejected' >&2\nexit 3\n")
    broken.chmod(0o755)
    config = DockerConfig.parse({"credHelpers": {"registry.example": "broken"}})
    with pytest.raises(ImageError) as caught:
        Credentials(configs=[config]).for_registry("registry.example")
    assert "docker-credential-broken failed for registry.example" in str(caught.value)
    assert "hunter2" not in str(caught.value)

