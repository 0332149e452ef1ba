"""Handing a run's registry credentials from the web worker that took the request to the run's supervisor.

Per-run credentials (``X-Registry-Auth``) must never be written anywhere, yet
the supervisor that pulls the run's images is another process, started later by
a scheduler. So the web worker keeps them in memory and offers them once on an
abstract Unix socket (no file; paths of run directories can be longer than a
socket path may be) whose random name it writes in the run directory, and only
to a peer of the same user (checked with SO_PEERCRED); the supervisor collects
them while the run is INITIALIZING. If the web worker is gone by then (a
restart), nobody answers and the run learns that its credentials were lost. An
offer lapses after `OFFER_TTL`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

from ..images.registry import AuthConfig

NAME_FILE = "registry-auth.handoff"
# How long a queued run's credentials are kept for it.
OFFER_TTL = 7 * 24 * 3600.0
_PEERCRED = struct.Struct("3i")


class CredentialsLost(Exception):
    """The run was submitted with credentials, but the process keeping them is gone."""


def name_file(run_root: Path) -> Path:
    """The file holding the name of the socket a run's credentials are offered on."""
    return run_root / NAME_FILE


def offer(run_root: Path, credentials: Dict[str, AuthConfig], ttl: float = OFFER_TTL) -> None:
    """Serve `credentials` once, to a process of this user, from a daemon thread."""
    payload = json.dumps({registry: asdict(auth) for registry, auth in credentials.items()}).encode()
    name = f"wes-arvados-credentials-{secrets.token_hex(16)}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(1)
    server.settimeout(1.0)
    marker = name_file(run_root)
    marker.write_text(name)
    threading.Thread(target=_serve, args=(server, marker, payload, time.monotonic() + ttl),
                     name=f"credentials-{run_root.name[:8]}", daemon=True).start()


def _serve(server: socket.socket, marker: Path, payload: bytes, deadline: float) -> None:
    try:
        while time.monotonic() < deadline and marker.exists():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                _, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
                if uid != os.getuid():
                    continue
                conn.sendall(payload)
                return
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def collect(run_root: Path, timeout: float = 30.0) -> Optional[Dict[str, AuthConfig]]:
    """The run's credentials; None if it was submitted without; `CredentialsLost` if nobody keeps them now."""
    marker = name_file(run_root)
    try:
        name = marker.read_text().strip()
    except FileNotFoundError:
        return None
    chunks = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect("\0" + name)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        raise CredentialsLost() from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)
    try:
        data = json.loads(b"".join(chunks))
        return {registry: AuthConfig(**fields) for registry, fields in data.items()}
    except (ValueError, TypeError):
        raise CredentialsLost() from None


def withdraw(run_root: Path) -> None:
    """Stop offering (the run was not queued after all); its thread ends within a second."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name_file(run_root))
