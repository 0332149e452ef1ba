"""`ArvadosDouble`: the Arvados API and Keep services on loopback HTTPS, and handles for tests to drive them."""

from __future__ import annotations

import collections
import copy
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from . import discovery
from .cluster import Cluster
from .cluster_config import Settings, discovery_live_keys, exported_config
from .containers import FINAL, TRANSITIONS
from .https import HttpsServer, self_signed_certificate
from .keepstore import BLOCK_SIZE, Blocks, KeepHandler, keep_service_record
from .manifests import escape
from .rest import ApiHandler, Call, routes

Files = Mapping[str, Union[bytes, str]]


class ApiService:
    """What the API handler serves: the cluster, its routes, and the live discovery document."""

    def __init__(self, cluster: Cluster, static: Dict[str, Any]) -> None:
        self.cluster = cluster
        self.static = static
        self.routes = routes(static)
        self.root_url = ""
        self._document: Optional[Dict[str, Any]] = None
        self._lock = threading.Lock()
        self.calls: List[Call] = []

    def record_call(self, http_method: str, resource: str, action: str, params: Dict[str, Any], body: Any) -> Call:
        """Remember an API call (the handler sets its status if it fails)."""
        call = Call(http_method, f"{resource}.{action}", dict(params), body)
        with self._lock:
            self.calls.append(call)
        return call

    def discovery_document(self) -> Dict[str, Any]:
        """The sdist's document with the keys a live API server adds."""
        with self._lock:
            if self._document is None:
                document = copy.deepcopy(self.static)
                document.update(discovery_live_keys(self.cluster.settings, self.root_url,
                                                    discovery.client_version(), self.cluster.store.now()))
                self._document = document
            return self._document


