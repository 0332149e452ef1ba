"""The double's cluster: its records, tokens, permissions, Keep blocks and resource behaviours in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from . import signing
from .auth import Caller, Tokens, v2_token
from .cluster_config import Settings
from .collections import Collections
from .container_requests import ContainerRequests
from .containers import Containers
from .controller import Controller, apply_select
from .errors import ApiError, NotFound
from .filters import parse_json_param
from .groups import Groups
from .keepstore import Blocks, Counters
from .kinds import Kind, Record
from .links import Links
from .permissions import Permissions
from .records import Store
from .simple import Credentials, KeepServices, Logs
from .trash import Trash
from .users import ApiClientAuthorizations, Users
from .workflows import Workflows

KINDS = (ApiClientAuthorizations, Collections, ContainerRequests, Containers, Credentials, Groups, KeepServices, Links,
         Logs, Users, Workflows)


class Cluster:
    """Everything the API and Keep services share; `call` answers one API method for one caller."""

    def __init__(self, settings: Settings, workdir: Path, discovery: Dict[str, Any]) -> None:
        self.settings = settings
        self.discovery = discovery
        self.store = Store(settings.uuid_prefix)
        self.tokens = Tokens(self.store)
        self.permissions = Permissions(self.store)
        self.trash = Trash(self.store, settings.default_trash_lifetime)
        self.blocks = Blocks(workdir / "keep")
        self.keep_counters = Counters()
        # What crunch-run serves of a running container's logs: (container uuid, file name) -> bytes.
        self.live_logs: Dict[Tuple[str, str], bytes] = {}
        self.kinds: Dict[str, Kind] = {kind.resource: kind(self) for kind in KINDS}
        self.controller = Controller(self)
        self.exported_config: Dict[str, Any] = {}
        self.system_user_uuid = f"{settings.uuid_prefix}-tpzed-000000000000000"
        now = self.store.now()
        self.store.insert("users", {
            "uuid": self.system_user_uuid, "owner_uuid": self.system_user_uuid, "created_at": now, "modified_at": now,
            "modified_by_user_uuid": self.system_user_uuid, "email": "root", "first_name": "root", "last_name": "",
            "identity_url": None, "is_admin": True, "prefs": {}, "is_active": True, "username": "root"})
        self._system_auth = self.tokens.issue(self.system_user_uuid)

    # ---- callers -------------------------------------------------------------------------------

    def system_caller(self) -> Caller:
        """The system user, as the API server acts internally and as the dispatcher acts."""
        return Caller(user=self.store.get("users", self.system_user_uuid) or {}, token=v2_token(self._system_auth),
                      authorization=self._system_auth)

    def add_user(self, name: str, admin: bool = False) -> Tuple[str, str]:
        """A new active user and a token for it: (user uuid, v2 token)."""
        with self.store.lock:
            user = self.system_create("users", {
                "email": f"{name}@example.com", "first_name": name, "last_name": "", "username": name,
                "is_admin": admin, "is_active": True, "identity_url": f"https://login.example.com/{name}"})
            return user["uuid"], v2_token(self.tokens.issue(user["uuid"]))

    def system_create(self, resource: str, attrs: Record, ensure_unique_name: bool = False) -> Record:
        """Create a record as the system user."""
        with self.store.lock:
            return self.controller.create(self.system_caller(), self.kinds[resource], attrs,
                                          {"ensure_unique_name": ensure_unique_name})

    def system_update(self, resource: str, uuid: str, attrs: Record) -> Record:
        """Update a record as the system user."""
        with self.store.lock:
            kind = self.kinds[resource]
            record = self.store.get(resource, uuid)
            if record is None:
                raise NotFound()
            return self.controller.save(self.system_caller(), kind, record, attrs)

    def sign(self, locator: str, token: str, expiry: Optional[int] = None) -> str:
        """A locator signed with the cluster's blob signing key for `token`."""
        return signing.sign_locator(locator, token, self.settings.blob_signing_key, self.settings.blob_signing_ttl,
                                    expiry)

    # ---- one API call ----------------------------------------------------------------------------

    def call(self, caller: Caller, resource: str, action: str, params: Dict[str, Any], body: Any) -> Any:
        """The response document of `resource.action` (discovery names, e.g. collections.list)."""
        if resource == "configs" and action == "get":
            return self.exported_config
        if resource == "vocabularies" and action == "get":
            return {"strict_tags": False, "tags": {}}
        kind = self.kinds.get(resource)
        if kind is None:
            raise _not_implemented(resource, action)
        select = None if action == "list" else _select(params)
        attrs = _attributes(kind, body, params)
        uuid = params.get("uuid")
        with self.store.lock:
            if action == "list":
                return self.controller.list(caller, kind, params)
            if action == "get":
                return apply_select(kind.show(caller, uuid, params), select)
            if action == "create":
                stored = self.controller.create(caller, kind, attrs, params)
            elif action == "update":
                stored = self.controller.update(caller, kind, uuid, attrs, params)
            elif action == "delete":
                stored = self.controller.delete(caller, kind, uuid, params)
            else:
                handler = getattr(kind, f"action_{action}", None)
                if handler is None:
                    raise _not_implemented(resource, action)
                return apply_select(handler(caller, uuid, params, attrs), select)
            return apply_select(kind.render(caller, stored), select)


def _select(params: Dict[str, Any]) -> Optional[list]:
    return parse_json_param(params.get("select"), "select", list)


def _attributes(kind: Kind, body: Any, params: Dict[str, Any]) -> Record:
    """The resource attributes of a request body, wrapped (`{"collection": {...}}`) or flat."""
    if not isinstance(body, dict):
        return {}
    if isinstance(body.get(kind.singular), dict):
        for key, value in body.items():
            if key != kind.singular:
                params.setdefault(key, value)
        return body[kind.singular]
    return body


def _not_implemented(resource: str, action: str) -> ApiError:
    return ApiError(f"{resource}.{action} is not implemented by the Arvados test double")

