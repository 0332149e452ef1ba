"""Collections: manifests validated, signatures checked then stripped, PDH computed, re-signed per token."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import manifests
from .auth import Caller
from .errors import Invalid, NotFound, PermissionDenied
from .kinds import Kind, Record
from .records import parse_time
from .signing import MISSING, check_signature, strip_signature
from .trash import Trashable


class Collections(Trashable, Kind):
    """Collections: manifest rules on save, signatures per reader, trash, get by portable data hash."""

    resource = "collections"
    unique_name_index = "index_collections_on_owner_uuid_and_name"

    def defaults(self, caller: Caller) -> Record:
        return {"name": None, "description": None, "properties": {}, "manifest_text": "", "portable_data_hash": None,
                "replication_desired": None, "replication_confirmed": None, "replication_confirmed_at": None,
                "storage_classes_desired": ["default"], "storage_classes_confirmed": [],
                "storage_classes_confirmed_at": None, "delete_at": None, "trash_at": None, "is_trashed": False,
                "version": 1, "current_version_uuid": None, "preserve_version": False, "file_count": 0,
                "file_size_total": 0}

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        self.require_hash(record, "properties")
        if record.get("name") == "":
            record["name"] = None
        if record.get("manifest_text") is None:
            record["manifest_text"] = ""
        record["current_version_uuid"] = record["uuid"]
        old = old or {}
        if old.get("version") is not None:
            record["version"] = old["version"]  # versions are kept by the server (CollectionVersioning is off)
        manifest = record["manifest_text"]
        if manifest != old.get("manifest_text"):
            try:
                manifests.validate(manifest)
            except ValueError as e:
                raise self.invalid("manifest_text", str(e))
            if not caller.is_admin:
                self._check_signatures(caller, manifest)
            record["manifest_text"] = manifests.map_locators(manifest, strip_signature)
        computed = manifests.portable_data_hash(record["manifest_text"])
        given = record.get("portable_data_hash")
        if given is not None and given != old.get("portable_data_hash"):
            if not manifests.LOCATOR_RE.match(given):
                raise self.invalid("portable_data_hash", "is not a valid locator")
            if given[:32] != computed[:32]:
                raise self.invalid("portable_data_hash", f"'{given}' does not match computed hash '{computed}'")
        record["portable_data_hash"] = computed
        record["file_count"] = manifests.file_count(record["manifest_text"])
        record["file_size_total"] = manifests.file_size_total(record["manifest_text"])
        if not record.get("storage_classes_desired"):
            raise self.invalid("storage_classes_desired", "must not be empty")
        if old:
            problem = self.cluster.kinds["workflows"].collection_type_error(old, record)
            if problem:
                raise Invalid(problem)
        self.cluster.trash.apply(old, record)

    def after_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        self.cluster.kinds["workflows"].collection_saved(old, record)  # check_linked_workflows

    def _check_signatures(self, caller: Caller, manifest: str) -> None:
        """Collection#check_signatures: every non-empty block needs a valid signature for the caller's token."""
        settings = self.cluster.settings
        for locator in manifests.locators(manifest):
            problem = check_signature(locator, caller.token, settings.blob_signing_key, settings.blob_signing_ttl)
            if problem is None or (problem == MISSING and locator.startswith(manifests.EMPTY_BLOCK)):
                continue  # a valid signature, or no data to protect
            raise PermissionDenied()

    def render(self, caller: Caller, record: Record) -> Record:
        out = super().render(caller, record)
        out["is_trashed"] = self.cluster.trash.is_trashed(record)
        out["name"] = record.get("name") or ""
        out["unsigned_manifest_text"] = record["manifest_text"]
        out["manifest_text"] = self.signed_manifest(caller, record)
        return out

    def signed_manifest(self, caller: Caller, record: Record) -> str:
        """The manifest signed for the caller's token, valid until now + TTL or trash_at if sooner."""
        if self.cluster.trash.is_trashed(record) or not record["manifest_text"]:
            return record["manifest_text"]
        expiry = self.store.now_ns() // 1_000_000_000 + self.cluster.settings.blob_signing_ttl
        if record.get("trash_at"):
            expiry = min(expiry, parse_time(record["trash_at"]) // 1_000_000_000)
        return manifests.map_locators(record["manifest_text"], lambda loc: self.cluster.sign(loc, caller.token, expiry))

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        return self.cluster.trash.visible(super().visible(caller, params), params)

    def show(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        match = manifests.LOCATOR_RE.match(key)
        if not (match and match.group(3) is not None):
            return super().show(caller, key, params)
        # By portable data hash (CollectionsController#find_object_by_uuid): of the readable copies, the
        # one whose signatures live longest ("trash_at desc", nulls first).
        pdh = f"{match.group(1)}+{match.group(3)}"
        found = [r for r in self.visible(caller, params) if r["portable_data_hash"] == pdh]
        if not found:
            raise NotFound()
        found.sort(key=lambda r: -parse_time(r["trash_at"]) if r.get("trash_at") else -(10 ** 30))
        return {"kind": self.kind, "etag": "", "uuid": pdh, "portable_data_hash": pdh,
                "trash_at": found[0].get("trash_at"), "manifest_text": self.signed_manifest(caller, found[0])}

    def lookup(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        record = super().lookup(caller, key, params)
        if self.cluster.trash.is_trashed(record) and str(params.get("include_trash", "")).lower() not in ("true", "1"):
            raise NotFound()
        return record

