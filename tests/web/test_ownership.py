"""Runs belong to who submitted them: users from a token file or an OIDC issuer, admins, and auth off on loopback only.

A real server; a real issuer of the tests' own (discovery document and JWKS over
HTTP on loopback) whose JWTs are signed with PyJWT.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, Iterator, List

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wes_arvados.local.store import RunStore

from ..threaded import ThreadedServer
from ..wes import DATA, ROOT, WesClient, WesServer, free_port

AUDIENCE = "wes-test"


def _client(server: WesServer, token: str) -> WesClient:
    client = WesClient(server.url)
    client.http.headers["Authorization"] = f"Bearer {token}"
    return client


def _counts(client: WesClient) -> Dict[str, int]:
    counts = client.get("/service-info").json()["system_state_counts"]
    return {state: n for state, n in counts.items() if n}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    bob_digest = hashlib.sha256(b"bob-token").hexdigest()
    path.write_text("# token user [role]\n"
                    "alice-token alice\n"
                    f"sha256:{bob_digest} bob   # written as its digest\n"
                    "carol-token carol admin\n"
                    "dave-token dave read\n")
    return path


@pytest.fixture
def users(tmp_path: Path, token_file: Path) -> Iterator[WesServer]:
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_AUTH_TOKEN_FILE": str(token_file)}).start()
    try:
        yield server
    finally:
        server.stop()
        server.kill_runs()


def test_a_run_is_its_submitters_alone_and_admins_see_every_run(users: WesServer, token_file: Path) -> None:
    alice, bob, carol, dave = (_client(users, f"{u}-token") for u in ("alice", "bob", "carol", "dave"))
    mine = alice.run(DATA / "hello.cwl", {"name": "alice"}, tags=json.dumps({"who": "alice"}))
    log = alice.wait(mine)
    assert log["state"] == "COMPLETE"
    theirs = bob.run(DATA / "hello.cwl", {"name": "bob"})
    bob.wait(theirs)

    # Another user gets 404 for every path of the run: it does not exist for them.
    output = log["outputs"]["greeting"]["location"]
    for path in (f"/runs/{mine}", f"/runs/{mine}/status", f"/runs/{mine}/tasks", f"/runs/{mine}/logs/stderr"):
        answer = bob.get(path)
        assert answer.status_code == 404 and answer.json()["msg"] == f"no run with id {mine!r}", (path, answer.text)
    assert bob.http.get(output).status_code == 404
    assert bob.post(f"/runs/{mine}/cancel").status_code == 404
    assert alice.http.get(output).content == b"hello alice\n"

    # Lists and counts are per user; the read-only user owns nothing and may not submit.
    assert [r["run_id"] for r in alice.get("/runs").json()["runs"]] == [mine]
    assert [r["run_id"] for r in bob.get("/runs").json()["runs"]] == [theirs]
    assert bob.get("/runs", params={"tag": "who:alice"}).json()["runs"] == []
    assert _counts(alice) == {"COMPLETE": 1} and _counts(bob) == {"COMPLETE": 1}
    assert dave.get("/runs").json()["runs"] == [] and dave.get(f"/runs/{mine}").status_code == 404
    assert dave.submit(DATA / "hello.cwl", {"name": "d"}).status_code == 403

    # The admin sees and reads both.
    assert {r["run_id"] for r in carol.get("/runs").json()["runs"]} == {mine, theirs}
    assert _counts(carol) == {"COMPLETE": 2}
    assert carol.http.get(output).content == b"hello alice\n"
    # service-info without a token answers, with no one's counts.
    anonymous = requests.get(users.url + "/service-info")
    assert anonymous.status_code == 200 and not any(anonymous.json()["system_state_counts"].values())

    # Users are added, and taken away, by editing the file: no restart.
    assert _client(users, "erin-token").get("/runs").status_code == 401
    time.sleep(0.01)  # a new modification time, whatever the file system's resolution
    token_file.write_text(token_file.read_text().replace("alice-token alice\n", "") + "erin-token erin\n")
    assert _client(users, "erin-token").get("/runs").json()["runs"] == []
    gone = alice.get("/runs")
    assert gone.status_code == 401 and gone.json()["msg"] == "the token is not valid for this server"


def test_a_malformed_token_file_stops_the_start_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("good-token alice\nonly-a-token\n")
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "serve", "--port", str(free_port()),
                           "--state-dir", str(tmp_path / "state")],
                          env={"PATH": "/usr/bin:/bin", "WES_ARVADOS_AUTH_TOKEN_FILE": str(bad)},
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 2
    assert f"{bad}, line 2: expected '<token> <user> [admin|read]'" in done.stderr


def test_auth_off_is_refused_beyond_loopback_and_said_on_loopback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "serve", "--host", "0.0.0.0",
                           "--port", str(free_port()), "--state-dir", str(tmp_path / "state")],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 2
    assert "authentication is off" in done.stderr and "not on 0.0.0.0" in done.stderr

    server = WesServer(tmp_path / "loopback").start()
    try:
        one = WesClient(server.url)
        run_id = one.run(DATA / "hello.cwl", {"name": "x"})
        assert [r["run_id"] for r in WesClient(server.url).get("/runs").json()["runs"]] == [run_id]
        one.wait(run_id)
    finally:
        server.stop()
        server.kill_runs()
    assert "authentication is off: every caller is one user" in server.log_path.read_text()


def test_runs_of_a_state_directory_from_before_owners_are_the_anonymous_users(tmp_path: Path) -> None:
    database = tmp_path / "wes.sqlite"
    with sqlite3.connect(database) as old:
        old.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, "
                    "state TEXT NOT NULL, request TEXT NOT NULL, submitted_time TEXT NOT NULL, start_time TEXT, "
                    "end_time TEXT, exit_code INTEGER, cmd TEXT, supervisor_pid INTEGER, supervisor_started REAL, "
                    "engine_pid INTEGER, claimed_time TEXT)")
        old.execute("INSERT INTO runs (run_id, state, request, submitted_time) VALUES ('r1', 'COMPLETE', '{}', 't')")
    store = RunStore(database)
    assert store.get("r1", "anonymous").run_id == "r1"
    assert [r.run_id for r in store.page(10, None, [], {}, "anonymous")[0]] == ["r1"]
    assert store.page(10, None, [], {}, "alice")[0] == []


# ---- OIDC ------------------------------------------------------------------------------------


class Issuer:
    """An OIDC issuer on loopback: a discovery document and a JWKS, with keys added while it serves."""

    def __init__(self) -> None:
        self.keys: Dict[str, Any] = {}  # kid -> private key
        self.published: List[str] = []
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = {"keys": [issuer.public_jwk(kid) for kid in issuer.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadedServer(Handler)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def add_key(self, kid: str, kind: str, publish: bool = True) -> None:
        """A new RSA or EC key, published in the JWKS unless told."""
        self.keys[kid] = rsa.generate_private_key(65537, 2048) if kind == "RS256" else ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.published.append(kid)

    def public_jwk(self, kid: str) -> Dict[str, Any]:
        """The public half of a key as a JWK."""
        key = self.keys[kid].public_key()
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
        return {**json.loads(algorithm.to_jwk(key)), "kid": kid, "use": "sig"}

    def token(self, kid: str, sub: str, **claims: Any) -> str:
        """A JWT for `sub` signed with the key `kid`."""
        algorithm = "RS256" if isinstance(self.keys[kid], rsa.RSAPrivateKey) else "ES256"
        body = {"iss": self.url, "aud": AUDIENCE, "sub": sub, "exp": int(time.time()) + 300, **claims}
        return jwt.encode(body, self.keys[kid], algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def oidc(tmp_path: Path) -> Iterator[tuple]:
    issuer = Issuer()
    issuer.add_key("rsa-1", "RS256")
    issuer.add_key("ec-1", "ES256")
    issuer.server.start()
    server = WesServer(tmp_path / "state", env={
        "WES_ARVADOS_OIDC_ISSUER": issuer.url, "WES_ARVADOS_OIDC_AUDIENCE": AUDIENCE,
        "WES_ARVADOS_ADMIN_USERS": "root@example.org"}).start()
    try:
        yield issuer, server
    finally:
        server.stop()
        server.kill_runs()
        issuer.server.stop()


def _refused(server: WesServer, token: str) -> str:
    answer = _client(server, token).get("/runs")
    assert answer.status_code == 401, answer.text
    return answer.json()["msg"]


def test_oidc_tokens_name_their_user_and_are_checked_for_issuer_audience_expiry_and_key(oidc: tuple) -> None:
    issuer, server = oidc
    alice = _client(server, issuer.token("rsa-1", "alice@example.org"))
    bob = _client(server, issuer.token("ec-1", "bob@example.org"))
    root = _client(server, issuer.token("ec-1", "root@example.org"))
    run_id = alice.run(DATA / "hello.cwl", {"name": "a"})
    assert bob.get(f"/runs/{run_id}/status").status_code == 404
    assert bob.get("/runs").json()["runs"] == []
    assert [r["run_id"] for r in root.get("/runs").json()["runs"]] == [run_id]
    alice.wait(run_id)

    assert "not for this service" in _refused(server, issuer.token("rsa-1", "alice", aud="another-service"))
    assert "not from the issuer" in _refused(server, issuer.token("rsa-1", "alice", iss="https://evil.example.org"))
    assert "the token has expired" == _refused(server, issuer.token("rsa-1", "alice", exp=int(time.time()) - 600))
    # Signed with a key the issuer never published; and the HS256 trick (the public key as the secret).
    issuer.add_key("rogue", "RS256", publish=False)
    assert "does not publish" in _refused(server, issuer.token("rogue", "alice"))
    public = issuer.keys["rsa-1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 60},
                        public.hex(), algorithm="HS256", headers={"kid": "rsa-1"})
    assert "algorithm must be one of RS256, ES256" in _refused(server, forged)
    assert _refused(server, "eyJhbGciOiJSUzI1NiJ9.e30.") == "the token names no key id (kid) of the issuer's key set"
    assert _refused(server, "eyJ0IGpzb24.e30.") == "the token is not a valid JWT"


def test_a_rotated_key_is_fetched_when_a_token_names_it(oidc: tuple) -> None:
    issuer, server = oidc
    assert _client(server, issuer.token("rsa-1", "alice")).get("/runs").status_code == 200
    fetches = issuer.jwks_fetches
    issuer.add_key("rsa-2", "RS256")  # the issuer rotates: a key the server has not seen
    assert _client(server, issuer.token("rsa-2", "alice")).get("/runs").status_code == 200
    assert issuer.jwks_fetches == fetches + 1
    # Known keys are not fetched again.
    for _ in range(3):
        assert _client(server, issuer.token("rsa-1", "alice")).get("/runs").status_code == 200
    assert issuer.jwks_fetches == fetches + 1
