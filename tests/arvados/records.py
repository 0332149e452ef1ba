"""The double's database: one table per resource, uuids and timestamps as the API server makes them."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import threading
import time
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Tuple

_B36 = string.digits + string.ascii_lowercase
UUID_RE = re.compile(r"^([0-9a-z]{5})-([0-9a-z]{5})-([0-9a-z]{15})$")
_TIME_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$")

# resource name -> model name, as in the discovery document's schemas.
MODELS = {
    "api_client_authorizations": "ApiClientAuthorization",
    "collections": "Collection",
    "container_requests": "ContainerRequest",
    "containers": "Container",
    "credentials": "Credential",
    "groups": "Group",
    "keep_services": "KeepService",
    "links": "Link",
    "logs": "Log",
    "users": "User",
    "workflows": "Workflow",
}


def _base36(number: int) -> str:
    out = ""
    while number:
        number, digit = divmod(number, 36)
        out = _B36[digit] + out
    return out or "0"


def type_infix(model: str) -> str:
    """The uuid type infix of a model: `Collection` -> `4zz18`, derived as HasUuid does (md5 of the name)."""
    return _base36(int(hashlib.md5(model.encode()).hexdigest(), 16))[-5:]


INFIX_TO_RESOURCE = {type_infix(model): resource for resource, model in MODELS.items()}


def resource_of(uuid: Optional[str]) -> Optional[str]:
    """The resource a uuid names (`collections` for `zzzzz-4zz18-...`), or None."""
    match = UUID_RE.match(uuid or "")
    return INFIX_TO_RESOURCE.get(match.group(2)) if match else None


def format_time(ns: int) -> str:
    """A timestamp as the API server writes it: RFC 3339 UTC with nine fractional digits."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (`Z`, an offset or none, i.e. UTC)."""
    match = _TIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"invalid timestamp {text!r}")
    year, month, day, hour, minute, sec = (int(g) for g in match.groups()[:6])
    frac = int((match.group(7) or "0").ljust(9, "0"))
    moment = datetime(year, month, day, hour, minute, sec, tzinfo=timezone.utc)
    offset = match.group(8)
    seconds = int(moment.timestamp())
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + frac


class Store:
    """Records of every resource, in memory, behind one re-entrant lock (requests run on many threads)."""

    def __init__(self, uuid_prefix: str) -> None:
        self.uuid_prefix = uuid_prefix
        self.lock = threading.RLock()
        self.tables: Dict[str, Dict[str, Dict[str, Any]]] = {name: {} for name in MODELS}
        self._last_ns = 0

    def new_uuid(self, resource: str) -> str:
        """A fresh uuid for a record of `resource`."""
        tail = "".join(secrets.choice(_B36) for _ in range(15))
        return f"{self.uuid_prefix}-{type_infix(MODELS[resource])}-{tail}"

    def now_ns(self) -> int:
        """Now, strictly later than any earlier answer (so created_at orders records)."""
        with self.lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1000)
            return self._last_ns

    def now(self) -> str:
        """`now_ns` formatted as the API server does."""
        return format_time(self.now_ns())

    def insert(self, resource: str, record: Dict[str, Any]) -> Dict[str, Any]:
        """Add a record (it must have its uuid)."""
        with self.lock:
            self.tables[resource][record["uuid"]] = record
        return record

    def find(self, uuid: Optional[str]) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
        """(resource, record) for a uuid; (resource, None) if the type is known but no such record."""
        resource = resource_of(uuid)
        if resource is None:
            return None, None
        return resource, self.tables[resource].get(uuid or "")

    def get(self, resource: str, uuid: str) -> Optional[Dict[str, Any]]:
        """The record of `resource` with `uuid`, or None."""
        return self.tables[resource].get(uuid)

    def all(self, resource: str) -> List[Dict[str, Any]]:
        """A snapshot of the records of `resource`."""
        with self.lock:
            return list(self.tables[resource].values())

    def where(self, resource: str, **equal: Any) -> Iterator[Dict[str, Any]]:
        """Records of `resource` whose fields equal the given values."""
        for record in self.all(resource):
            if all(record.get(key) == value for key, value in equal.items()):
                yield record

    def delete(self, resource: str, uuid: str) -> None:
        """Forget a record."""
        with self.lock:
            self.tables[resource].pop(uuid, None)
