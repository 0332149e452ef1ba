"""The operator's image policy and per-request registry credentials (X-Registry-Auth)."""

from __future__ import annotations

import base64
import json

import pytest

from wes_arvados.images.errors import ImageError
from wes_arvados.images.policy import ImageDenied, ImagePolicy
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.registry.credentials import AuthConfig, parse_registry_auth
from wes_arvados.web.errors import image_status


@pytest.mark.parametrize("allow,deny,image,allowed", [
    ([], [], "debian:stable-slim", True),
    (["docker.io/library/*"], [], "debian:stable-slim", True),
    (["docker.io/library/*"], [], "quay.io/x/y:1", False),
    (["docker.io"], [], "bash:4.4", True),
    (["127.0.0.1:5000/*"], [], "127.0.0.1:5000/x/img:1", True),
    ([], ["docker.io/library/ubuntu"], "ubuntu", False),
    ([], ["docker.io/library/ubuntu"], "ubuntu:22.04", False),
    ([], ["docker.io/library/ubuntu:22.04"], "ubuntu:24.04", True),
    (["*"], ["quay.io/*"], "quay.io/a/b", False),
])
def test_deny_wins_and_an_empty_allow_list_allows_everything(allow, deny, image, allowed) -> None:
    policy = ImagePolicy(allow, deny)
    ref = parse_normalized_named(image)
    if allowed:
        policy.check(ref)
    else:
        with pytest.raises(ImageDenied, match=str(ref).replace(".", r"\.")) as info:
            policy.check(ref)
        assert image_status(info.value) == 403


def _header(doc: object, urlsafe: bool = True) -> str:
    raw = json.dumps(doc).encode()
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode().rstrip("=")


def test_registry_auth_takes_dockers_auth_config_and_config_json_auths() -> None:
    assert parse_registry_auth(_header({"username": "u", "password": "p", "serveraddress": "https://index.docker.io/v1/"})) \
        == {"docker.io": AuthConfig("u", "p")}
    auth = base64.b64encode(b"alice:secret").decode()
    assert parse_registry_auth(_header({"auths": {"registry.lan:5000": {"auth": auth}}}, urlsafe=False)) == \
        {"registry.lan:5000": AuthConfig("alice", "secret")}
    assert parse_registry_auth(_header({"quay.io": {"identitytoken": "tok"}})) == \
        {"quay.io": AuthConfig(identity_token="tok")}


def test_registry_auth_never_runs_credential_helpers() -> None:
    assert parse_registry_auth(_header({"credHelpers": {"docker.io": "evil"}})) == {}


@pytest.mark.parametrize("header,message", [
    ("%%%", "not base64-encoded JSON"),
    (_header(["a"]), "not a JSON object"),
    (_header({"username": "u", "password": "s3cret"}), "serveraddress"),
    (_header({"auths": {"r": {"auth": "bm90LWEtcGFpcg=="}}}), "not base64 of user:password"),
])
def test_a_bad_registry_auth_header_is_a_bad_request_that_quotes_no_secret(header: str, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        parse_registry_auth(header)
    assert image_status(info.value) == 400
    assert "s3cret" not in str(info.value) and header not in str(info.value)
