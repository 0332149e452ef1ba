"""Who may read, write or manage what: the API server's permission graph, computed from the records.

As services/api/lib/20200501150153_permission_table_constants.rb: edges run from a group's or
user's owner to it (can_manage), from each user to itself, and along `permission` links
(can_read=1, can_login=1, can_write=2, can_manage=3). From a user, a walk follows edges out of
the user and then only out of groups, keeping the least level along the path and the most over
paths. Permission on a group, or can_manage on a user, extends to what it owns ("traverse owned").
A caller acts for every user it can manage (USER_UUIDS_SUBQUERY_TEMPLATE).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from .records import Store, resource_of

LEVELS = {"can_read": 1, "can_login": 1, "can_write": 2, "can_manage": 3}
READ, WRITE, MANAGE = 1, 2, 3
Perms = Dict[str, Tuple[int, bool]]  # target uuid -> (level, traverse_owned)


def _is_group(uuid: str) -> bool:
    return resource_of(uuid) == "groups"


def _traverse_owned(uuid: str, level: int) -> bool:
    return _is_group(uuid) or (resource_of(uuid) == "users" and level >= MANAGE)


class Permissions:
    """Answers permission questions about the records in a `Store` (call with the store locked)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _edges(self) -> Dict[str, List[Tuple[str, int]]]:
        edges: Dict[str, List[Tuple[str, int]]] = {}
        for resource in ("groups", "users"):
            for record in self.store.all(resource):
                if record.get("owner_uuid"):
                    edges.setdefault(record["owner_uuid"], []).append((record["uuid"], MANAGE))
        for user in self.store.all("users"):
            edges.setdefault(user["uuid"], []).append((user["uuid"], MANAGE))
        for link in self.store.where("links", link_class="permission"):
            edges.setdefault(link["tail_uuid"], []).append((link["head_uuid"], LEVELS.get(link["name"], 0)))
        return edges

    def _walk(self, user_uuid: str, edges: Dict[str, List[Tuple[str, int]]]) -> Perms:
        perms: Perms = {user_uuid: (MANAGE, True)}
        frontier = [(user_uuid, MANAGE, True)]
        while frontier:
            tail, level, starting = frontier.pop()
            if not (starting or _is_group(tail)):
                continue
            for head, edge_level in edges.get(tail, ()):
                new_level = min(level, edge_level)
                old_level, old_traverse = perms.get(head, (0, False))
                traverse = _traverse_owned(head, edge_level)
                if new_level > old_level or (traverse and not old_traverse):
                    perms[head] = (max(new_level, old_level), traverse or old_traverse)
                    if new_level > old_level:
                        frontier.append((head, new_level, False))
        return perms

    def for_user(self, user_uuid: str) -> Tuple[Perms, List[str]]:
        """(what the user and the users it manages can reach, those user uuids)."""
        edges = self._edges()
        own = self._walk(user_uuid, edges)
        users = [u for u, (level, traverse) in own.items() if resource_of(u) == "users" and traverse]
        merged: Perms = {}
        for uuid in users:
            for target, (level, traverse) in (own if uuid == user_uuid else self._walk(uuid, edges)).items():
                old_level, old_traverse = merged.get(target, (0, False))
                merged[target] = (max(level, old_level), traverse or old_traverse)
        return merged, users

    def level(self, user: Dict[str, Any], uuid: Optional[str], owner_uuid: Optional[str] = None) -> int:
        """The caller's level on an object (3 for an admin), counting what it has on the object's owner."""
        if user.get("is_admin"):
            return MANAGE
        perms, _ = self.for_user(user["uuid"])
        direct = perms.get(uuid or "", (0, False))[0]
        owner_level, traverse = perms.get(owner_uuid or "", (0, False))
        return max(direct, owner_level if traverse else 0)

    def can(self, user: Dict[str, Any], level: int, uuid: Optional[str], owner_uuid: Optional[str] = None) -> bool:
        """User#can?: the caller has at least `level` on the object or, through traverse_owned, its owner."""
        return self.level(user, uuid, owner_uuid) >= level

    def readable(self, user: Dict[str, Any], resource: str, records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The records of `resource` the caller can read (readable_by)."""
        records = list(records)
        if user.get("is_admin"):
            return records
        perms, users = self.for_user(user["uuid"])

        def ok(record: Dict[str, Any]) -> bool:
            if perms.get(record["uuid"], (0, False))[0] >= READ:
                return True
            if resource != "groups":
                level, traverse = perms.get(record.get("owner_uuid") or "", (0, False))
                if level >= READ and traverse:
                    return True
            if resource == "links" and record.get("link_class") == "permission":
                return (record.get("head_uuid") in users or record.get("tail_uuid") in users or
                        perms.get(record.get("head_uuid") or "", (0, False))[0] >= MANAGE)
            return False
        return [r for r in records if ok(r)]
