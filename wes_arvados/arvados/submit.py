"""Handing a prepared run to arvados-cwl-runner: the placeholder request, the properties hint, the command.

The run's container request exists before a-c-r runs (its uuid is the run_id), as
an Uncommitted placeholder that Arvados 3.2 accepts: ``output_path`` must be a
mount target, and command, image and cwd not blank. a-c-r then commits that very
request (``--submit-request-uuid``) and replaces its whole ``properties`` with
those of the workflow's ``http://arvados.org/cwl#ProcessProperties`` hint, so the
WES marker and tags travel in that hint. a-c-r evaluates each ``propertyValue`` as
a CWL expression; `literal` escapes values so they arrive as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Sequence

from ..wes.engine_parameters import EngineOptions, Valued, integer_in, not_blank, one_of, positive_number
from .pin import dump, round_trip

PROPERTIES_HINT = "http://arvados.org/cwl#ProcessProperties"
RUNNER_HINT = "http://arvados.org/cwl#WorkflowRunnerResources"
RUNNER_OUTPUT = "/var/spool/cwl"  # where a-c-r's runner request writes; the placeholder's only mount

_DOCKER = "it needs Docker on the server, which this server never uses"
_REGISTRATION = "it does not run the workflow (workflows are registered through POST /workflows)"
# The a-c-r options a WES client may set in workflow_engine_parameters.
ARVADOS_CWL_RUNNER = EngineOptions(
    flags=frozenset({
        "--enable-reuse", "--disable-reuse", "--compute-checksum", "--enable-dev", "--skip-schemas",
        "--trash-intermediate", "--no-trash-intermediate", "--enable-preemptible", "--disable-preemptible",
        "--enable-resubmit-non-preemptible", "--disable-resubmit-non-preemptible", "--enable-usage-report",
        "--disable-usage-report", "--defer-downloads", "--prefer-cached-downloads",
        "--log-timestamps", "--no-log-timestamps",
    }),
    valued={
        "--name": Valued("string", "", not_blank),
        "--output-name": Valued("string", "", not_blank),
        "--output-tags": Valued("string", "", not_blank),
        "--on-error": Valued("string", "continue", one_of("stop", "continue")),
        "--eval-timeout": Valued("float", "20", positive_number),
        "--priority": Valued("int", "500", integer_in(1, 1000)),
        "--intermediate-output-ttl": Valued("int", "0", integer_in(0)),
        "--storage-classes": Valued("string", "default", not_blank),
        "--intermediate-storage-classes": Valued("string", "default", not_blank),
        "--submit-runner-ram": Valued("int", "1024", integer_in(1)),
        "--thread-count": Valued("int", "0", integer_in(0)),
        "--collection-cache-size": Valued("int", "256", integer_in(1)),
    },
    server_controlled=frozenset({
        "--submit", "--no-wait", "--wait", "--api", "--submit-request-uuid", "--submit-runner-image",
        "--project-uuid", "--basedir", "--outdir", "--quiet", "--verbose", "--disable-color",
        "--retries",
    }),
    refused={
        "--debug": "its output (the run's system_logs) would show API requests in detail",
        "--local": "the workflow would run on the server itself",
        "--match-submitter-images": _DOCKER, "--copy-deps": _DOCKER,
        "--enable-aws-credential-capture": "it would hand the server's own credentials to the run",
        "--submit-runner-cluster": "images are put into this cluster's Keep, so runs stay on it",
        "--create-workflow": _REGISTRATION, "--create-template": _REGISTRATION, "--update-workflow": _REGISTRATION,
        "--print-dot": _REGISTRATION, "--validate": _REGISTRATION, "--print-keep-deps": _REGISTRATION,
        "--version": _REGISTRATION, "--tool-help": _REGISTRATION,
    },
)


def placeholder(name: str, runner_image: str, properties: Dict[str, Any],
                project_uuid: Optional[str] = None) -> Dict[str, Any]:
    """The body of the Uncommitted request that stands for a run until a-c-r commits it."""
    body: Dict[str, Any] = {
        "name": name, "state": "Uncommitted", "priority": 0, "properties": properties,
        "command": ["arvados-cwl-runner"], "container_image": runner_image,
        "output_path": RUNNER_OUTPUT, "cwd": RUNNER_OUTPUT, "mounts": {RUNNER_OUTPUT: {"kind": "tmp", "capacity": 1}},
    }
    if project_uuid:
        body["owner_uuid"] = project_uuid
    return body


def literal(value: str) -> str:
    """`value` escaped so that CWL's parameter interpolation gives it back unchanged."""
    if "$(" not in value and "${" not in value:
        return value  # a string with no reference is never interpolated
    return value.replace("\\", "\\\\").replace("$(", "\\$(").replace("${", "\\${")


