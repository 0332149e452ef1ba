"""What every resource shares: `Kind`, the base of each resource's behaviour.

A `Kind` knows its columns (from the discovery document's schema), its defaults, its
validations (`before_save`) and consequences (`after_save`), how it renders, and any actions
beyond create/get/list/update/delete as `action_<method>` (e.g. `users.current`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .auth import Caller
from .errors import Invalid, NotFound
from .records import MODELS

if TYPE_CHECKING:
    from .cluster import Cluster

Record = Dict[str, Any]
_TYPES = {"datetime": "datetime", "integer": "integer", "float": "float", "boolean": "boolean",
          "Hash": "jsonb", "Array": "jsonb", "jsonb": "jsonb", "text": "text"}
# Set by the server on every record; clients cannot set them (sent values are ignored, as Rails does).
SERVER_SET = {"kind", "etag", "href", "created_at", "modified_at", "modified_by_user_uuid", "modified_by_client_uuid"}


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
    return out or "0"


class Kind:
    """A resource's behaviour; subclasses override the hooks they need."""

    resource = ""
    # Attributes a client may write but never reads back (secrets).
    hidden: Tuple[str, ...] = ()
    unique_name_index = ""  # name of the (owner_uuid, name) unique index, if the table has one
    creatable_by_users = True

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.store = cluster.store
        schema = cluster.discovery["schemas"][self.model]["properties"]
        self.columns: Dict[str, str] = {name: _TYPES.get(spec.get("type", "string"), "string")
                                        for name, spec in schema.items()}

    @property
    def model(self) -> str:
        """The model name, e.g. `Collection`."""
        return MODELS[self.resource]

    @property
    def kind(self) -> str:
        """The `kind` of a record, e.g. `arvados#collection`."""
        return "arvados#" + self.model[0].lower() + self.model[1:]

    @property
    def singular(self) -> str:
        """The key a wrapped request body uses, e.g. `collection`."""
        return self.resource[:-1]

    # ---- hooks -------------------------------------------------------------------------------

    def defaults(self, caller: Caller) -> Record:
        """Field values of a new record before the client's attributes are applied."""
        return {}

    def permission_to_create(self, caller: Caller, record: Record) -> bool:
        """Whether the caller may create this record (owner permission is checked separately)."""
        return self.creatable_by_users or caller.is_admin

    def permission_to_update(self, caller: Caller, old: Record, record: Record) -> bool:
        """Whether the caller may save this change (beyond write permission on the record)."""
        return True

    def before_update(self, caller: Caller, record: Record) -> None:
        """What the resource's controller checks before a client's update (e.g. WorkflowsController#update)."""

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        """Validate and complete a record about to be saved; raise an ApiError to refuse it."""

    def after_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        """What follows a save (new containers, finalized requests, ...)."""

    def destroy(self, caller: Caller, record: Record) -> Record:
        """Delete the record; what the response shows."""
        self.store.delete(self.resource, record["uuid"])
        return record

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        """The records a list or get may see (readable_by)."""
        return self.cluster.permissions.readable(caller.user, self.resource, self.store.all(self.resource))

    def lookup(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        """The record a get/update/delete names, readable by the caller; NotFound otherwise."""
        record = self.store.get(self.resource, key)
        if record is None or not self.cluster.permissions.readable(caller.user, self.resource, [record]):
            raise NotFound()
        return record

    def show(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        """What a get answers (before `select`)."""
        return self.render(caller, self.lookup(caller, key, params))

    def render(self, caller: Caller, record: Record) -> Record:
        """The record as the API shows it to the caller (before `select`); `hidden` attributes never show."""
        out = {"kind": self.kind, "etag": self.etag(record)}
        out.update({name: copy.deepcopy(record.get(name)) for name in self.columns
                    if name not in ("kind", "etag") and name not in self.hidden})
        return out

    def attribute_type(self, name: str) -> Optional[str]:
        """The column type of an attribute a client may send, or None if the model has no such attribute."""
        return self.columns.get(name)

    def joins(self) -> Optional[tuple]:
        """({table: columns}, join(record, table, column)) for filters on joined tables, e.g. `container.state`."""
        return None

    # ---- helpers -----------------------------------------------------------------------------

    @staticmethod
    def etag(record: Record) -> str:
        """A version tag for the record (changes whenever the record does)."""
        digest = hashlib.md5(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
        return _base36(int(digest, 16))[:25]

    def full_message(self, attr: str, message: str) -> str:
        """An ActiveModel full error message: "Owner uuid cannot be ..."."""
        return f"{attr.replace('_', ' ').capitalize()} {message}"

    def invalid(self, attr: str, message: str) -> Invalid:
        """A validation failure on one attribute."""
        return Invalid(self.full_message(attr, message))

    def require_hash(self, record: Record, *attrs: str) -> None:
        """Refuse non-object values of Hash attributes (validates hash_attr)."""
        for attr in attrs:
            if record.get(attr) is not None and not isinstance(record[attr], dict):
                raise self.invalid(attr, "must be a hash")
