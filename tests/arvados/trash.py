"""The trash rules collections and groups share (services/api/lib/trashable.rb)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .records import Store, format_time, parse_time

Record = Dict[str, Any]


class Trash:
    """trash_at/delete_at/is_trashed bookkeeping and what trashed records hide from."""

    def __init__(self, store: Store, default_trash_lifetime: int) -> None:
        self.store = store
        self.lifetime_ns = default_trash_lifetime * 1_000_000_000

    def is_trashed(self, record: Record) -> bool:
        """Whether trash_at has come."""
        return record.get("trash_at") is not None and parse_time(record["trash_at"]) <= self.store.now_ns()

    def apply(self, old: Optional[Record], record: Record) -> None:
        """Normalize timestamps, follow is_trashed changes, default delete_at, recompute is_trashed."""
        now = self.store.now_ns()
        old = old or {}
        for attr in ("trash_at", "delete_at"):
            if record.get(attr) is not None:
                record[attr] = format_time(parse_time(record[attr]))
        trash_changed = record.get("trash_at") != old.get("trash_at")
        if trash_changed and record.get("trash_at") is not None:
            record["trash_at"] = format_time(max(now, parse_time(record["trash_at"])))
        if bool(record.get("is_trashed")) != bool(old.get("is_trashed")) and not trash_changed:
            if record.get("is_trashed"):
                record["trash_at"] = format_time(now)
            else:
                record["trash_at"] = record["delete_at"] = None
            trash_changed = True
        if trash_changed and record.get("delete_at") == old.get("delete_at"):
            record["delete_at"] = None if record.get("trash_at") is None else \
                format_time(parse_time(record["trash_at"]) + self.lifetime_ns)
        record["is_trashed"] = record.get("trash_at") is not None and parse_time(record["trash_at"]) <= now

    def visible(self, records: List[Record], params: Dict[str, Any]) -> List[Record]:
        """The records, trashed ones only when the request says include_trash."""
        if str(params.get("include_trash", "")).lower() in ("true", "1"):
            return records
        return [r for r in records if not self.is_trashed(r)]

    def trash(self, record: Record) -> Record:
        """Move a record into the trash now."""
        old = dict(record)
        record["trash_at"] = format_time(self.store.now_ns())
        self.apply(old, record)
        return record

    def untrash(self, record: Record) -> Record:
        """Take a record out of the trash."""
        old = dict(record)
        record["is_trashed"] = False
        record["trash_at"] = old["trash_at"]
        self.apply(old, record)
        return record


class Trashable:
    """The trash, untrash and delete actions of a kind whose records go to the trash (collections, groups)."""

    cluster: Any

    def destroy(self, caller: Any, record: Dict[str, Any]) -> Dict[str, Any]:
        """delete: into the trash."""
        return self.cluster.trash.trash(record)

    def action_trash(self, caller: Any, uuid: str, params: Dict[str, Any], attrs: Dict[str, Any]) -> Dict[str, Any]:
        """<kind>.trash: move into the trash."""
        return self.render(caller, self.cluster.controller.write_access(  # type: ignore[attr-defined]
            caller, self, uuid, params, self.destroy))

    def action_untrash(self, caller: Any, uuid: str, params: Dict[str, Any], attrs: Dict[str, Any]) -> Dict[str, Any]:
        """<kind>.untrash: take out of the trash."""
        return self.render(caller, self.cluster.controller.write_access(  # type: ignore[attr-defined]
            caller, self, uuid, dict(params, include_trash=True), self.cluster.trash.untrash))
