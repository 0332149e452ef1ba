"""Resources the generic controller handles alone: logs, credentials, keep services."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .auth import Caller
from .errors import NotFound
from .kinds import Kind, Record


class Logs(Kind):
    """Log records (ids numbered in order)."""

    resource = "logs"

    def defaults(self, caller: Caller) -> Record:
        return {"properties": {}, "object_uuid": None, "object_owner_uuid": None, "event_type": None,
                "summary": None, "event_at": self.store.now(), "id": None}

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        self.require_hash(record, "properties")
        if record.get("id") is None:
            record["id"] = len(self.store.tables["logs"]) + 1


class Credentials(Kind):
    """Credentials; the secret is writable but never shown."""

    resource = "credentials"

    def defaults(self, caller: Caller) -> Record:
        return {"name": None, "description": None, "credential_class": None, "scopes": [], "external_id": None,
                "expires_at": None, "secret": None}

    def attribute_type(self, name: str) -> Optional[str]:
        return "text" if name == "secret" else super().attribute_type(name)  # writable, shown only by .secret


class KeepServices(Kind):
    """Keep services: listed to everyone, created only by admins (the double registers its own)."""

    resource = "keep_services"
    creatable_by_users = False

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        return self.store.all("keep_services")  # keep services are listed to every user

    def lookup(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        record = self.store.get(self.resource, key)
        if record is None:
            raise NotFound()
        return record

    def action_accessible(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """keep_services.accessible: the services this client should use (here: the one keepproxy)."""
        items = [self.render(caller, r) for r in self.store.all("keep_services")]
        return {"kind": "arvados#keepServiceList", "etag": "", "self_link": "", "offset": 0, "limit": len(items),
                "items": items, "items_available": len(items)}
