"""Users and their API tokens (api_client_authorizations) as the API shows them."""

from __future__ import annotations

from typing import Any, Dict, List

from .auth import Caller
from .kinds import Kind, Record
from .permissions import MANAGE


class Users(Kind):
    """Users: only admins create them or change is_admin/is_active."""

    resource = "users"
    creatable_by_users = False

    def defaults(self, caller: Caller) -> Record:
        return {"email": None, "first_name": None, "last_name": None, "identity_url": None, "is_admin": False,
                "prefs": {}, "is_active": False, "username": None}

    def permission_to_update(self, caller: Caller, old: Record, record: Record) -> bool:
        return caller.is_admin or all(old.get(a) == record.get(a) for a in ("is_admin", "is_active", "owner_uuid"))

    def render(self, caller: Caller, record: Record) -> Record:
        out = super().render(caller, record)
        out["full_name"] = " ".join(p for p in (record.get("first_name"), record.get("last_name")) if p)
        out["is_invited"] = bool(record.get("is_active"))
        out["can_write"] = out["can_manage"] = self.cluster.permissions.can(caller.user, MANAGE, record["uuid"])
        return out

    def action_current(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """users.current: the caller's own record."""
        return self.render(caller, caller.user)

    def action_system(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """users.system: the system ("root") user."""
        return self.render(caller, self.store.get("users", self.cluster.system_user_uuid) or {})


class ApiClientAuthorizations(Kind):
    """API tokens: each user sees its own."""

    resource = "api_client_authorizations"
    creatable_by_users = False

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        records = self.store.all(self.resource)
        return records if caller.is_admin else [r for r in records if r["owner_uuid"] == caller.uuid]

    def action_current(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """api_client_authorizations.current: the caller's token record."""
        return self.render(caller, caller.authorization)
