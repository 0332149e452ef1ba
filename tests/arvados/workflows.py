"""Workflow records, and their link to a workflow collection (services/api/app/models/workflow.rb).

A workflow has a `definition` that must parse as YAML; a `name` or `description` the client
leaves unchanged and blank (or equal to the old definition's) is taken from the definition
(`set_name_and_description`). In 3.2.1 a non-null `collection_uuid` is refused ("must be
null") unless the cluster enables linking (`$enable_workflow_collection_linking_for_tests`,
here `Settings.workflow_collection_linking`). A linked workflow needs a readable collection
with `properties.type = workflow`; its name, description, definition and owner follow the
collection (`Collection#update_linked_workflows`), it is readable only with the collection
(`Workflow.readable_by`), and it cannot be updated directly (WorkflowsController#update).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import yaml

from .auth import Caller
from .errors import ApiError, Invalid, NotFound, PermissionDenied
from .kinds import Kind, Record


def _safe_load(text: Any) -> Any:
    """YAML.safe_load of a definition; ValueError with the parser's message if it does not parse."""
    try:
        return yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as e:
        raise ValueError(str(e).replace("\n", " "))


def _ruby_index(document: Any, key: str) -> Any:
    """`document[key]` as Ruby answers it for a parsed definition (a Hash, or a String's substring)."""
    if isinstance(document, dict):
        return document.get(key)
    if isinstance(document, str):
        return key if key in document else None
    return None


def linked_definition(collection: Record) -> str:
    """Collection#update_linked_workflows: the wrapper definition a linked workflow gets from its collection.

    RuntimeError (as an ApiError) when a property it needs is missing or of the wrong type.
    """
    props = collection.get("properties") or {}
    for key, kind, label in (("arv:workflowMain", str, "String"), ("arv:cwl_inputs", list, "Array"),
                             ("arv:cwl_outputs", list, "Array"), ("arv:cwl_requirements", list, "Array"),
                             ("arv:cwl_hints", list, "Array")):
        if props.get(key) is None:
            raise ApiError(f"#<RuntimeError: missing field '{key}' in collection properties>")
        if not isinstance(props[key], kind):
            raise ApiError(f"#<RuntimeError: expected field '{key}' in collection properties to be a {label}>")
    main = props["arv:workflowMain"]
    inputs = json.loads(json.dumps(props["arv:cwl_inputs"]))
    outputs = json.loads(json.dumps(props["arv:cwl_outputs"]))
    step: Dict[str, Any] = {"id": "#main/" + main, "in": [], "out": [],
                            "run": f"keep:{collection['portable_data_hash']}/{main}", "label": collection.get("name")}
    for i in inputs:
        step["in"].append({"id": f"#main/step/{str(i['id']).split('/')[-1]}", "source": i["id"]})
    for i in outputs:
        out_id = f"#main/step/{str(i['id']).split('/')[-1]}"
        step["out"].append({"id": out_id})
        i["outputSource"] = out_id
    wrapper = {"class": "Workflow", "id": "#main", "inputs": inputs, "outputs": outputs, "steps": [step],
               "requirements": props["arv:cwl_requirements"] + [{"class": "SubworkflowFeatureRequirement"}],
               "hints": props["arv:cwl_hints"]}
    return json.dumps({"cwlVersion": "v1.2", "$graph": [wrapper]}, separators=(",", ":"), ensure_ascii=False)


