"""Registering a workflow in Arvados as ``arvados-cwl-runner --create-workflow`` does, with no Docker anywhere.

A registration is an Arvados link (`work.LinkWork`, class `REGISTRATION_LINK`, owned by the
workflow's project, else by the caller) whose properties hold its state, a
heartbeat and its result; the link's uuid is the registration's id, so any
replica answers for it and Arvados' permissions decide who sees it. The work
(`run`) is done as the caller, in a process of its own like an image pull:

1. every image the workflow pulls, and the runner image, goes into Keep in the
   arv-keepdocker form, in the project (so whoever can read the project can
   launch the workflow), reusing what Keep holds;
2. every DockerRequirement is pinned by its collection (``pin.py``), and the
   main process's ``WorkflowRunnerResources`` hint names the runner image's
   collection (``acrContainerImage``), which Workbench launches the workflow in;
3. a-c-r registers the files (``--create-workflow``, or ``--update-workflow``
   to keep a workflow's uuid): with every image pinned it resolves none by
   name, so it never calls Docker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional

from ..config import Config, image_settings, load_config
from ..images.errors import ImageError
from ..images.registry import AuthConfig
from ..images.service import ImageService
from ..images.stores.keep import KeepImageStore
from ..logs import configure as configure_logging
from ..timestamps import utcnow
from ..wes.models import WorkflowRegistration
from ..wes.states import State
from . import work
from .api import api_errors, client_for
from .prepare import PreparationFailed, images_into_keep, run_a_c_r
from .pin import pin_images
from .submit import pin_runner_image, register_command, runner_image_hint

REGISTRATION_LINK = "wes_arvados_workflow_registration"
QUEUED, RUNNING, COMPLETE, SYSTEM_ERROR = (s.value for s in (State.QUEUED, State.RUNNING, State.COMPLETE,
                                                            State.SYSTEM_ERROR))
REGISTER_SECONDS = 600  # a-c-r uploads the workflow's files and dependencies, then writes the record
GONE = "the process doing this registration stopped before it finished (its server or machine restarted); ask again"
REGISTRATIONS = work.LinkWork(REGISTRATION_LINK, "workflow registration", GONE)
log = logging.getLogger("wes_arvados.arvados.registrations")  # not __main__: it runs with -m


@dataclass
class RegistrationJob:
    """What a registration's process is handed: the staged files, the caller and what to register."""

    registration_id: str
    staged: Path  # the workflow's files, owned by the process from now on
    workflow: str  # the main document relative to `staged`, with its #fragment if any
    runner_image: str  # the configured runner image, unless the workflow names its own
    api_host: str
    token: str
    insecure: bool = False
    runner: str = "arvados-cwl-runner"
    project_uuid: Optional[str] = None
    name: Optional[str] = None
    update_uuid: Optional[str] = None
    description: Optional[str] = None  # else a-c-r's: the workflow's doc
    credentials: Dict[str, AuthConfig] = field(default_factory=dict)


def _register(job: RegistrationJob, runner_pdh: str) -> str:
    """Run a-c-r as the caller on the pinned files, with no Docker; the workflow's uuid (the last line it prints)."""
    command = register_command(job.runner, job.workflow, runner_pdh, job.project_uuid, job.name, job.update_uuid)
    done = run_a_c_r(command, job.staged, job.api_host, job.token, job.insecure, REGISTER_SECONDS)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise PreparationFailed(f"arvados-cwl-runner named no workflow: {' '.join(done.stderr.split())[-2000:]}")
    return lines[-1].strip()


def run(api: Any, service: ImageService, job: RegistrationJob, heartbeat_seconds: float,
        log: Callable[[str], None] = lambda _: None,
        turn: ContextManager[None] = contextlib.nullcontext()) -> Dict[str, Any]:
    """Register the workflow `job` describes once `turn` lets it (QUEUED until then); the link's properties at the end.

    The staged files are removed whatever happens; how it ended is recorded on the link.
    """
    lines: List[str] = []

    def note(line: str) -> None:
        log(line)
        lines.append(f"{utcnow()} {line}")
        REGISTRATIONS.record(api, job.registration_id, lines=lines)

    path, _, fragment = job.workflow.partition("#")
    try:
        beat = lambda: REGISTRATIONS.record(api, job.registration_id)  # noqa: E731
        with work.beating(beat, heartbeat_seconds, job.registration_id), turn:
            REGISTRATIONS.record(api, job.registration_id, state=RUNNING)
            runner_image = runner_image_hint(job.staged / path, fragment) or job.runner_image
            pinned = images_into_keep(service, job.staged / path, runner_image, note, job.credentials)
            pin_images(job.staged, pinned)
            pin_runner_image(job.staged / path, fragment, pinned[runner_image])
            workflow_uuid = _register(job, pinned[runner_image])
            if job.description is not None:
                with api_errors(f"workflow {workflow_uuid} is gone"):
                    api.workflows().update(uuid=workflow_uuid,
                                           body={"workflow": {"description": job.description}}).execute()
    except (ImageError, PreparationFailed, OSError) as exc:
        return REGISTRATIONS.record(api, job.registration_id, state=SYSTEM_ERROR, end_time=utcnow(),
                                    error=" ".join(str(exc).split()))["properties"]
    except Exception as exc:  # recorded, never left RUNNING
        REGISTRATIONS.record(api, job.registration_id, state=SYSTEM_ERROR, end_time=utcnow(),
                             error=f"internal error: {type(exc).__name__}")
        raise
    finally:
        shutil.rmtree(job.staged, ignore_errors=True)
    return REGISTRATIONS.record(api, job.registration_id, state=COMPLETE, end_time=utcnow(),
                                workflow_uuid=workflow_uuid, images=pinned)["properties"]


