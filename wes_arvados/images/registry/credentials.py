"""Registry credentials: per-call entries, then Docker config.json files and credential helpers.

Credentials never appear in logs, errors or output: `AuthConfig.__repr__` hides them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional
from urllib.parse import urlparse

from ..errors import ImageError

DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"


@dataclass
class AuthConfig:
    """Credentials for one registry (any field may be empty)."""

    username: str = ""
    password: str = ""
    # An OAuth2 refresh token (Docker's "identitytoken"), exchanged at the token endpoint.
    identity_token: str = ""
    # A bearer token to present as it is.
    registry_token: str = ""

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        return f"AuthConfig(username={self.username!r}, secrets={'set' if self else 'none'})"


def canonical_registry(key: str) -> str:
    """The registry host a config.json key names ("https://index.docker.io/v1/" → "docker.io")."""
    host = urlparse(key).netloc if "://" in key else key.split("/", 1)[0]
    host = host.lower()
    return "docker.io" if host in DOCKER_HUB_ALIASES else host


def _decode_auth(entry: dict, where: str) -> AuthConfig:
    auth = AuthConfig(
        username=entry.get("username", "") or "",
        password=entry.get("password", "") or "",
        identity_token=entry.get("identitytoken", "") or "",
        registry_token=entry.get("registrytoken", "") or "",
    )
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"{where}: an 'auth' entry is not base64 of user:password") from None
        if not sep:
            raise ImageError(f"{where}: an 'auth' entry is not base64 of user:password")
        auth.username, auth.password = user, password
    return auth


def _run_helper(helper: str, registry: str) -> AuthConfig:
    """Ask docker-credential-<helper> for a registry's credentials (the helper protocol's `get`)."""
    import subprocess  # here: most pulls use no helper, and importing it costs `pull` ~3 ms of start-up

    server = DOCKER_HUB_SERVER_URL if registry == "docker.io" else registry
    try:
        done = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(),
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"credential helper docker-credential-{helper} could not run: {exc}") from None
    if done.returncode != 0:
        if b"credentials not found" in done.stdout + done.stderr:
            return AuthConfig()
        raise ImageError(f"credential helper docker-credential-{helper} failed for {registry}")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise ImageError(f"credential helper docker-credential-{helper} gave no JSON for {registry}") from None
    if answer.get("Username") == "<token>":
        return AuthConfig(identity_token=answer.get("Secret", ""))
    return AuthConfig(username=answer.get("Username", ""), password=answer.get("Secret", ""))


@dataclass
class DockerConfig:
    """One Docker config.json: `auths`, `credHelpers` and `credsStore`."""

    auths: Dict[str, AuthConfig] = field(default_factory=dict)
    cred_helpers: Dict[str, str] = field(default_factory=dict)
    creds_store: str = ""

    @classmethod
    def parse(cls, data: dict, where: str = "config.json") -> "DockerConfig":
        """Read the parts of a config.json (or of a bare `auths` map) that hold credentials."""
        if not isinstance(data, dict):
            raise ImageError(f"{where} is not a JSON object")
        auths = data.get("auths", data if "auths" not in data and "credHelpers" not in data else {})
        config = cls()
        for key, entry in (auths or {}).items():
            if isinstance(entry, dict):
                config.auths[canonical_registry(key)] = _decode_auth(entry, where)
        config.cred_helpers = {canonical_registry(k): v for k, v in (data.get("credHelpers") or {}).items()}
        config.creds_store = data.get("credsStore") or ""
        return config

    @classmethod
    def load(cls, path: Path) -> "DockerConfig":
        """Read a config.json file; `ImageError` if it is unreadable."""
        try:
            return cls.parse(json.loads(path.read_text(encoding="utf-8")), str(path))
        except OSError as exc:
            raise ImageError(f"cannot read registry config {path}: {exc.strerror}") from None
        except ValueError:
            raise ImageError(f"registry config {path} is not valid JSON") from None

    def lookup(self, registry: str) -> AuthConfig:
        """Credentials for a registry: its credHelper, its auths entry, then credsStore."""
        if registry in self.cred_helpers:
            return _run_helper(self.cred_helpers[registry], registry)
        if registry in self.auths:
            return self.auths[registry]
        if self.creds_store:
            return _run_helper(self.creds_store, registry)
        return AuthConfig()


def default_docker_config() -> Optional[Path]:
    """$DOCKER_CONFIG/config.json or ~/.docker/config.json, when it exists."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    path = Path(base) / "config.json"
    return path if path.is_file() else None


