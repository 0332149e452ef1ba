"""A Docker token-auth server for tests: issues JWTs that distribution 2.8 itself verifies.

The protocol is the one of https://distribution.github.io/distribution/spec/auth/token/:
a client that got `401 WWW-Authenticate: Bearer realm=…,service=…,scope=…` from the
registry asks `GET realm?service=…&scope=repository:NAME:pull,push` (with Basic
credentials or anonymously) and receives `{"token": JWT, ...}`.

The claims and the key reference follow distribution's `registry/auth/token/token.go`
at v2.8.2: `aud` is a single string, `exp`/`nbf` are checked with a 60 s leeway, and
the signing key is found through `x5c` (chained to the registry's `rootcertbundle`)
or through `kid`, the libtrust fingerprint of a key of that bundle.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from ..threaded import ThreadedServer

#: distribution adds this many seconds to `exp` (and takes them from `nbf`) when it checks a token.
LEEWAY = 60
SERVICE = "wes-arvados-test-registry"
ISSUER = "wes-arvados-test-token-server"

Access = Mapping[str, Sequence[str]]  # repository name pattern (fnmatch) -> actions ("pull", "push", "*")


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key) -> str:
    """The `kid` distribution expects: libtrust's fingerprint of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def parse_scope(scope: str) -> Tuple[str, str, List[str]]:
    """Split `repository:name:pull,push` (a name may hold `:` for a registry port) into its parts."""
    rtype, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return rtype, name, [a for a in actions.split(",") if a]


@dataclass
class TokenRequest:
    """One request the token server answered, for tests to inspect."""

    method: str
    user: Optional[str]
    service: Optional[str]
    scopes: List[str]
    status: int
    access: List[dict] = field(default_factory=list)
    at: float = field(default_factory=time.time)


