"""The one configuration object, read from defaults, a YAML file, the environment and flags.

Precedence, lowest first: built-in defaults, the YAML file given by ``--config``
(or ``WES_ARVADOS_CONFIG``), ``WES_ARVADOS_<FIELD>`` environment variables, then
command-line flags.  Web workers receive the resolved object as JSON in
``WES_ARVADOS_RESOLVED_CONFIG`` so every process sees exactly the same settings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

from .errors import ConfigError
from .fetch_guard import FetchGuard
from .images.errors import ImageError
from .images.policy import ImagePolicy
from .images.registry import Credentials, RegistryOptions
from .images.registry.options import parse_mirrors
from .images.service import ImageSettings
from .wes.limits import Limits

ENV_PREFIX = "WES_ARVADOS_"
RESOLVED_ENV = "WES_ARVADOS_RESOLVED_CONFIG"
LOG_FORMATS = ("text", "json")
BACKENDS = ("local", "arvados")
RUNTIMES = ("auto", "docker", "podman", "none")
IMAGES_KEY = "images"
ARVADOS_KEY = "arvados"


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "wes-arvados")


@dataclass
class ImagesConfig:
    """The ``images:`` section: how the server gets the Docker images runs need, and which it may get."""

    # Pull every image a run needs before its engine starts (False: the engine is on its own).
    resolve: bool = True
    # Where the local backend loads images: auto (docker, else podman, else none), docker, podman, none.
    runtime: str = "auto"
    # With no runtime: run tools whose image only a hint names without a container (else the run fails).
    hints_without_container: bool = False
    # Image name patterns (fnmatch on the normalized name, e.g. docker.io/library/*, 127.0.0.1:5000/*):
    # when `allow` is not empty only matching images may be used; `deny` wins over `allow`.
    allow: list = field(default_factory=list)
    deny: list = field(default_factory=list)
    # REGISTRY=URL: a mirror tried, in order, before REGISTRY (e.g. docker.io=http://127.0.0.1:5000).
    mirrors: list = field(default_factory=list)
    # Registries (host[:port]) reached over plain http; loopback always is.
    insecure_registries: list = field(default_factory=list)
    # Docker config.json with registry credentials (e.g. a mounted Kubernetes Secret); "" for none.
    registry_config: str = ""
    platform: str = "linux/amd64"
    # Layer blobs downloaded at once, per image.
    pull_jobs: int = 4
    # Blob cache of the server; "" means <state_dir>/images/cache.
    cache_dir: str = ""
    # What the cache may keep (e.g. 20G, powers of 1024); after each pull the least recently used
    # blobs go until it fits (what was used within the last hour stays). "" for no limit.
    cache_max_size: str = ""

    def validate(self) -> "ImagesConfig":
        """Check values; return self."""
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"images.runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        try:
            parse_mirrors(str(mirror) for mirror in self.mirrors)
        except ImageError as exc:
            raise ConfigError(f"images.mirrors: {exc}") from None
        if int(self.pull_jobs) < 1:
            raise ConfigError("images.pull_jobs must be a positive integer")
        _ = self.cache_max_bytes  # a size that is not one raises ConfigError here, at start-up
        return self

    @property
    def cache_max_bytes(self) -> Optional[int]:
        """`cache_max_size` in bytes; None for no limit."""
        if str(self.cache_max_size or "").strip() == "":
            return None
        from .images.prune import (
            parse_size,  # here: the server's config needs no image code to load
        )

        try:
            return parse_size(str(self.cache_max_size))
        except ValueError as exc:
            raise ConfigError(f"images.cache_max_size: {exc}") from None


@dataclass
class ArvadosConfig:
    """The ``arvados:`` section: the cluster the Arvados backend runs on (callers bring their own tokens)."""

    # The API server, host[:port]; "" means ARVADOS_API_HOST.
    api_host: str = ""
    # Accept the API server's certificate unverified (a test cluster); also ARVADOS_API_HOST_INSECURE.
    api_host_insecure: bool = False
    # Where runs (and imported images) go when a request names no project; "" for the caller's home project.
    project_uuid: str = ""
    # The image a-c-r's runner container uses; "" means arvados/jobs:<the installed a-c-r's version>.
    runner_image: str = ""
    # Seconds without a heartbeat after which a run's preparation is taken for dead (its process stopped).
    heartbeat_timeout: float = 120.0
    # Run preparations and image pulls that work at once on one machine (each imports images and runs
    # a-c-r: ~150 MB each); the others wait QUEUED, beating, for a turn.
    max_concurrent_preparations: int = 4

    def validate(self, environ: Mapping[str, str]) -> "ArvadosConfig":
        """Fill what the usual Arvados variables give; return self."""
        self.api_host = self.api_host or environ.get("ARVADOS_API_HOST", "")
        if not self.api_host_insecure:
            self.api_host_insecure = environ.get("ARVADOS_API_HOST_INSECURE", "").lower() in ("1", "true", "yes")
        return self


@dataclass
class Config:
    """Every setting of the server, with its default."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    backend: str = "local"
    state_dir: str = field(default_factory=_default_state_dir)
    max_concurrent_runs: int = 2
    # Largest accepted POST /runs body, attachments included.
    max_upload_bytes: int = 512 * 1024 * 1024
    # What one RunWorkflow request may hold (wes/limits.py): attachments and their size (0: max_upload_bytes),
    # each JSON field's size and nesting depth, tags and the length of a tag's key or value.
    max_attachments: int = 10_000
    max_attachment_bytes: int = 0
    max_json_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_tags: int = 100
    max_tag_length: int = 4096
    # Limits on a workflow_url the server fetches over http(s).
    fetch_max_bytes: int = 64 * 1024 * 1024
    fetch_timeout: float = 30.0
    # What the server may fetch from although it is not public (fetch_guard.py): workflow_url and dockerLoad
    # URLs, registries' token realms and redirects. Networks or addresses (10.0.0.0/8, 127.0.0.1) and hosts
    # (minio.internal, 127.0.0.1:8000); a cloud metadata address or name only when an entry names it alone.
    fetch_allow: list = field(default_factory=list)
    # Server directories from which file:// and absolute workflow_url / input
    # locations may be used; empty means none.
    allowed_dirs: list = field(default_factory=list)
    # Seconds the supervisor waits after SIGTERM before SIGKILL when cancelling
    # (cwltool itself waits up to 10 s for its jobs to stop).
    cancel_grace: float = 30.0
    # How often the scheduler looks for queued runs and orphans (seconds).
    poll_interval: float = 0.5
    # Extra options always given to cwltool by the local backend.
    cwltool_options: list = field(default_factory=list)
    log_level: str = "info"
    # "text", or "json": one JSON object per line, with run_id / pull_id / image fields (wes_arvados/logs.py).
    log_format: str = "text"
    # Base URL clients use to reach the server when it is behind a proxy
    # (e.g. https://wes.example.org); empty means: as the request says.
    public_url: str = ""
    # Authentication (wes_arvados/auth). None configured: off, every caller one user, allowed on loopback only.
    # The operator's tokens: admins, who see every run; with full access, and read-only.
    auth_tokens: list = field(default_factory=list)
    auth_read_tokens: list = field(default_factory=list)
    # A file of '<token or sha256:digest> <user> [admin|read]' lines: each user sees only their own runs.
    auth_token_file: str = ""
    # OIDC: JWTs from this issuer for this audience (RS256/ES256), keys from its JWKS (discovered if not given).
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_user_claim: str = "sub"
    # Users (of the token file or OIDC) who see and act on every run.
    admin_users: list = field(default_factory=list)
    # Check every response against openapi/wes.yaml (the tests turn this on).
    validate_responses: bool = False
    images: ImagesConfig = field(default_factory=ImagesConfig)
    arvados: ArvadosConfig = field(default_factory=ArvadosConfig)

    def validate(self) -> "Config":
        """Check values that would otherwise fail later and obscurely; return self."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        for name in ("port", "workers", "max_concurrent_runs", "max_upload_bytes", "fetch_max_bytes",
                     "max_attachments", "max_json_bytes", "max_json_depth", "max_tags", "max_tag_length"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range")
        self.allowed_dirs = [str(Path(d).resolve()) for d in self.allowed_dirs]
        self.fetch_allow = [str(entry).strip() for entry in self.fetch_allow if str(entry).strip()]
        try:
            FetchGuard(self.fetch_allow)
        except ValueError as exc:
            raise ConfigError(f"fetch_allow: {exc}") from None
        self.state_dir = str(Path(self.state_dir).expanduser().resolve())
        for allowed in self.allowed_dirs:
            # Runs' inputs may come from an allowed directory: holding the state directory, it would
            # let a run read every other run's files (and the database).
            if allowed == self.state_dir or self.state_dir.startswith(allowed.rstrip("/") + "/") \
                    or allowed.startswith(self.state_dir + "/"):
                raise ConfigError(f"allowed_dirs entry {allowed} overlaps the state directory {self.state_dir}; "
                                  "runs could read each other's files through it")
        self.images.validate()
        if self.backend == "arvados" and not self.arvados.api_host:
            raise ConfigError("the arvados backend needs the API server: arvados.api_host or ARVADOS_API_HOST")
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            raise ConfigError("oidc_issuer and oidc_audience go together: a token is checked for both")
        if self.auth_token_file:
            from .auth.tokens import TokenFile

            TokenFile(self.auth_token_file)  # read now: a missing or malformed file stops the start-up
        if self.backend == "arvados" and self.auth_enabled:
            raise ConfigError("the arvados backend authenticates callers with Arvados (they send their Arvados "
                              "tokens): leave auth_tokens, auth_read_tokens, auth_token_file and oidc_issuer unset")
        if self.backend == "local" and not self.auth_enabled and not is_loopback(self.host):
            raise ConfigError(
                f"authentication is off, so every caller would be one user, which is allowed on loopback only, "
                f"not on {self.host}: configure auth_token_file, oidc_issuer or auth_tokens, or listen on 127.0.0.1")
        return self

    def child_env(self) -> Dict[str, str]:
        """This process's environment plus this configuration, for the server's own child processes."""
        return dict(os.environ, **{RESOLVED_ENV: self.to_json()})

    def to_json(self) -> str:
        """Serialize for handing to child processes."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """Inverse of `to_json`."""
        values = json.loads(text)
        values[IMAGES_KEY] = ImagesConfig(**values.get(IMAGES_KEY, {}))
        values[ARVADOS_KEY] = ArvadosConfig(**values.get(ARVADOS_KEY, {}))
        return cls(**values)

    @property
    def auth_enabled(self) -> bool:
        """Whether callers must show a token (the Arvados backend's callers always do, to Arvados)."""
        return bool(self.auth_tokens or self.auth_read_tokens or self.auth_token_file or self.oidc_issuer)

    @property
    def limits(self) -> Limits:
        """What one RunWorkflow request may hold."""
        return Limits(attachments=self.max_attachments,
                      attachment_bytes=min(self.max_attachment_bytes or self.max_upload_bytes, self.max_upload_bytes),
                      json_bytes=self.max_json_bytes, json_depth=self.max_json_depth, tags=self.max_tags,
                      tag_chars=self.max_tag_length)

    @property
    def fetch_guard(self) -> FetchGuard:
        """What checks every host the server fetches from (`fetch_allow`)."""
        return FetchGuard(self.fetch_allow)

    @property
    def images_dir(self) -> Path:
        """Directory of the local image store (its archives and locks)."""
        return Path(self.state_dir) / "images"

    @property
    def image_cache_dir(self) -> Path:
        """The server's blob cache."""
        return Path(self.images.cache_dir) if self.images.cache_dir else self.images_dir / "cache"

    @property
    def staging_dir(self) -> Path:
        """Where RunWorkflow requests are staged before a backend takes them over."""
        return Path(self.state_dir) / "staging"

    @property
    def runs_dir(self) -> Path:
        """Directory holding one sub-directory per run."""
        return Path(self.state_dir) / "runs"

    @property
    def database_path(self) -> Path:
        """Path of the SQLite database of the local backend."""
        return Path(self.state_dir) / "wes.sqlite"


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _coerce(name: str, value: Any, defaults: Any = None) -> Any:
    """Convert a string from the environment or a flag to the field's type."""
    default = getattr(defaults if defaults is not None else Config(), name)
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, list):
        if isinstance(value, list):
            return value
        return [v for v in str(value).split(",") if v]
    return value


