"""Containers: the unit of work a container request resolves to, driven Queued -> Locked -> Running -> Complete.

Follows services/api/app/models/container.rb: only admins (the dispatcher) and the container's own
token may change a container, and only the attributes its state permits; locking issues the
runtime token; finishing finalizes (or, for a Cancelled container whose requests still want it,
retries) the requests.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Optional

from . import images
from .auth import Caller, v2_token
from .changes import really_changed, state_change_error, whitelist_errors
from .errors import ApiError, Invalid, NotFound, PermissionDenied, UnresolvableContainer
from .kinds import Kind, Record
from .records import parse_time

QUEUED, LOCKED, RUNNING, COMPLETE, CANCELLED = "Queued", "Locked", "Running", "Complete", "Cancelled"
FINAL = (COMPLETE, CANCELLED)
TRANSITIONS = {None: [QUEUED], QUEUED: [LOCKED, CANCELLED], LOCKED: [QUEUED, RUNNING, CANCELLED],
               RUNNING: [COMPLETE, CANCELLED], COMPLETE: [CANCELLED]}
HIDDEN = ("secret_mounts", "runtime_token", "secret_mounts_md5")
HIDDEN_TYPES = {"secret_mounts": "jsonb", "runtime_token": "text"}  # writable, never shown
PROGRESS = ("progress", "runtime_status", "subrequests_cost", "cost", "log", "output", "output_properties", "exit_code")
_CREATE = ("owner_uuid", "command", "container_image", "cwd", "environment", "mounts", "output_path", "output_glob",
           "priority", "runtime_constraints", "scheduling_parameters", "secret_mounts", "runtime_token",
           "runtime_user_uuid", "runtime_auth_scopes", "output_storage_classes", "service", "published_ports")


def deep_sort(value: Any) -> Any:
    """Hashes with sorted keys, recursively (Container.deep_sort_hash)."""
    if isinstance(value, dict):
        return {k: deep_sort(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [deep_sort(v) for v in value]
    return value


class Containers(Kind):
    """Containers: state machine, who may change what, runtime tokens, retries, priorities."""

    resource = "containers"
    hidden = HIDDEN
    creatable_by_users = False

    def attribute_type(self, name: str) -> Optional[str]:
        return HIDDEN_TYPES.get(name) or super().attribute_type(name)

    def defaults(self, caller: Caller) -> Record:
        return {"state": QUEUED, "environment": {}, "runtime_constraints": {}, "mounts": {}, "output_glob": [],
                "cwd": ".", "priority": 0, "scheduling_parameters": {}, "secret_mounts": {}, "runtime_token": None,
                "runtime_status": {}, "runtime_auth_scopes": [], "output_storage_classes": ["default"],
                "output_properties": {}, "published_ports": {}, "exit_code": None, "finished_at": None, "log": None,
                "output": None, "progress": None, "started_at": None, "auth_uuid": None, "locked_by_uuid": None,
                "runtime_user_uuid": None, "lock_count": 0, "gateway_address": None,
                "interactive_session_started": False, "cost": 0.0, "subrequests_cost": 0.0, "service": False,
                "command": [], "container_image": None, "output_path": None}

    # ---- who sees what -------------------------------------------------------------------------

    def own_container(self, caller: Caller) -> Optional[Record]:
        """Container.for_current_token: the container whose runtime token the caller presents."""
        auth_uuid = caller.authorization["uuid"]
        return next(iter(self.store.where("containers", auth_uuid=auth_uuid)), None) if auth_uuid else None

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        records = self.store.all("containers")
        if caller.is_admin:
            return records
        requests = self.cluster.kinds["container_requests"].visible(caller, {})
        wanted = {r.get("container_uuid") for r in requests}
        own = self.own_container(caller)
        return [c for c in records if c["uuid"] in wanted or (own is not None and c["uuid"] == own["uuid"])]

    def lookup(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        record = self.store.get("containers", key)
        if record is None or not any(c["uuid"] == key for c in self.visible(caller, params)):
            raise NotFound()
        return record

    # ---- validation ------------------------------------------------------------------------------

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        if old is None:
            record["owner_uuid"] = self.cluster.system_user_uuid
            for attr in ("environment", "mounts", "runtime_constraints", "scheduling_parameters"):
                record[attr] = deep_sort(record.get(attr) or {})
        errors = state_change_error(TRANSITIONS, old, record)
        if record.get("runtime_status") is not None and isinstance(record["runtime_status"], dict):
            for key in ("error", "errorDetail", "warning", "warningDetail", "activity", "preemptionNotice"):
                if key in record["runtime_status"] and not isinstance(record["runtime_status"][key], str):
                    errors.append(f"Runtime status '{key}' value must be a string")
        if old is not None:
            errors += self._validate_change(caller, old, record)
        if errors:
            raise Invalid(*errors)
        self._timestamps(old, record)
        self._lock(caller, old, record)
        if really_changed(old, record, "output") and record.get("output") is not None:
            readable = self.cluster.permissions.readable(caller.user, "collections", self.store.all("collections"))
            if not any(c["portable_data_hash"] == record["output"] for c in readable):
                raise self.invalid("output", "collection must exist and be readable by current user.")
        self._assign_auth(record)
        if (old or {}).get("state") == LOCKED and record["state"] == QUEUED:
            record["runtime_status"] = {}
        if record["state"] in FINAL and (old or {}).get("state") != record["state"]:
            record["secret_mounts"], record["runtime_token"] = {}, None

    def _validate_change(self, caller: Caller, old: Record, record: Record) -> List[str]:
        permitted = ["state"]
        state, before = record["state"], old["state"]
        if state == LOCKED:
            permitted += ["priority", "runtime_status", "log", "lock_count"]
        elif state == QUEUED:
            permitted += ["priority"]
        elif state == RUNNING:
            permitted += ["priority", "output_properties", "gateway_address", *PROGRESS]
            if before != RUNNING:
                permitted.append("started_at")
            if not old.get("interactive_session_started"):
                permitted.append("interactive_session_started")
        elif state == COMPLETE and before == RUNNING:
            permitted += ["finished_at", *PROGRESS]
        elif state == CANCELLED:
            if before == RUNNING:
                permitted += ["finished_at", *PROGRESS]
            elif before in (QUEUED, LOCKED):
                permitted += ["finished_at", "log", "runtime_status", "cost"]
        own = self.own_container(caller)
        if before == RUNNING and own is not None and own["uuid"] == record["uuid"]:
            permitted = [p for p in permitted + ["finished_at"] if p not in ("log", "priority")]
        elif not caller.is_admin:
            raise PermissionDenied()
        elif old.get("locked_by_uuid") and old["locked_by_uuid"] != caller.authorization["uuid"]:
            permitted = [p for p in permitted if p not in PROGRESS]
        # Server-kept attributes (locked_by_uuid, auth_uuid, timestamps) change after this check, as in Rails.
        return whitelist_errors(old, record, permitted, list(record))

    def _timestamps(self, old: Optional[Record], record: Record) -> None:
        changed = (old or {}).get("state") != record["state"]
        if changed and record["state"] == RUNNING:
            record["started_at"] = record.get("started_at") or self.store.now()
        if changed and record["state"] in FINAL:
            record["finished_at"] = record.get("finished_at") or self.store.now()

    def _lock(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        if record["state"] in (LOCKED, RUNNING):
            need = (old or {}).get("locked_by_uuid") or caller.authorization["uuid"]
        else:
            need = None
        if really_changed(old, record, "locked_by_uuid") and record.get("locked_by_uuid") != need:
            raise self.invalid("locked_by_uuid", f"can only change to {need}")
        record["locked_by_uuid"] = need

    def _assign_auth(self, record: Record) -> None:
        if record["state"] not in (LOCKED, RUNNING):
            self.cluster.tokens.expire(record.get("auth_uuid"))
            record["auth_uuid"] = None
        elif record.get("auth_uuid") is None and record.get("runtime_token") is None:
            scopes = list(record.get("runtime_auth_scopes") or ["all"])
            record["auth_uuid"] = self.cluster.tokens.issue(record["runtime_user_uuid"], scopes)["uuid"]

    # ---- consequences --------------------------------------------------------------------------

    def after_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        requests = self.cluster.kinds["container_requests"]
        if record["state"] not in FINAL and old is not None and really_changed(old, record, "log"):
            for cr in self.store.where("container_requests", container_uuid=record["uuid"], state="Committed"):
                requests.update_collections(cr, record, ("log",))
        if record["state"] in FINAL and (old or {}).get("state") != record["state"]:
            self._handle_completed(record, old or {})

    def _handle_completed(self, record: Record, old: Record) -> None:
        requests = self.cluster.kinds["container_requests"]
        if record["state"] == CANCELLED:
            retryable = sorted((cr for cr in self.store.where("container_requests", container_uuid=record["uuid"],
                                                               state="Committed")
                                if cr["priority"] > 0 and cr["container_count"] < cr["container_count_max"]
                                and self._requester_alive(cr)), key=lambda cr: cr["uuid"])
            if retryable:
                attrs = {a: copy.deepcopy(record[a]) for a in (
                    "command", "cwd", "environment", "output_path", "output_glob", "container_image", "mounts",
                    "runtime_constraints", "runtime_user_uuid", "runtime_auth_scopes")}
                attrs["scheduling_parameters"] = _merged_scheduling(retryable)
                attrs["secret_mounts"] = old.get("secret_mounts") or {}
                attrs["runtime_token"] = old.get("runtime_token")
                retry = self.cluster.system_create("containers", attrs)
                for cr in retryable:
                    self.cluster.system_update("container_requests", cr["uuid"], {"container_uuid": retry["uuid"]})
        for cr in list(self.store.where("container_requests", container_uuid=record["uuid"], state="Committed")):
            requests.finalize(cr)
        for cr in list(self.store.where("container_requests", requesting_container_uuid=record["uuid"],
                                        state="Committed")):
            self.cluster.system_update("container_requests", cr["uuid"], {"priority": 0})
            child = self.store.get("containers", cr.get("container_uuid") or "")
            if child is not None and child["state"] in (QUEUED, LOCKED):
                self.cluster.system_update("container_requests", cr["uuid"], {"state": "Final"})

    def _requester_alive(self, cr: Record) -> bool:
        parent = self.store.get("containers", cr.get("requesting_container_uuid") or "")
        return parent is None or (parent["state"] == RUNNING and parent["priority"] > 0)

    def update_priority(self, uuid: Optional[str]) -> None:
        """update_priorities: a container's priority from its committed requests, then its children's.

        As container_priority() in the database: a request made by a container passes on that
        container's priority; any other request counts `priority * 2**50 - created_at in ms`, so
        older requests of equal priority go first.
        """
        record = self.store.get("containers", uuid or "")
        if record is None or record["state"] in FINAL:
            return
        values = []
        for cr in self.store.where("container_requests", container_uuid=uuid, state="Committed"):
            if cr["priority"] <= 0 or self.cluster.trash.is_trashed(self.store.get("groups", cr["owner_uuid"]) or {}):
                continue
            parent = self.store.get("containers", cr.get("requesting_container_uuid") or "")
            values.append(parent["priority"] if parent is not None else
                          cr["priority"] * 2 ** 50 - parse_time(cr["created_at"]) // 1_000_000)
        record["priority"] = max(values, default=0)
        for child in self.store.where("container_requests", requesting_container_uuid=uuid, state="Committed"):
            if child.get("container_uuid") and child["container_uuid"] != uuid:
                self.update_priority(child["container_uuid"])

    # ---- resolving a request -------------------------------------------------------------------

    def resolve(self, caller: Caller, request: Record) -> Record:
        """Container.resolve: a reusable container for the request, or a new one.

        The image and the mounts are resolved as the runtime user (act_as_user): the user of the
        request's runtime_token if it has one, else the user saving the request.
        """
        scopes = ["all"]
        if request.get("runtime_token"):
            try:
                runtime = self.cluster.tokens.caller(request["runtime_token"])
            except ApiError:
                raise Invalid("#<ArgumentError: Invalid runtime token>")
            caller, scopes = runtime, list(runtime.authorization.get("scopes") or ["all"])
        attrs = {
            "command": request["command"], "cwd": request["cwd"], "environment": request["environment"],
            "output_path": request["output_path"], "output_glob": request["output_glob"],
            "container_image": images.resolve(self.cluster, caller.user, request["container_image"]),
            "mounts": self._resolve_mounts(caller, request["mounts"]),
            "runtime_constraints": self._resolve_runtime_constraints(request["runtime_constraints"]),
            "scheduling_parameters": request["scheduling_parameters"], "secret_mounts": request["secret_mounts"],
            "runtime_token": request.get("runtime_token"), "runtime_user_uuid": caller.uuid,
            "runtime_auth_scopes": scopes, "output_storage_classes": request["output_storage_classes"],
            "service": request["service"], "published_ports": request["published_ports"],
        }
        if request.get("use_existing"):
            reusable = self._find_reusable(attrs)
            if reusable is not None:
                return reusable
        return self.cluster.system_create("containers", copy.deepcopy(attrs))

    def _resolve_mounts(self, caller: Caller, mounts: Record) -> Record:
        out = {}
        for target, mount in mounts.items():
            mount = dict(mount)
            if mount.get("kind") == "collection":
                uuid = mount.pop("uuid", None)
                if mount.get("portable_data_hash") is None and uuid is not None:
                    readable = self.cluster.permissions.readable(
                        caller.user, "collections", [c for c in [self.store.get("collections", uuid)] if c])
                    if not readable:
                        raise UnresolvableContainer(f"cannot mount collection {json.dumps(uuid)}: not found")
                    mount["portable_data_hash"] = readable[0]["portable_data_hash"]
            out[target] = mount
        return out

    def _resolve_runtime_constraints(self, constraints: Record) -> Record:
        rc = {k: (v[0] if isinstance(v, list) else v) for k, v in constraints.items()}
        if rc.get("keep_cache_ram") == 0:
            rc["keep_cache_ram"] = self.cluster.settings.default_keep_cache_ram
        if rc.get("keep_cache_disk") == 0 and rc.get("keep_cache_ram") == 0:
            rc["keep_cache_disk"] = min(max(rc.get("ram") or 0, 2 << 30), 32 << 30)
        return deep_sort(rc)

    def _find_reusable(self, attrs: Record) -> Optional[Record]:
        """A simplified Container.find_reusable: same work, same runtime user; Complete (exit 0) first."""
        keys = ("command", "cwd", "environment", "output_path", "output_glob", "container_image", "mounts",
                "runtime_constraints", "secret_mounts", "runtime_user_uuid", "runtime_auth_scopes",
                "output_storage_classes", "runtime_token")
        want = {k: deep_sort(attrs.get(k)) for k in keys}
        candidates = [c for c in self.store.all("containers")
                      if all(deep_sort(c.get(k)) == v for k, v in want.items())]
        done = [c for c in candidates if c["state"] == COMPLETE and c.get("exit_code") == 0 and c.get("output")]
        for group in (done, [c for c in candidates if c["state"] == RUNNING],
                      [c for c in candidates if c["state"] == LOCKED],
                      [c for c in candidates if c["state"] == QUEUED and c["priority"] > 0]):
            if group:
                return max(group, key=lambda c: c["created_at"])
        return None

    # ---- actions ---------------------------------------------------------------------------------

    def action_current(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """containers.current: the container whose token the caller presents (404 for other tokens)."""
        own = self.own_container(caller)
        if own is None:
            raise NotFound("Token is not associated with a container.")
        return self.render(caller, own)

    def action_lock(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """containers.lock: the dispatcher takes a Queued container."""
        record = self.lookup(caller, uuid, params)
        if record["state"] != QUEUED:
            raise Invalid(f"#<ArvadosModel::LockFailedError: cannot lock when {record['state']}>")
        if record["priority"] <= 0:
            raise Invalid("#<ArvadosModel::LockFailedError: cannot lock when priority<=0>")
        return self.render(caller, self.cluster.controller.save(
            caller, self, record, {"state": LOCKED, "lock_count": record["lock_count"] + 1}))

    def action_unlock(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """containers.unlock: the dispatcher gives a Locked container back to the queue."""
        record = self.lookup(caller, uuid, params)
        if record["state"] != LOCKED:
            raise Invalid(f"#<ArvadosModel::InvalidStateTransitionError: cannot unlock when {record['state']}>")
        return self.render(caller, self.cluster.controller.save(caller, self, record, {"state": QUEUED}))

    def action_auth(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """containers.auth: the runtime token of a container the caller locked."""
        record = self.lookup(caller, uuid, params)
        if record.get("locked_by_uuid") != caller.authorization["uuid"]:
            raise PermissionDenied("Not locked by your token")
        auth = self.store.get("api_client_authorizations", record.get("auth_uuid") or "")
        if auth is None:
            raise NotFound()
        out = self.cluster.kinds["api_client_authorizations"].render(caller, auth)
        out["api_token"] = auth["api_token"]
        return out

    def action_secret_mounts(self, caller: Caller, uuid: str, params: Dict[str, Any], attrs: Record) -> Record:
        """containers.secret_mounts: the secret mounts, for the container's own token."""
        record = self.lookup(caller, uuid, params)
        own = self.own_container(caller)
        if own is None or own["uuid"] != record["uuid"]:
            raise PermissionDenied("Token is not associated with this container.")
        return {"secret_mounts": record.get("secret_mounts") or {}}

    def runtime_token(self, uuid: str) -> Optional[str]:
        """The v2 token the container runs with while Locked or Running (None otherwise)."""
        record = self.store.get("containers", uuid)
        auth = self.store.get("api_client_authorizations", (record or {}).get("auth_uuid") or "")
        return v2_token(auth) if auth else (record or {}).get("runtime_token")


def _merged_scheduling(requests: List[Record]) -> Record:
    partitions: Optional[list] = None
    for cr in requests:
        new = cr["scheduling_parameters"].get("partitions") or []
        if partitions is None:
            partitions = new
        else:  # empty if any is empty, else the union
            partitions = [] if not partitions or not new else sorted(set(partitions) | set(new))
    run_times = [cr["scheduling_parameters"].get("max_run_time") or 0 for cr in requests]
    return {"partitions": partitions or [],
            "preemptible": all(cr["scheduling_parameters"].get("preemptible") for cr in requests),
            "supervisor": any(cr["scheduling_parameters"].get("supervisor") for cr in requests),
            "max_run_time": 0 if 0 in run_times else max(run_times)}
