"""HTTPS on loopback for the double: a self-signed certificate and a TLS-wrapped `ThreadedServer`."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..threaded import ThreadedServer


def self_signed_certificate(directory: Path) -> Tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid for a day, written under `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arvados-test-double")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HttpsServer(ThreadedServer):
    """A `ThreadedServer` speaking TLS; handlers reach `app` as `self.server.app`."""

    def __init__(self, handler: Type[BaseHTTPRequestHandler], app: Any, certificate: Tuple[Path, Path]) -> None:
        super().__init__(handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, certificate))
        httpd = self._httpd
        # The handshake runs in the request's thread (see QuietHandler.setup), not in the accept loop.
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        httpd.app = app  # type: ignore[attr-defined]
        httpd.handle_error = _ignore_disconnects(httpd.handle_error)  # type: ignore[method-assign]


def _ignore_disconnects(handle_error: Any) -> Any:
    def handle(request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, socket.timeout, TimeoutError)):
            return
        handle_error(request, client_address)
    return handle


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, `Expect: 100-continue`) with no access log and JSON helpers."""

    protocol_version = "HTTP/1.1"
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        """The request body (Content-Length; chunked bodies are not used by the clients)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: Optional[Dict[str, str]] = None, head_only: bool = False) -> None:
        """Answer with `body` (its length announced even for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def send_json(self, status: int, document: Any, headers: Optional[Dict[str, str]] = None) -> None:
        """Answer with a JSON document."""
        self.send_bytes(status, json.dumps(document).encode(), headers=headers)