def load_config(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Config:
    """Build the configuration from a YAML file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    if RESOLVED_ENV in environ:
        return Config.from_json(environ[RESOLVED_ENV])
    names = {f.name for f in dataclasses.fields(Config)}
    values: dict = {}
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        unknown = set(k.replace("-", "_") for k in data) - names
        if unknown:
            raise ConfigError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update({k.replace("-", "_"): v for k, v in data.items()})
    for name in names - set(SECTIONS):
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    sections = {key: _section_values(key, cls, values.pop(key, None), path, environ, (overrides or {}).get(key))
                for key, cls in SECTIONS.items()}
    for name, value in (overrides or {}).items():
        if value is not None and name not in SECTIONS:
            values[name] = value
    try:
        config = Config(**{k: _coerce(k, v) for k, v in values.items()})
        for key, cls in SECTIONS.items():
            defaults = cls()
            setattr(config, key, cls(**{k: _coerce(k, v, defaults) for k, v in sections[key].items()}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc
    config.arvados.validate(environ)
    return config.validate()


def _section_values(key: str, cls: type, section: Any, path: Optional[str], environ: Mapping[str, str],
                    overrides: Optional[Mapping[str, Any]]) -> dict:
    """A section's settings (``images:``): the file's section, then WES_ARVADOS_<KEY>_<FIELD>, then flags."""
    names = {f.name for f in dataclasses.fields(cls)}
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: '{key}' must hold a mapping")
    values = {k.replace("-", "_"): v for k, v in section.items()}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown settings in {path} under {key}: {', '.join(sorted(unknown))}")
    for name in names:
        env_value = environ.get(f"{ENV_PREFIX}{key.upper()}_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    for name, value in (overrides or {}).items():
        if value is not None and value != []:
            values[name] = value
    return values


# The sections of the configuration, each a mapping in the file and a dataclass here.
SECTIONS = {IMAGES_KEY: ImagesConfig, ARVADOS_KEY: ArvadosConfig}


def image_settings(config: Config) -> ImageSettings:
    """What the image service needs of the server's configuration (its ``images:`` section and state paths)."""
    images = config.images
    files = [Path(images.registry_config)] if images.registry_config else []
    registry = RegistryOptions(insecure_registries=list(images.insecure_registries),
                               mirrors=parse_mirrors(images.mirrors), credentials=Credentials.from_files(files),
                               fetch_guard=config.fetch_guard)
    return ImageSettings(cache_dir=config.image_cache_dir, work_dir=config.images_dir / "work", registry=registry,
                         policy=ImagePolicy(list(images.allow), list(images.deny)), platform=images.platform,
                         jobs=int(images.pull_jobs), cache_max_bytes=images.cache_max_bytes)