class ArvadosDouble:
    """A faithful stand-in for an Arvados cluster's API server and Keep, for the unmodified clients.

    Use as a context manager or call start()/stop(). Tokens come from `add_user`; clients get
    their environment from `env(token)`. Tests observe Keep through `blocks` and the byte
    counters, and play the dispatcher with `set_container_state`.
    """

    def __init__(self, workdir: Path, uuid_prefix: str = "zzzzz") -> None:
        self.workdir = Path(workdir)
        self.settings = Settings(uuid_prefix=uuid_prefix)
        self.cluster = Cluster(self.settings, self.workdir, discovery.static_document())
        self._service = ApiService(self.cluster, self.cluster.discovery)
        self._api: Optional[HttpsServer] = None
        self._keep: Optional[HttpsServer] = None
        self.users: Dict[str, Tuple[str, str]] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "ArvadosDouble":
        """Listen on two loopback ports (API, Keep) with a fresh self-signed certificate."""
        certificate = self_signed_certificate(self.workdir / "tls")
        self._api = HttpsServer(ApiHandler, self._service, certificate)
        self._keep = HttpsServer(KeepHandler, self.cluster, certificate)
        self._service.root_url = f"https://{self.host}/"
        self.cluster.exported_config = exported_config(self.settings, self._service.root_url,
                                                       f"https://127.0.0.1:{self._keep.port}/")
        self.cluster.store.insert("keep_services", keep_service_record(self.cluster, self._keep.port))
        self._api.start()
        self._keep.start()
        return self

    def stop(self) -> None:
        """Stop both services."""
        for server in (self._api, self._keep):
            if server is not None:
                server.stop()
        self._api = self._keep = None

    def __enter__(self) -> "ArvadosDouble":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what clients need -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """"127.0.0.1:PORT" of the API service, for ARVADOS_API_HOST."""
        if self._api is None:
            raise RuntimeError("the Arvados double is not started")
        return f"127.0.0.1:{self._api.port}"

    def env(self, token: str) -> Dict[str, str]:
        """The environment a client needs to talk to the double as the owner of `token`."""
        return {"ARVADOS_API_HOST": self.host, "ARVADOS_API_TOKEN": token, "ARVADOS_API_HOST_INSECURE": "1"}

    def add_user(self, name: str, admin: bool = False) -> Tuple[str, str]:
        """A new active user: (user uuid, API token); also kept in `users[name]`."""
        self.users[name] = self.cluster.add_user(name, admin)
        return self.users[name]

    @property
    def api_calls(self) -> List[Call]:
        """Every API call received so far, in order: method ("collections.create"), params, body, status."""
        return list(self._service.calls)

    # ---- Keep --------------------------------------------------------------------------------------

    @property
    def blocks(self) -> Blocks:
        """The stored Keep blocks: `md5 in blocks`, `blocks[md5]`, `len(blocks)`, `blocks.total_bytes`."""
        return self.cluster.blocks

    @property
    def keep_put_bytes(self) -> int:
        """Bytes clients have PUT to Keep since the start or the last reset_counters()."""
        return self.cluster.keep_counters.put_bytes

    @property
    def keep_put_requests(self) -> int:
        """Keep PUT requests since the start or the last reset_counters()."""
        return self.cluster.keep_counters.put_requests

    @property
    def keep_get_bytes(self) -> int:
        """Bytes clients have read from Keep since the start or the last reset_counters()."""
        return self.cluster.keep_counters.get_bytes

    def reset_counters(self) -> None:
        """Zero the Keep byte and request counters."""
        self.cluster.keep_counters.reset()

    def save_collection(self, files: Files, owner_uuid: Optional[str] = None, name: Optional[str] = None,
                        properties: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Store files (name -> content) in Keep and a collection of them, as the system user; the record.

        The blocks are written directly, not PUT over HTTP, so the Keep counters do not change.
        """
        data = [(n, c.encode() if isinstance(c, str) else c) for n, c in files.items()]
        blob = b"".join(content for _, content in data)
        chunks = [blob[i:i + BLOCK_SIZE] for i in range(0, len(blob), BLOCK_SIZE)] or [b""]
        locators = [f"{self.blocks.put(chunk)}+{len(chunk)}" for chunk in chunks]
        tokens, position = [], 0
        for file_name, content in data:
            tokens.append(f"{position}:{len(content)}:{escape(file_name)}")
            position += len(content)
        manifest = f". {' '.join(locators)} {' '.join(tokens) or '0:0:.'}\n" if data else ""
        attrs: Dict[str, Any] = {"manifest_text": manifest, "properties": properties or {}}
        if owner_uuid:
            attrs["owner_uuid"] = owner_uuid
        if name:
            attrs["name"] = name
        return self.cluster.system_create("collections", attrs, ensure_unique_name=bool(name))

    # ---- containers --------------------------------------------------------------------------------

    def write_live_log(self, container_uuid: str, name: str, data: Union[str, bytes]) -> None:
        """Append to a running container's log file `name`, as crunch-run would (served live, not yet in Keep)."""
        key = (container_uuid, name)
        self.cluster.live_logs[key] = self.cluster.live_logs.get(key, b"") + (
            data.encode() if isinstance(data, str) else data)

    def set_container_state(self, uuid: str, state: str, exit_code: Optional[int] = None,
                            runtime_status: Optional[Dict[str, Any]] = None, log: Union[None, str, Files] = None,
                            output: Union[None, str, Files] = None) -> Dict[str, Any]:
        """Drive a container to `state` as the dispatcher would, through each allowed transition in turn.

        Queued -> Locked (containers.lock) -> Running -> Complete, or -> Cancelled. `exit_code`,
        `runtime_status`, `log` and `output` go with the last step; `log`/`output` are a portable
        data hash or files (name -> content) saved first as a collection of the runtime user.
        Arvados' rules apply: e.g. a container cannot be locked while its priority is 0, and an
        exit code cannot be set on a container cancelled before it ran. Returns the container.
        """
        cluster = self.cluster
        with cluster.store.lock:
            record = cluster.store.get("containers", uuid)
            if record is None:
                raise KeyError(uuid)
            steps = _path(record["state"], state)
            final: Dict[str, Any] = {}
            if exit_code is not None:
                final["exit_code"] = exit_code
            if runtime_status is not None:
                final["runtime_status"] = runtime_status
            for attr, value in (("log", log), ("output", output)):
                if value is not None:
                    final[attr] = value if isinstance(value, str) else self.save_collection(
                        value, owner_uuid=record["runtime_user_uuid"])["portable_data_hash"]
            containers = cluster.kinds["containers"]
            caller = cluster.system_caller()
            if not steps and final:  # already there: only the attributes change
                cluster.system_update("containers", uuid, final)
            for step in steps:
                attrs = final if step == steps[-1] else {}
                if step == "Locked" and cluster.store.get("containers", uuid)["state"] == "Queued":
                    containers.action_lock(caller, uuid, {}, {})
                    if attrs:
                        cluster.system_update("containers", uuid, attrs)
                else:
                    cluster.system_update("containers", uuid, dict(attrs, state=step))
            return copy.deepcopy(cluster.store.get("containers", uuid))

    def container_token(self, uuid: str) -> Optional[str]:
        """The token a Locked or Running container runs with (what crunch-run gives the process)."""
        return self.cluster.kinds["containers"].runtime_token(uuid)

    def record(self, uuid: str) -> Optional[Dict[str, Any]]:
        """A copy of any stored record by uuid, unfiltered by permissions (for assertions)."""
        with self.cluster.store.lock:
            return copy.deepcopy(self.cluster.store.find(uuid)[1])

    def records(self, resource: str, **equal: Any) -> List[Dict[str, Any]]:
        """Copies of the stored records of `resource` whose fields equal the given values."""
        with self.cluster.store.lock:
            return copy.deepcopy(list(self.cluster.store.where(resource, **equal)))


def _path(start: str, goal: str) -> List[str]:
    """The shortest sequence of allowed container state transitions from `start` to `goal`."""
    if start == goal:
        return []
    queue, seen = collections.deque([(start, [])]), {start}
    while queue:
        state, steps = queue.popleft()
        for nxt in TRANSITIONS.get(state, []):
            if nxt == goal:
                return steps + [nxt]
            if nxt not in seen and nxt not in FINAL:
                seen.add(nxt)
                queue.append((nxt, steps + [nxt]))
    raise ValueError(f"a container cannot go from {start} to {goal}")

