"""Links: typed edges between objects; `permission` links grant access (services/api/app/models/link.rb)."""

from __future__ import annotations

from typing import Optional

from .auth import Caller
from .errors import Invalid, PermissionDenied
from .kinds import Kind, Record
from .permissions import LEVELS, MANAGE
from .records import resource_of


class Links(Kind):
    """Links: permission links need a valid level, a user or role tail, and can_manage on the head."""

    resource = "links"

    def defaults(self, caller: Caller) -> Record:
        return {"properties": {}, "tail_uuid": None, "head_uuid": None, "name": None, "link_class": None}

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        self.require_hash(record, "properties")
        if record.get("link_class") != "permission" and (old or {}).get("link_class") != "permission":
            return
        if old is not None and any(old.get(a) != record.get(a) for a in ("link_class", "tail_uuid", "head_uuid")):
            raise Invalid("#<RuntimeError: Can only alter permission link level>")
        if record.get("name") not in LEVELS:
            raise self.invalid("name", "is invalid permission, must be one of 'can_read', 'can_write', 'can_manage', "
                                       "'can_login'")
        tail_resource, tail = self.store.find(record.get("tail_uuid"))
        if tail_resource == "groups":
            if tail is None:
                raise self.invalid("tail_uuid", "does not exist")
            if tail.get("group_class") != "role":
                raise self.invalid("tail_uuid", f"must be a user or role, was group with group_class "
                                                f"{tail.get('group_class')}")
        elif tail_resource != "users":
            raise self.invalid("tail_uuid", "must be a user or role")
        if caller.is_admin:
            return
        _, head = self.store.find(record.get("head_uuid"))
        if head is None:
            raise self.invalid("head_uuid", "does not exist")
        if not self.cluster.permissions.can(caller.user, MANAGE, head["uuid"], head.get("owner_uuid")):
            raise PermissionDenied()

    def render(self, caller: Caller, record: Record) -> Record:
        out = super().render(caller, record)
        for end in ("head", "tail"):
            resource = resource_of(record.get(f"{end}_uuid"))
            out[f"{end}_kind"] = self.cluster.kinds[resource].kind if resource in self.cluster.kinds else None
        return out
