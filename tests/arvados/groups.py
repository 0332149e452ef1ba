"""Groups: projects (which own things), roles (whose members share permissions) and filter groups."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .auth import Caller
from .kinds import Kind, Record
from .trash import Trashable


class Groups(Trashable, Kind):
    """Groups: names default to the uuid, roles belong to the system user, trash rules."""

    resource = "groups"
    unique_name_index = "index_groups_on_owner_uuid_and_name"

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self._managers: Dict[str, str] = {}  # new role uuid -> the owner the creator asked for

    def defaults(self, caller: Caller) -> Record:
        return {"properties": {}, "description": None, "group_class": None, "trash_at": None, "delete_at": None,
                "is_trashed": False, "frozen_by_uuid": None, "name": None}

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        self.require_hash(record, "properties")
        if record.get("group_class") not in ("filter", "project", "role"):
            raise self.invalid("group_class", "must be one of 'filter', 'project', 'role'")
        if old is None and not record.get("name"):
            record["name"] = record["uuid"]
        if record.get("group_class") == "role" and old is None:
            # A role belongs to the system user; whoever was to own it gets can_manage on it instead.
            self._managers[record["uuid"]] = record["owner_uuid"]
            record["owner_uuid"] = self.cluster.system_user_uuid
        self.cluster.trash.apply(old, record)

    def after_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        manager = self._managers.pop(record["uuid"], None)
        if manager is not None:
            self.cluster.system_create("links", {"link_class": "permission", "name": "can_manage",
                                                 "tail_uuid": manager, "head_uuid": record["uuid"]})

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        records = super().visible(caller, params)
        if not caller.is_admin:  # Users.RoleGroupsVisibleToAll
            seen = {r["uuid"] for r in records}
            records += [r for r in self.store.where("groups", group_class="role") if r["uuid"] not in seen]
        return self.cluster.trash.visible(records, params)

