"""Optional token authentication: 401 without a valid token, 403 for a read-only token writing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests

from wes_arvados.web.auth import presented_token

from ..wes import DATA, WesClient, WesServer


@pytest.fixture
def secured(tmp_path: Path):
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_AUTH_TOKENS": "full-token",
                                                "WES_ARVADOS_AUTH_READ_TOKENS": "read-token"}).start()
    try:
        yield server
    finally:
        server.stop()
        server.kill_runs()


def _client(server: WesServer, token: str) -> WesClient:
    client = WesClient(server.url)
    client.http.headers["Authorization"] = f"Bearer {token}"
    return client


def test_tokens_guard_everything_but_service_info(secured: WesServer):
    assert requests.get(secured.url + "/service-info").status_code == 200
    anonymous = requests.get(secured.url + "/runs")
    assert anonymous.status_code == 401
    assert anonymous.json()["status_code"] == 401 and "requires a token" in anonymous.json()["msg"]
    wrong = requests.get(secured.url + "/runs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["msg"] == "the token is not valid for this server"

    full = _client(secured, "full-token")
    run_id = full.run(DATA / "hello.cwl", {"name": "a"})
    log = full.wait(run_id)
    output_url = log["outputs"]["greeting"]["location"]
    assert requests.get(output_url).status_code == 401  # downloads need the same credentials
    assert full.http.get(output_url).content == b"hello a\n"

    reader = _client(secured, "read-token")
    assert reader.get(f"/runs/{run_id}").status_code == 200
    denied = reader.submit(DATA / "hello.cwl", {"name": "b"})
    assert denied.status_code == 403 and denied.json()["status_code"] == 403
    assert reader.http.post(f"{reader.url}/runs/{run_id}/cancel").status_code == 403


def test_basic_auth_password_is_a_token(secured: WesServer):
    basic = "Basic " + base64.b64encode(b"anyone:full-token").decode()
    assert requests.get(secured.url + "/runs", headers={"Authorization": basic}).status_code == 200


@pytest.mark.parametrize("header,token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic " + base64.b64encode(b"u:p").decode(), "p"),
    ("Basic !!!", None), ("Digest x", None), (None, None), ("Bearer ", None), ("OAuth2 v2/zzzzz-gj3su-1/s3", "v2/zzzzz-gj3su-1/s3"),
])
def test_presented_token(header, token):
    assert presented_token(header) == token