class Credentials:
    """Where the client looks for a registry's credentials, first match wins."""

    def __init__(self, explicit: Optional[Dict[str, AuthConfig]] = None, configs: Iterable[DockerConfig] = ()) -> None:
        self.explicit = {canonical_registry(k): v for k, v in (explicit or {}).items()}
        self.configs: List[DockerConfig] = list(configs)

    def __repr__(self) -> str:
        return f"Credentials(explicit for {sorted(self.explicit)!r}, {len(self.configs)} config files)"

    @classmethod
    def from_files(cls, paths: Iterable[Path], explicit: Optional[Dict[str, AuthConfig]] = None) -> "Credentials":
        """Credentials from config.json files (e.g. a mounted Kubernetes Secret)."""
        return cls(explicit, [DockerConfig.load(Path(p)) for p in paths])

    def with_explicit(self, explicit: Dict[str, AuthConfig]) -> "Credentials":
        """A copy where `explicit` entries (per-call credentials) take precedence."""
        merged = dict(self.explicit)
        merged.update({canonical_registry(k): v for k, v in explicit.items()})
        return Credentials(merged, self.configs)

    def for_registry(self, registry: str) -> AuthConfig:
        """Credentials for a registry host, or an empty `AuthConfig` (anonymous)."""
        registry = canonical_registry(registry)
        if registry in self.explicit:
            return self.explicit[registry]
        for config in self.configs:
            auth = config.lookup(registry)
            if auth:
                return auth
        return AuthConfig()


REGISTRY_AUTH_HEADER = "X-Registry-Auth"


def parse_registry_auth(header: str) -> Dict[str, AuthConfig]:
    """Per-request credentials from an ``X-Registry-Auth`` header, as registry → AuthConfig.

    The header is base64 (URL-safe or standard) of JSON: Docker's API AuthConfig
    (``username``, ``password`` or ``identitytoken``/``registrytoken``, and
    ``serveraddress``), or a config.json ``auths`` map (with or without the
    ``auths`` key). Credential helpers are never run for it. Error messages never
    quote the header.
    """
    text = header.strip()
    try:
        data = json.loads(base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise ImageError(f"{REGISTRY_AUTH_HEADER} is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise ImageError(f"{REGISTRY_AUTH_HEADER} is not a JSON object")
    if any(key in data for key in ("username", "password", "identitytoken", "registrytoken", "auth")):
        server = data.get("serveraddress")
        if not isinstance(server, str) or not server:
            raise ImageError(f"{REGISTRY_AUTH_HEADER}: an AuthConfig needs 'serveraddress', the registry it is for")
        return {canonical_registry(server): _decode_auth(data, REGISTRY_AUTH_HEADER)}
    auths = data.get("auths", {k: v for k, v in data.items() if k not in ("credHelpers", "credsStore")})
    if not isinstance(auths, dict):
        raise ImageError(f"{REGISTRY_AUTH_HEADER}: 'auths' is not a JSON object")
    found = {canonical_registry(key): _decode_auth(entry, REGISTRY_AUTH_HEADER)
             for key, entry in auths.items() if isinstance(entry, dict)}
    return {registry: auth for registry, auth in found.items() if auth}


def encode_registry_auth(auths: Dict[str, AuthConfig]) -> str:
    """An ``X-Registry-Auth`` header carrying `auths` (registry → AuthConfig) as a config.json ``auths`` map."""
    doc = {"auths": {registry: {k: v for k, v in {
        "username": auth.username, "password": auth.password, "identitytoken": auth.identity_token,
        "registrytoken": auth.registry_token}.items() if v} for registry, auth in auths.items()}}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