class SigningKey:
    """A key pair and the self-signed certificate the registry's `rootcertbundle` holds."""

    def __init__(self, algorithm: str = "RS256") -> None:
        if algorithm == "RS256":
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            self.private_key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"unsupported algorithm {algorithm}")
        self.algorithm = algorithm
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wes-arvados test token issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.private_key, hashes.SHA256())
        )
        self.key_id = libtrust_key_id(self.private_key.public_key())

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM, the content of the registry's `rootcertbundle`."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: bytes) -> bytes:
        """A JWS signature of `message` (ES256 as the raw r||s pair JOSE requires)."""
        if self.algorithm == "RS256":
            return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class TokenServer(ThreadedServer):
    """A threaded token server on loopback; its settings may be changed while it runs.

    `users` maps user names to passwords; `access` maps a user to the actions it may
    take on repositories matching each pattern; `anonymous` is what a client without
    credentials gets. A request for more than allowed gets a token with less, as
    real token servers do, and the registry then answers `insufficient_scope`.
    """

    thread_name = "token-server"

    def __init__(self, users: Optional[Mapping[str, str]] = None, access: Optional[Mapping[str, Access]] = None,
                 anonymous: Optional[Access] = None, *, service: str = SERVICE, issuer: str = ISSUER,
                 response_keys: Sequence[str] = ("token", "access_token"), expires_in: Optional[int] = 300,
                 issued_at: bool = True, valid_for: Optional[float] = None, algorithm: str = "RS256",
                 key_reference: str = "x5c", port: int = 0) -> None:
        self.users: Dict[str, str] = dict(users if users is not None else {"alice": "wonderland"})
        self.access: Dict[str, Access] = dict(access if access is not None else {u: {"*": ["*"]} for u in self.users})
        self.anonymous: Access = dict(anonymous or {})
        self.service = service
        self.issuer = issuer
        self.response_keys = tuple(response_keys)
        self.expires_in = expires_in
        self.issued_at = issued_at
        #: Seconds the registry accepts a token (None: `expires_in`, or 300); small values test renewal.
        self.valid_for = valid_for
        self.key_reference = key_reference
        self.key = SigningKey(algorithm)
        self.requests: List[TokenRequest] = []
        self._failures: List[int] = []
        self._padding: List[int] = []
        self._lock = threading.Lock()
        super().__init__(_handler(self), port)

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def realm(self) -> str:
        """The token endpoint the registry names in its Bearer challenge."""
        return self.url + "/token"

    @property
    def default_credentials(self) -> Optional[Tuple[str, str]]:
        """The first user and its password (the one fixtures push with)."""
        return next(iter(self.users.items()), None)

    def write_cert_bundle(self, path: Path) -> Path:
        """Write the certificate the registry must trust (its `rootcertbundle`)."""
        path.write_bytes(self.key.cert_pem)
        return path

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (e.g. 500) instead of a token."""
        with self._lock:
            self._failures.extend([status] * times)

    def pad(self, size: int, times: int = 1) -> None:
        """Make the next `times` token answers at least `size` bytes long (a "padding" member), as a broken server's."""
        with self._lock:
            self._padding.extend([size] * times)

    def count(self, scope: Optional[str] = None) -> int:
        """How many token requests were answered (that asked for `scope`, if given)."""
        with self._lock:
            return sum(1 for r in self.requests if scope is None or scope in r.scopes)

    def reset(self) -> None:
        """Forget recorded requests and pending failures."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._padding.clear()

    def grant(self, user: Optional[str], scopes: Sequence[str]) -> List[dict]:
        """The `access` claim for `user` (None: anonymous) asking for `scopes`."""
        rules = self.anonymous if user is None else self.access.get(user, {})
        granted: List[dict] = []
        for scope in scopes:
            rtype, name, wanted = parse_scope(scope)
            allowed = {a for pattern, actions in rules.items() if fnmatch.fnmatchcase(name, pattern) for a in actions}
            actions = wanted if "*" in allowed else [a for a in wanted if a in allowed]
            if actions:
                granted.append({"type": rtype, "name": name, "actions": actions})
        return granted

    def issue(self, user: Optional[str], access: List[dict], audience: Optional[str] = None) -> str:
        """A signed JWT for `user` with `access`, valid at the registry for `valid_for` seconds (less the fraction
        of the current second, as JWT times are whole seconds)."""
        now = int(time.time())
        # The registry accepts a token until exp + LEEWAY, so a short life means an early exp.
        exp = now + (self.expires_in or 300) if self.valid_for is None else int(now + self.valid_for) - LEEWAY
        claims = {"iss": self.issuer, "sub": user or "", "aud": audience or self.service, "exp": exp,
                  "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header: dict = {"typ": "JWT", "alg": self.key.algorithm}
        if self.key_reference == "x5c":
            header["x5c"] = [base64.b64encode(self.key.certificate.public_bytes(serialization.Encoding.DER)).decode()]
        elif self.key_reference == "kid":
            header["kid"] = self.key.key_id
        else:
            raise ValueError(f"unknown key_reference {self.key_reference}")
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        return signing_input + "." + b64url(self.key.sign(signing_input.encode()))

    def _answer(self, method: str, user: Optional[str], password: Optional[str], params: Mapping[str, List[str]]
                ) -> Tuple[int, dict]:
        service = (params.get("service") or [None])[0]
        scopes = [s for value in params.get("scope", []) for s in value.split(" ") if s]
        record = TokenRequest(method=method, user=user, service=service, scopes=scopes, status=200)
        with self._lock:
            self.requests.append(record)
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            record.status = failure
            return failure, {"errors": [{"code": "UNAVAILABLE", "message": "injected failure"}]}
        if user is not None and self.users.get(user) != password:
            record.status = 401
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user name or password"}]}
        if service != self.service:
            record.status = 400
            return 400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]}
        record.access = self.grant(user, scopes)
        token = self.issue(user, record.access)
        body: dict = {key: token for key in self.response_keys}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.issued_at:
            body["issued_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            padding = self._padding.pop(0) if self._padding else 0
        if padding:
            body["padding"] = "x" * padding
        return 200, body


def _handler(server: TokenServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, format: str, *args: object) -> None:  # quiet: requests are recorded instead
            pass

        def _credentials(self) -> Tuple[Optional[str], Optional[str]]:
            header = self.headers.get("Authorization", "")
            if not header.lower().startswith("basic "):
                return None, None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="wes-arvados test token server"')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                return self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            self._reply(*server._answer("GET", *self._credentials(), parse_qs(url.query)))

        def do_POST(self) -> None:
            """The OAuth2 form (grant_type=password) some clients use; no refresh tokens."""
            length = int(self.headers.get("Content-Length") or 0)
            params = parse_qs(self.rfile.read(length).decode())
            if urlsplit(self.path).path != "/token" or params.get("grant_type") != ["password"]:
                return self._reply(400, {"error": "unsupported_grant_type"})
            user, password = params.get("username", [""])[0], params.get("password", [""])[0]
            self._reply(*server._answer("POST", user, password, params))

    return Handler
