"""The API server's generic controller: create, get, list, update and delete any resource, with its rules.

Ownership and write permission (ensure_owner_uuid_is_permitted), unknown attributes,
(owner_uuid, name) uniqueness with `ensure_unique_name`, and list parameters. Each resource's own
behaviour lives in its `Kind`; this module only runs the hooks in the API server's order.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .auth import Caller
from .errors import Invalid, PermissionDenied
from .filters import (
    Filters,
    limit_offset,
    orders,
    parse_json_param,
    sort_records,
    where_to_filters,
)
from .kinds import SERVER_SET, Kind, Record
from .permissions import WRITE
from .records import MODELS, format_time, parse_time, resource_of, type_infix

if TYPE_CHECKING:
    from .cluster import Cluster


def truthy(value: Any) -> bool:
    """A boolean request parameter as Rails reads it."""
    return value in (True, 1) or str(value).lower() in ("true", "1", "t", "yes")


def apply_select(rendered: Record, select: Optional[List[str]]) -> Record:
    """Only the selected attributes, plus `etag` and `kind` (the controller always keeps those)."""
    if not select:
        return rendered
    return {k: v for k, v in rendered.items() if k in select or k in ("etag", "kind")}


class Controller:
    """Runs requests against the records of a `Cluster` (the caller holds the store lock)."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.store = cluster.store

    # ---- attributes --------------------------------------------------------------------------

    def clean(self, kind: Kind, attrs: Any) -> Record:
        """The attributes a client sent, without server-set ones; unknown attributes refused."""
        if not isinstance(attrs, dict):
            raise Invalid(f"#<ArgumentError: Invalid {kind.singular} attributes>")
        out = {}
        for name, value in attrs.items():
            if name in SERVER_SET:
                continue
            ctype = kind.attribute_type(name)
            if ctype is None:
                raise Invalid(f"#<ActiveModel::UnknownAttributeError: unknown attribute '{name}' for {kind.model}.>")
            if ctype == "datetime" and value is not None:
                try:
                    value = format_time(parse_time(str(value)))
                except ValueError:
                    raise Invalid(f"{kind.full_message(name, 'is not a valid time')}")
            out[name] = copy.deepcopy(value)
        return out

    def check_owner(self, caller: Caller, kind: Kind, old: Optional[Record], record: Record) -> None:
        """ensure_owner_uuid_is_permitted: write permission on the old and the new owner."""
        if kind.resource == "containers":
            return
        owner = record.get("owner_uuid")
        if owner is None:
            raise PermissionDenied("Owner uuid cannot be nil")
        if resource_of(owner) not in ("users", "groups"):
            raise PermissionDenied("Owner uuid must be set to User or Group")
        perms = self.cluster.permissions
        if old is None or old.get("owner_uuid") != owner:
            for which, uuid in (("old", (old or {}).get("owner_uuid")), ("new", owner)):
                if uuid is None:
                    continue
                target = self.store.find(uuid)[1] or {}
                if not perms.can(caller.user, WRITE, uuid, target.get("owner_uuid")):
                    raise PermissionDenied("Owner uuid cannot be set or changed without write permission on "
                                           f"{which} owner")
                if resource_of(uuid) == "groups" and target.get("group_class") != "project":
                    raise PermissionDenied("Owner uuid must be a project")
        elif not perms.can(caller.user, WRITE, record["uuid"], old.get("owner_uuid")):
            raise PermissionDenied(f"Uuid  {record['uuid']} is not writable by {caller.uuid}")

    def unique_name(self, kind: Kind, record: Record, ensure: bool) -> None:
        """(owner_uuid, name) must be unique among live records; `ensure_unique_name` renames instead."""
        if not kind.unique_name_index or record.get("name") is None:
            return
        for attempt in range(3):
            clash = any(r["uuid"] != record["uuid"] and r.get("owner_uuid") == record["owner_uuid"]
                        and r.get("name") == record["name"] and not self.cluster.trash.is_trashed(r)
                        for r in self.store.all(kind.resource))
            if not clash:
                return
            if not ensure or attempt == 2:
                raise Invalid(f'#<ActiveRecord::RecordNotUnique: PG::UniqueViolation: ERROR:  duplicate key value '
                              f'violates unique constraint "{kind.unique_name_index}"\nDETAIL:  Key (owner_uuid, name)='
                              f'({record["owner_uuid"]}, {record["name"]}) already exists.\n>')
            record["name"] = f"{record['name'][:237]} ({record['uuid'][-15:]})"

    # ---- the five methods ------------------------------------------------------------------------

    def create(self, caller: Caller, kind: Kind, attrs: Any, params: Dict[str, Any]) -> Record:
        """A new record from the client's attributes; the stored record."""
        attrs = self.clean(kind, attrs)
        record = kind.defaults(caller)
        record.update(attrs)
        uuid = attrs.get("uuid")
        if uuid is not None and (not isinstance(uuid, str) or resource_of(uuid) != kind.resource
                                 or self.store.get(kind.resource, uuid) is not None):
            expected = type_infix(MODELS[kind.resource])
            raise kind.invalid("uuid", f"type field is '{str(uuid)[6:11]}', expected '{expected}'"
                               if resource_of(uuid) != kind.resource else "has already been taken")
        record["uuid"] = uuid or self.store.new_uuid(kind.resource)
        now = self.store.now()
        record.update(created_at=now, modified_at=now, modified_by_user_uuid=caller.uuid)
        if record.get("owner_uuid") is None:
            record["owner_uuid"] = caller.uuid
        if not kind.permission_to_create(caller, record):
            raise PermissionDenied()
        self.check_owner(caller, kind, None, record)
        kind.before_save(caller, None, record)
        self.unique_name(kind, record, truthy(params.get("ensure_unique_name")))
        self.store.insert(kind.resource, record)
        kind.after_save(caller, None, record)
        return self.store.get(kind.resource, record["uuid"]) or record

    def save(self, caller: Caller, kind: Kind, record: Record, attrs: Any) -> Record:
        """Apply attributes to an existing record; the stored record."""
        old = copy.deepcopy(record)
        new = copy.deepcopy(record)
        new.update(self.clean(kind, attrs))
        new["uuid"] = old["uuid"]
        if kind.resource != "containers":  # containers check their own permissions (validate_change)
            self.check_owner(caller, kind, old, new)
        if not kind.permission_to_update(caller, old, new):
            raise PermissionDenied()
        kind.before_save(caller, old, new)
        self.unique_name(kind, new, False)
        new.update(modified_at=self.store.now(), modified_by_user_uuid=caller.uuid)
        self.store.insert(kind.resource, new)
        kind.after_save(caller, old, new)
        return self.store.get(kind.resource, new["uuid"]) or new

    def update(self, caller: Caller, kind: Kind, key: str, attrs: Any, params: Dict[str, Any]) -> Record:
        """Update the record named by `key` (it must be readable, then writable)."""
        record = kind.lookup(caller, key, params)
        kind.before_update(caller, record)
        return self.save(caller, kind, record, attrs)

    def write_access(self, caller: Caller, kind: Kind, key: str, params: Dict[str, Any],
                     action: Callable[[Record], Record]) -> Record:
        """Run `action` on a record the caller can read and write (delete, trash, untrash)."""
        record = kind.lookup(caller, key, params)
        if not kind.creatable_by_users and not caller.is_admin:
            raise PermissionDenied()
        if not self.cluster.permissions.can(caller.user, WRITE, record["uuid"], record.get("owner_uuid")):
            raise PermissionDenied(f"Uuid  {record['uuid']} is not writable by {caller.uuid}")
        return action(record)

    def delete(self, caller: Caller, kind: Kind, key: str, params: Dict[str, Any]) -> Record:
        """Delete (or, for collections and groups, trash) a record."""
        return self.write_access(caller, kind, key, params, lambda record: kind.destroy(caller, record))

    def list(self, caller: Caller, kind: Kind, params: Dict[str, Any]) -> Record:
        """A list response: filters, where, order, offset, limit, select, count."""
        select = parse_json_param(params.get("select"), "select", list)
        filters = where_to_filters(params.get("where"))
        filters += parse_json_param(params.get("filters"), "filters", list) or []
        joins = kind.joins()
        predicate = Filters(kind.columns, kind.resource, join=joins[1] if joins else None,
                            joined_columns=joins[0] if joins else None).compile(filters)
        matched = [r for r in kind.visible(caller, params) if predicate(r)]
        limit, offset = limit_offset(params, self.cluster.settings.max_items_per_response)
        ordered = sort_records(matched, orders(params.get("order"), kind.columns, kind.resource, select))
        items = [apply_select(kind.render(caller, r), select) for r in ordered[offset:offset + limit]]
        response = {"kind": kind.kind + "List", "etag": "", "self_link": "", "offset": offset, "limit": limit,
                    "items": items}
        count = params.get("count")
        if count in (None, "", "exact"):
            response["items_available"] = len(matched)
        elif count != "none":
            raise Invalid("#<ArgumentError: count parameter must be 'exact' or 'none'>")
        return response