class Workflows(Kind):
    """Workflow records: definition validated, name/description from it, optional collection link."""

    resource = "workflows"

    def defaults(self, caller: Caller) -> Record:
        return {"name": None, "description": None, "definition": None, "collection_uuid": None}

    def visible(self, caller: Caller, params: Dict[str, Any]) -> List[Record]:
        """Workflow.readable_by: (readable and unlinked) or linked to a readable collection; admins see all."""
        if caller.is_admin:
            return self.store.all(self.resource)
        unlinked = [r for r in super().visible(caller, params) if not r.get("collection_uuid")]
        linked = [r for r in self.store.all(self.resource) if r.get("collection_uuid")]
        uuids = {r["collection_uuid"] for r in linked}
        collections = self.cluster.permissions.readable(
            caller.user, "collections", [c for c in (self.store.get("collections", u) for u in uuids) if c])
        readable = {c["uuid"] for c in self.cluster.trash.visible(collections, {})}
        return unlinked + [r for r in linked if r["collection_uuid"] in readable]

    def lookup(self, caller: Caller, key: str, params: Dict[str, Any]) -> Record:
        record = self.store.get(self.resource, key)
        if record is None or not any(r is record for r in self.visible(caller, params)):
            raise NotFound()
        return record

    def before_update(self, caller: Caller, record: Record) -> None:
        """WorkflowsController#update: a linked workflow is changed only through its collection."""
        if record.get("collection_uuid") is not None:
            raise PermissionDenied("#<ArvadosModel::PermissionDeniedError: Cannot directly update Workflow records "
                                   "that have collection_uuid set, must update the linked collection "
                                   f"({record['collection_uuid']})>")

    def before_save(self, caller: Caller, old: Optional[Record], record: Record) -> None:
        errors: List[str] = []
        definition: Any = None
        try:
            definition = _safe_load(record.get("definition"))
        except ValueError as e:
            errors.append(self.full_message("definition", f"is not valid yaml: {e}"))
        collection = self._validate_collection_uuid(caller, old, record, errors)
        if errors:
            raise Invalid(*errors)
        self._set_name_and_description(old, record, definition)
        if collection is not None:  # link_with_collection
            self.sync_from_collection(record, collection)

    def _validate_collection_uuid(self, caller: Caller, old: Optional[Record], record: Record,
                                  errors: List[str]) -> Optional[Record]:
        uuid = record.get("collection_uuid")
        if uuid == (old or {}).get("collection_uuid"):
            return None
        if not self.cluster.settings.workflow_collection_linking:
            if uuid is not None:
                errors.append(self.full_message("collection_uuid", "must be null"))
            return None
        if uuid is None:
            return None
        found = [c for c in (self.store.get("collections", str(uuid)),) if c]
        found = self.cluster.trash.visible(self.cluster.permissions.readable(caller.user, "collections", found), {})
        if not found:
            errors.append(self.full_message("collection_uuid", "does not exist or do not have permission to read."))
            raise Invalid(*errors)  # Ruby goes on to c.properties on nil: NoMethodError; refuse here
        if (found[0].get("properties") or {}).get("type") != "workflow":
            errors.append(self.full_message("collection_uuid", "properties does not have type: workflow"))
        return found[0]

    def _set_name_and_description(self, old: Optional[Record], record: Record, definition: Any) -> None:
        """Workflow#set_name_and_description: unchanged blank (or stale) name and description follow the definition."""
        old_definition: Any = {}
        if (old or {}).get("definition") is not None:
            try:
                old_definition = _safe_load(old["definition"])  # type: ignore[index]
            except ValueError:
                return
        for attr in ("name", "description"):
            if record.get(attr) != (old or {}).get(attr):
                continue  # changed in this save
            value = record.get(attr)
            if value in (None, "") or (isinstance(value, str) and not value.strip()) \
                    or value == _ruby_index(old_definition, attr):
                present = record.get("definition") is not None and definition is not None and definition is not False
                record[attr] = _ruby_index(definition, attr) if present else None

    def sync_from_collection(self, record: Record, collection: Record) -> None:
        """The collection's name, description, wrapper definition and owner, onto a linked workflow."""
        record.update(name=collection.get("name"), description=collection.get("description"),
                      definition=linked_definition(collection), owner_uuid=collection["owner_uuid"])

    def collection_saved(self, old: Optional[Record], collection: Record) -> None:
        """Collection#check_linked_workflows (after_save): linked workflows follow an updated workflow collection."""
        if old is None or (collection.get("properties") or {}).get("type") != "workflow":
            return
        for workflow in list(self.store.where(self.resource, collection_uuid=collection["uuid"])):
            synced = dict(workflow)
            self.sync_from_collection(synced, collection)
            self.cluster.system_update(self.resource, workflow["uuid"], {
                k: synced[k] for k in ("name", "description", "definition", "owner_uuid")})

    def collection_type_error(self, old: Record, collection: Record) -> Optional[str]:
        """Collection#workflow_type_property: `type: workflow` stays while workflows are linked."""
        was = (old.get("properties") or {}).get("type")
        if (collection.get("properties") or {}).get("type") == was or was != "workflow":
            return None
        if any(True for _ in self.store.where(self.resource, collection_uuid=collection["uuid"])):
            return "Properties cannot change 'type' property when there are linked workflows"
        return None
