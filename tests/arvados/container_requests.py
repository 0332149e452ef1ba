"""Container requests: validated as the API server does, committed into containers, finalized with their output and log.

Follows services/api/app/models/container_request.rb: Uncommitted -> Committed -> Final; committing
resolves the request (its image by images.py) into a new or reused container; when the
container finishes, the request gets a log collection ("Container log for request ...", files
at the root and under "log for container <uuid>/") and an output collection, and becomes Final.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

from . import manifests
from .auth import Caller
from .changes import really_changed, state_change_error, whitelist_errors
from .containers import FINAL, HIDDEN_TYPES
from .errors import ApiError, Invalid
from .kinds import Kind, Record
from .records import format_time

UNCOMMITTED, COMMITTED, FINAL_STATE = "Uncommitted", "Committed", "Final"
TRANSITIONS = {None: [UNCOMMITTED, COMMITTED], UNCOMMITTED: [COMMITTED], COMMITTED: [FINAL_STATE]}
ALWAYS = ["owner_uuid", "state", "name", "description", "properties"]
BEFORE_COMMIT = ["command", "container_count_max", "container_image", "cwd", "environment", "filters", "mounts",
                 "output_path", "output_glob", "priority", "runtime_token", "runtime_constraints", "state",
                 "container_uuid", "use_existing", "scheduling_parameters", "secret_mounts", "output_name",
                 "output_ttl", "output_storage_classes", "output_properties", "service", "published_ports"]
MOUNT_FIELDS = {"collection": ["uuid", "portable_data_hash", "writable", "path", "exclude_from_output"],
                "tmp": ["capacity", "device_type", "exclude_from_output"], "keep": ["exclude_from_output"],
                "file": ["path", "exclude_from_output"], "json": ["content", "exclude_from_output"],
                "text": ["content", "exclude_from_output"]}
HIDDEN = ("secret_mounts", "runtime_token")


class ContainerRequests(Kind):
    """Container requests: validations, the per-state whitelist, commit into a container, finalize."""

    resource = "container_requests"
    hidden = HIDDEN

    def attribute_type(self, name: str) -> Optional[str]:
        return HIDDEN_TYPES.get(name) or super().attribute_type(name)

    def defaults(self, caller: Caller) -> Record:
        return {"state": UNCOMMITTED, "environment": {}, "runtime_constraints": {}, "mounts": {}, "secret_mounts": {},
                "cwd": ".", "container_count_max": self.cluster.settings.max_retry_attempts,
                "scheduling_parameters": {}, "output_ttl": 0, "output_glob": [], "priority": 0, "properties": {},
                "name": None, "description": None, "command": [], "container_image": None, "output_path": None,
                "container_uuid": None, "container_count": 0, "requesting_container_uuid": None,
                "use_existing": True, "filters": None, "expires_at": None, "log_uuid": None, "output_uuid": None,
                "output_name": None, "output_storage_classes": ["default"], "output_properties": {},
                "cumulative_cost": 0.0, "service": False, "published_ports": {}, "runtime_token": None}

    def joins(self) -> Optional[tuple]:
        containers = self.cluster.kinds["containers"]
        return ({"container": containers.columns},
                lambda record, table, column: (self.store.get("containers", record.get("container_uuid") or "")
                                               or {}).get(column))

    # ---- validation ------------------------------------------------------------------------------

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        _fill_container_defaults(record)
        errors: List[str] = []
        for attr in ("command", "container_image", "output_path", "cwd"):
            if record.get(attr) in (None, "", [], {}):
                errors.append(self.full_message(attr, "can't be blank"))
        if not isinstance(record.get("output_ttl"), int) or record["output_ttl"] < 0:
            errors.append("Output ttl must be greater than or equal to 0")
        priority = record.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            errors.append("Priority is not a number")
        elif not 0 <= priority <= 1000:
            errors.append("Priority must be " + ("greater than or equal to 0" if priority < 0 else
                                                 "less than or equal to 1000"))
        if not isinstance(record.get("command"), list) or not all(isinstance(c, str) for c in record["command"]):
            errors.append("Command must be an array of strings")
        for attr in ("environment", "mounts", "output_properties", "properties", "runtime_constraints",
                     "scheduling_parameters", "secret_mounts", "published_ports"):
            if not isinstance(record.get(attr), dict):
                errors.append(self.full_message(attr, "must be a hash"))
        checking = old is None or record["state"] == COMMITTED
        if checking and not errors:
            errors += self._datatypes(record) + self._runtime_constraints(record) + self._scheduling(record)
        errors += state_change_error(TRANSITIONS, old, record)
        if old is not None:
            errors += self._whitelist(caller, old, record)
        if any(k in record["mounts"] for k in record["secret_mounts"]):
            errors.append("Secret mounts conflict with non-secret mounts")
        if record.get("service") and record.get("use_existing"):
            errors.append("Use existing cannot be true if 'service' is true")
        errors += self._runtime_token(old, record)
        if errors:
            raise Invalid(*errors)
        if record["state"] == FINAL_STATE:
            record["secret_mounts"], record["runtime_token"] = {}, None
        self._set_container(caller, old, record)
        if old is None:
            own = self.cluster.kinds["containers"].own_container(caller)
            record["requesting_container_uuid"] = record.get("requesting_container_uuid") or (own or {}).get("uuid")
            if record["requesting_container_uuid"]:
                record["priority"] = max((cr["priority"] for cr in self.store.where(
                    "container_requests", container_uuid=record["requesting_container_uuid"])), default=0)

    def _datatypes(self, record: Record) -> List[str]:
        errors = []
        for key, value in record["environment"].items():
            if "\0" in key or "=" in key:
                errors.append(f"Environment key {key!r} contains an invalid character NUL or '='")
            if key == "":
                errors.append("Environment key cannot be empty")
            if not isinstance(value, str):
                errors.append(f"Environment [{key}]: incompatible value type: string required")
        for attr, streams in (("mounts", ("stdin", "stdout", "stderr")), ("secret_mounts", ("stdin",))):
            kinds = MOUNT_FIELDS if attr == "mounts" else {k: MOUNT_FIELDS[k] for k in ("json", "text")}
            for target, mount in record[attr].items():
                label = self.full_message(attr, f"[{target}]")
                if target not in streams and not target.startswith("/"):
                    errors.append(f"{label}: invalid target: must be {', '.join(streams)} or an absolute path")
                if not isinstance(mount, dict):
                    errors.append(f"{label}: invalid mount specification: must be a hash, not a string")
                    continue
                allowed = kinds.get(mount.get("kind"))
                if allowed is None:
                    errors.append(f"{self.full_message(attr, f'[{target}][kind]')}: unsupported value "
                                  f"{'nil' if mount.get('kind') is None else repr(mount.get('kind'))}")
                    continue
                for key, value in mount.items():
                    if key != "kind" and key not in allowed and value not in (0, "", False, None):
                        errors.append(f"{self.full_message(attr, f'[{target}][{key}]')}: parameter is not "
                                      f"supported for a {mount['kind']} mount")
        if record["output_path"] not in record["mounts"]:
            errors.append("Output path must be a mount target")
        return errors

    def _runtime_token(self, old: Optional[Record], record: Record) -> List[str]:
        """validate_runtime_token: a new runtime_token must be a live token (its "v2/" check never fires)."""
        token = record.get("runtime_token")
        if token is None or token == (old or {}).get("runtime_token"):
            return []
        try:
            self.cluster.tokens.caller(str(token))
        except ApiError:
            return ["Runtime token failed validation"]
        return []

    def _runtime_constraints(self, record: Record) -> List[str]:
        rc, errors = record["runtime_constraints"], []
        if record["state"] == COMMITTED:
            for key in ("vcpus", "ram"):
                value = rc.get(key)
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    errors.append(f"Runtime constraints [{key}]={'nil' if value is None else value} "
                                  "must be a positive integer")
            gpu = rc.get("gpu")
            if not isinstance(gpu, dict):
                errors.append("Runtime constraints [gpu] must be a hash")
            else:
                extra = set(gpu) - {"device_count", "driver_version", "hardware_target", "stack", "vram"}
                if extra:
                    errors.append(f"Runtime constraints contains unexpected keys {sorted(extra)}")
                if gpu.get("stack") not in (None, "", "cuda", "rocm"):
                    errors.append(f"Runtime constraints [gpu.stack]={gpu.get('stack')!r} must be one of 'cuda' or "
                                  "'rocm' or be empty")
                for key in ("device_count", "vram"):
                    if not isinstance(gpu.get(key), int) or gpu[key] < 0:
                        errors.append(f"Runtime constraints [gpu.{key}]={gpu.get(key)} must be a positive or zero "
                                      "integer")
        extra = set(rc) - {"API", "gpu", "keep_cache_disk", "keep_cache_ram", "ram", "vcpus", "cuda"}
        if extra:
            errors.append(f"Runtime constraints contains unexpected keys {sorted(extra)}")
        return errors

    def _scheduling(self, record: Record) -> List[str]:
        sp, errors = record["scheduling_parameters"], []
        partitions = sp.get("partitions")
        if partitions is not None and not (isinstance(partitions, list)
                                           and all(isinstance(p, str) for p in partitions)):
            errors.append("Scheduling parameters partitions must be an array of strings")
        if "max_run_time" in sp and (not isinstance(sp["max_run_time"], int) or sp["max_run_time"] < 0):
            errors.append("Scheduling parameters max_run_time must be positive integer")
        extra = set(sp) - {"max_run_time", "partitions", "preemptible", "supervisor"}
        if extra:
            errors.append(f"Scheduling parameters contains unexpected keys {sorted(extra)}")
        if record["state"] == COMMITTED and sp.get("preemptible"):
            errors.append("Scheduling parameters preemptible instances are not configured in InstanceTypes")
        return errors

    def _whitelist(self, caller: Caller, old: Record, record: Record) -> List[str]:
        permitted = list(ALWAYS)
        if old["state"] == UNCOMMITTED:
            permitted += BEFORE_COMMIT
        if record["state"] == COMMITTED:
            permitted += ["priority", "container_count_max", "container_uuid", "cumulative_cost", "container_count"]
            if caller.is_admin:
                permitted.append("log_uuid")
        elif record["state"] == FINAL_STATE and old["state"] == COMMITTED:
            permitted += ["priority", "cumulative_cost"] + (["output_uuid", "log_uuid"] if caller.is_admin else [])
        errors = whitelist_errors(old, record, permitted, list(record))
        if really_changed(old, record, "container_uuid") and record.get("container_uuid") is not None \
                and not caller.is_admin:
            errors.append("Container uuid can only be updated to nil.")
        if really_changed(old, record, "container_count") and not caller.is_admin:
            errors.append("Container count cannot be updated directly.")
        return errors

    def _set_container(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        containers = self.cluster.kinds["containers"]
        if (old or {}).get("state") != COMMITTED and record["state"] == COMMITTED and not record.get("container_uuid"):
            if record["command"] and record["command"][0] == "arvados-cwl-runner":
                record["scheduling_parameters"]["supervisor"] = True  # runners are always supervisors
            record["container_uuid"] = containers.resolve(caller, record)["uuid"]
        if record.get("container_uuid") != (old or {}).get("container_uuid"):
            record["container_count"] = (record.get("container_count") or 0) + 1
            previous = self.store.get("containers", (old or {}).get("container_uuid") or "")
            if previous is not None and previous.get("log"):
                self._keep_old_log(record, previous)

    def _keep_old_log(self, record: Record, previous: Record) -> None:
        source = next(self.store.where("collections", portable_data_hash=previous["log"]), None)
        if source is None:
            return
        log = self.store.get("collections", record.get("log_uuid") or "")
        moved = manifests.under_directory(source["manifest_text"], f"log for container {previous['uuid']}")
        merged = manifests.merge(log["manifest_text"] if log else "", moved)
        record["log_uuid"] = self._save_collection(record, log, f"Container log for request {record['uuid']}",
                                                   merged, None, log["properties"] if log else {})

    # ---- consequences --------------------------------------------------------------------------

    def after_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        containers = self.cluster.kinds["containers"]
        if old is not None and old.get("container_uuid") and old["container_uuid"] != record.get("container_uuid"):
            containers.update_priority(old["container_uuid"])
        containers.update_priority(record.get("container_uuid"))
        if record["state"] == COMMITTED:
            container = self.store.get("containers", record.get("container_uuid") or "")
            if container is None:
                self.cluster.system_update(self.resource, record["uuid"], {"state": FINAL_STATE})
            elif container["state"] in FINAL:
                self.finalize(record)

    def finalize(self, record: Record) -> None:
        """ContainerRequest#finalize!: copy the container's log and output into collections, then become Final."""
        container = self.store.get("containers", record.get("container_uuid") or "")
        if container is not None:
            self.update_collections(record, container, ("log", "output"))
            if container["state"] == "Complete" and container.get("log"):
                source = next(self.store.where("collections", portable_data_hash=container["log"]), None)
                if source is not None:
                    self.cluster.system_create("collections", {
                        "owner_uuid": record["owner_uuid"], "name": f"Container log for container {container['uuid']}",
                        "properties": {"type": "log", "container_request": record["uuid"],
                                       "container_uuid": container["uuid"]},
                        "manifest_text": source["manifest_text"],
                        "storage_classes_desired": record["output_storage_classes"]}, ensure_unique_name=True)
        current = self.store.get(self.resource, record["uuid"]) or record
        if current["state"] == COMMITTED:
            self.cluster.system_update(self.resource, record["uuid"], {
                "state": FINAL_STATE, "log_uuid": current.get("log_uuid"), "output_uuid": current.get("output_uuid")})

    def update_collections(self, record: Record, container: Record, which: tuple) -> None:
        """The request's log (merged) and output collections from the container's (update_collections)."""
        for out_type in which:
            pdh = container.get(out_type)
            source = next(self.store.where("collections", portable_data_hash=pdh), None) if pdh else None
            if source is None:
                continue
            name, trash_at = f"Container {out_type} for request {record['uuid']}", None
            if out_type == "output":
                name = record.get("output_name") or name
                if record.get("output_ttl", 0) > 0:
                    trash_at = format_time(self.store.now_ns() + record["output_ttl"] * 1_000_000_000)
            existing = self.store.get("collections", record.get(f"{out_type}_uuid") or "")
            manifest = source["manifest_text"]
            if out_type == "log":
                manifest = manifests.merge(
                    existing["manifest_text"] if existing else "", manifest,
                    manifests.under_directory(manifest, f"log for container {container['uuid']}"))
                manifest = _dedupe_streams(manifest)
            properties = {"container_request": record["uuid"]}
            properties["type"] = "intermediate" if out_type == "output" and record.get("requesting_container_uuid") \
                else out_type
            if out_type == "output":
                properties.update(container.get("output_properties") or {})
                properties.update(record.get("output_properties") or {})
            uuid = self._save_collection(record, existing, name, manifest, trash_at, properties)
            stored = self.store.get(self.resource, record["uuid"])
            for target in (record, stored):
                if target is not None:
                    target[f"{out_type}_uuid"] = uuid

    def _save_collection(self, record: Record, existing: Optional[Record], name: str, manifest: str,
                         trash_at: Optional[str], properties: Record) -> str:
        attrs = {"manifest_text": manifest, "trash_at": trash_at, "delete_at": trash_at,
                 "properties": copy.deepcopy(properties)}
        if existing is not None:
            return self.cluster.system_update("collections", existing["uuid"], attrs)["uuid"]
        attrs.update(owner_uuid=record["owner_uuid"], name=name,
                     storage_classes_desired=record["output_storage_classes"])
        return self.cluster.system_create("collections", attrs, ensure_unique_name=True)["uuid"]


def _dedupe_streams(manifest: str) -> str:
    """Merged log manifests name each stream once: later copies of a file replace earlier ones."""
    streams: Dict[str, str] = {}
    for line in manifest.splitlines():
        streams[line.split(" ", 1)[0]] = line
    return "".join(line + "\n" for line in streams.values())


def _fill_container_defaults(record: Record) -> None:
    rc = record.get("runtime_constraints")
    if isinstance(rc, dict):
        record["runtime_constraints"] = {"API": False, "gpu": {}, "keep_cache_disk": 0, "keep_cache_ram": 0, "ram": 0,
                                         "vcpus": 0, **rc}
        gpu = record["runtime_constraints"]["gpu"]
        if isinstance(gpu, dict):
            record["runtime_constraints"]["gpu"] = {"device_count": 0, "driver_version": "", "hardware_target": [],
                                                    "stack": "", "vram": 0, **gpu}
    sp = record.get("scheduling_parameters")
    if isinstance(sp, dict):
        record["scheduling_parameters"] = {"max_run_time": 0, "partitions": [], "preemptible": False,
                                           "supervisor": False, **sp}