def start(api: Any, config: Config, staged: Path, workflow: str, token: str, *, project_uuid: Optional[str],
          name: Optional[str], description: Optional[str], update_uuid: Optional[str] = None,
          credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
    """Record the registration (QUEUED) as the caller and start its process, which takes `staged` over; its id."""
    if update_uuid:
        with api_errors(f"no workflow {update_uuid!r} that you may update"):
            current = api.workflows().get(uuid=update_uuid).execute()
        project_uuid = project_uuid or current["owner_uuid"]
    project = project_uuid or config.arvados.project_uuid or None
    link = REGISTRATIONS.create(api, config, name or os.path.basename(workflow.partition("#")[0]), project,
                                update_uuid=update_uuid)
    owned = staged.parent / link["uuid"]
    try:
        os.rename(staged, owned)
        work.start(config, __name__, link["uuid"], {
            "registration_id": link["uuid"], "staged": str(owned), "workflow": workflow, "token": token,
            "project_uuid": project, "name": name, "description": description, "update_uuid": update_uuid,
            "credentials": {r: asdict(a) for r, a in (credentials or {}).items()}})
    except OSError as exc:
        shutil.rmtree(owned, ignore_errors=True)
        REGISTRATIONS.record(api, link["uuid"], state=SYSTEM_ERROR, end_time=utcnow(),
                             error=f"the registration could not start: {exc}")
    return str(link["uuid"])


def get(api: Any, registration_id: str, workbench: str = "", now: Optional[datetime] = None) -> WorkflowRegistration:
    """The registration as the caller may see it; `NotFound` if there is none. One whose process stopped is SYSTEM_ERROR.

    `workbench` is the cluster's Workbench 2 URL (empty if it names none), for the workflow's page.
    """
    link = REGISTRATIONS.current(api, registration_id, now)
    properties = link.get("properties") or {}
    uuid = properties.get("workflow_uuid")
    return WorkflowRegistration(
        id=registration_id, name=link["name"], state=str(properties.get("state") or SYSTEM_ERROR),
        submitted_time=link["created_at"], end_time=properties.get("end_time"), project_uuid=link.get("owner_uuid"),
        update_uuid=properties.get("update_uuid"), workflow_uuid=uuid, error=properties.get("error"),
        images=dict(properties.get("images") or {}), system_logs=list(properties.get("lines") or []),
        workbench_url=f"{workbench.rstrip('/')}/workflows/{uuid}" if workbench and uuid else None)


def main() -> int:
    """Do the registration described on stdin as the caller whose token it carries; 0 if the workflow is registered."""
    config = load_config()
    registration_id = sys.argv[1]
    configure_logging(config.log_level, config.log_format, registration_id=registration_id)
    payload = json.loads(sys.stdin.read())
    arvados = config.arvados
    api = client_for(arvados.api_host, payload["token"], arvados.api_host_insecure)
    from .backend import runner_image

    job = RegistrationJob(
        registration_id=registration_id, staged=Path(payload["staged"]), workflow=payload["workflow"],
        runner_image=runner_image(config), api_host=arvados.api_host, token=payload["token"],
        insecure=arvados.api_host_insecure, runner=str(Path(sys.executable).with_name("arvados-cwl-runner")),
        project_uuid=payload.get("project_uuid"), name=payload.get("name"), update_uuid=payload.get("update_uuid"),
        description=payload.get("description"),
        credentials={r: AuthConfig(**fields) for r, fields in (payload.get("credentials") or {}).items()})
    store = KeepImageStore(api, project_uuid=job.project_uuid, claim=True)
    done = run(api, ImageService(store, image_settings(config)), job, heartbeat_seconds=arvados.heartbeat_timeout / 4,
               log=lambda line: log.info("%s", line), turn=work.turn(config))
    log.info("workflow registration %s: %s %s", registration_id, done.get("state"),
             done.get("error") or done.get("workflow_uuid"))
    return 0 if done.get("state") == COMPLETE else 1


if __name__ == "__main__":
    sys.exit(main())