def _main_process(document: Any, fragment: str) -> MutableMapping[str, Any]:
    """The process a-c-r runs from this document: the `$graph` entry named by `fragment` (default main)."""
    if isinstance(document, MutableMapping) and "$graph" in document:
        wanted = fragment or "main"
        for entry in document["$graph"]:
            if isinstance(entry, MutableMapping) and str(entry.get("id", "")).lstrip("#") == wanted:
                return entry
        raise ValueError(f"the document has no process #{wanted}")
    if not isinstance(document, MutableMapping):
        raise ValueError("the document is not a CWL process")
    return document


def _hint(process: MutableMapping[str, Any], cls: str) -> Optional[MutableMapping[str, Any]]:
    """The process's hint of class `cls` (its fields, in either form), if it has one."""
    hints = process.get("hints")
    if isinstance(hints, list):
        return next((h for h in hints if isinstance(h, MutableMapping) and h.get("class") == cls), None)
    if isinstance(hints, MutableMapping):  # map form: {class name: fields}
        found = hints.get(cls)
        return found if isinstance(found, MutableMapping) else None
    return None


def _set_hint(process: MutableMapping[str, Any], cls: str, fields: Dict[str, Any], merge: bool) -> None:
    """Give the process a hint of class `cls` with `fields`: merged into the one it has (`merge`), or replacing it."""
    existing = _hint(process, cls)
    if merge and existing is not None:
        existing.update(fields)
        return
    hints = process.get("hints")
    if hints is None:
        process["hints"] = [{"class": cls, **fields}]
    elif isinstance(hints, list):
        hints[:] = [h for h in hints if not (isinstance(h, MutableMapping) and h.get("class") == cls)]
        hints.append({"class": cls, **fields})
    else:
        hints[cls] = dict(fields)


def _edit_main_process(workflow: Path, fragment: str, edit: Callable[[MutableMapping[str, Any]], None]) -> None:
    yaml = round_trip()
    document = yaml.load(workflow.read_text(encoding="utf-8"))
    edit(_main_process(document, fragment))
    dump(yaml, document, workflow)


def add_properties_hint(workflow: Path, fragment: str, properties: Dict[str, str]) -> None:
    """Give the workflow's main process a ProcessProperties hint carrying `properties` literally."""
    fields = {"processProperties": [{"propertyName": name, "propertyValue": literal(value)}
                                    for name, value in properties.items()]}
    _edit_main_process(workflow, fragment, lambda process: _set_hint(process, PROPERTIES_HINT, fields, merge=False))


def runner_image_hint(workflow: Path, fragment: str) -> Optional[str]:
    """The runner image the workflow's main process names itself (``WorkflowRunnerResources.acrContainerImage``)."""
    process = _main_process(round_trip().load(workflow.read_text(encoding="utf-8")), fragment)
    value = (_hint(process, RUNNER_HINT) or {}).get("acrContainerImage")
    return str(value) if value else None


def pin_runner_image(workflow: Path, fragment: str, pdh: str) -> None:
    """Name the runner image by its collection in the main process's WorkflowRunnerResources hint.

    a-c-r's --create-workflow then resolves no runner image by name (which needs Docker) and
    Workbench launches the registered workflow in that image; the hint's other fields stay.
    """
    _edit_main_process(workflow, fragment,
                       lambda process: _set_hint(process, RUNNER_HINT, {"acrContainerImage": pdh}, merge=True))


def register_command(runner: str, workflow: str, runner_pdh: str, project_uuid: Optional[str] = None,
                     name: Optional[str] = None, update_uuid: Optional[str] = None) -> List[str]:
    """The a-c-r command line that registers `workflow` (images and runner image pinned) as a workflows record.

    ``--copy-deps`` is a-c-r's own default for registering, given explicitly so that it never
    turns on matching images against a local Docker; with every image pinned nothing is
    looked up by name. Without `project_uuid` an update keeps the workflow where it is.
    """
    command = [runner, f"--update-workflow={update_uuid}" if update_uuid else "--create-workflow",
               "--api=containers", "--disable-color", "--disable-git", "--copy-deps",
               f"--submit-runner-image={runner_pdh}"]
    if project_uuid:
        command.append(f"--project-uuid={project_uuid}")
    if name:
        command.append(f"--name={name}")
    return command + [workflow]


def submit_command(runner: str, workflow: str, job: str, run_id: str, runner_image: str,
                   project_uuid: Optional[str] = None, options: Sequence[str] = ()) -> List[str]:
    """The a-c-r command line that commits the placeholder `run_id` and returns at once."""
    command = [runner, "--submit", "--no-wait", "--api=containers", "--disable-color", f"--submit-request-uuid={run_id}",
               f"--submit-runner-image={runner_image}"]
    if project_uuid:
        command.append(f"--project-uuid={project_uuid}")
    return command + list(options) + [workflow, job]
