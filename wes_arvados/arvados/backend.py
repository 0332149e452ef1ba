"""The Arvados backend: WES runs are runner container requests, and every call is made with the caller's token.

Nothing is kept here: a run's state, request and tags are in Arvados, so any number
of servers answer for any run. RunWorkflow creates the placeholder request (its
uuid is the run_id) and hands the rest to a preparation process of its own
(``python -m wes_arvados.arvados.preparer``), which gets the token on a pipe.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from functools import lru_cache
from importlib.metadata import version
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import Config
from ..errors import NotFound, ServerError, Unauthorized
from ..http import Client
from ..images.reference import Reference
from ..images.registry import AuthConfig
from ..images.stores.base import StoredImage
from ..images.stores.keep import KeepImageStore
from ..timestamps import utcnow
from ..wes.backend import Backend
from ..wes.caller import Caller
from ..wes.models import (
    Content,
    ImagePull,
    Output,
    Page,
    RunRecord,
    RunRequest,
    TaskRecord,
    WorkflowRegistration,
)
from ..wes.pages import decode_token, encode_token
from ..wes.states import State
from ..wes.submission import Submission
from . import files, image_pulls, registrations, runs, work
from .api import api_errors, client_for
from .submit import ARVADOS_CWL_RUNNER, placeholder

RUNNER = "arvados-cwl-runner"
READY_SECONDS = 5.0  # a readiness probe waits no longer for the API server
DISCOVERY_MAX = 4 << 20  # the discovery document is ~300 KB


@lru_cache(maxsize=1)
def runner_version() -> str:
    """The installed arvados-cwl-runner's version, read once."""
    return version(RUNNER)


def runner_image(config: Config) -> str:
    """The image of a-c-r's runner container: the configured one, else arvados/jobs:<installed a-c-r version>."""
    return config.arvados.runner_image or f"arvados/jobs:{runner_version()}"


class ArvadosBackend(Backend):
    """Runs on the Arvados cluster of ``config.arvados``, as the caller whose token a request carries."""

    def __init__(self, config: Config, token: Optional[str] = None) -> None:
        self.config = config
        self.token = token
        self._client: Any = None

    def for_caller(self, caller: Caller) -> "ArvadosBackend":
        """This backend acting with the caller's token: Arvados checks it, and its permissions decide."""
        return ArvadosBackend(self.config, caller.token)

    @property
    def api(self) -> Any:
        """The caller's API client; `Unauthorized` without a token."""
        if not self.token:
            raise Unauthorized("this server runs workflows on Arvados: send your Arvados API token "
                               "('Authorization: Bearer <token>')")
        if self._client is None:
            self._client = client_for(self.config.arvados.api_host, self.token, self.config.arvados.api_host_insecure)
        return self._client

    @property
    def runner_image(self) -> str:
        """The image of a-c-r's runner container."""
        return runner_image(self.config)

    # ---- service-info ---------------------------------------------------------------------------

    def engine_versions(self) -> Dict[str, List[str]]:
        """The arvados-cwl-runner this server submits with."""
        return {RUNNER: [runner_version()]}

    def default_engine_parameters(self) -> List[dict]:
        """The arvados-cwl-runner options clients may set."""
        return ARVADOS_CWL_RUNNER.defaults()

    def filesystem_protocols(self) -> List[str]:
        """Attachments, Keep locations and http(s) URLs."""
        return ["keep", "http", "https"]

    def state_counts(self) -> Dict[str, int]:
        """The caller's runs per state (none without a token: service-info is open)."""
        if not self.token:
            return {}
        with api_errors("no runs"):
            return runs.state_counts(self.api)

    def ready(self) -> None:
        """Ready when the API server serves its discovery document within 5 s (no token needed)."""
        from ..http import TransportError, read_capped

        url = f"https://{self.config.arvados.api_host}/discovery/v1/apis/arvados/v1/rest"
        try:
            response = self._http().request("GET", url, timeout=READY_SECONDS)
            read_capped(response, DISCOVERY_MAX, "the discovery document")
        except TransportError as exc:
            raise ServerError(f"the Arvados API server does not answer: {exc}") from None
        if response.status != 200:
            raise ServerError(f"the Arvados API server answered {response.status} for {url}")

    # ---- runs -----------------------------------------------------------------------------------

    def submit(self, submission: Submission, credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Create the run's placeholder request, then prepare and submit it in a process of its own.

        `credentials` (from X-Registry-Auth) go to that process with the token, on its stdin: never stored.
        """
        options, notes = ARVADOS_CWL_RUNNER.options(submission.request.workflow_engine_parameters)
        request = submission.request.to_dict()
        properties: Dict[str, Any] = dict(runs.run_properties(submission.request.tags, request))
        properties[runs.PREPARATION_PROPERTY] = {"state": "queued", "heartbeat": utcnow(),
                                                 "stale_after": self.config.arvados.heartbeat_timeout}
        name = os.path.basename(submission.workflow.partition("#")[0]) or "workflow"
        with api_errors("the project to run in was not found"):
            run = self.api.container_requests().create(body={"container_request": placeholder(
                name, self.runner_image, properties, self.config.arvados.project_uuid or None)}).execute()
        staged = self.config.staging_dir.parent / "arvados" / run["uuid"]
        staged.parent.mkdir(parents=True, exist_ok=True)
        os.rename(submission.staging_dir, staged)
        try:
            work.start(self.config, "wes_arvados.arvados.preparer", run["uuid"], {
                "run_id": run["uuid"], "staged": str(staged), "workflow": submission.workflow,
                "job": submission.request.workflow_params, "token": self.token,
                "options": options, "notes": submission.notes + notes,
                "credentials": {registry: asdict(auth) for registry, auth in (credentials or {}).items()}})
        except OSError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            runs.fail_preparation(self.api, run["uuid"], f"the preparation could not start: {exc}")
        return run["uuid"]

    def list_runs(self, page_size: int, page_token: Optional[str], states: Sequence[State] = (),
                  tags: Optional[Dict[str, str]] = None) -> Page:
        """The caller's runs, newest first."""
        with api_errors("no runs"):
            return runs.list_runs(self.api, page_size, page_token, states, tags)

    def get_run(self, run_id: str) -> RunRecord:
        """The run: its request, state, the runner container's times, command and exit code."""
        request, container = runs.request_and_container(self.api, run_id)
        request = runs.settle_if_stale(self.api, request)
        properties = request.get("properties") or {}
        state = runs.run_state(request, container)
        return RunRecord(
            run_id=run_id, state=state, request=RunRequest(**_request_fields(runs.run_request_of(request))),
            submitted_time=request["created_at"], start_time=(container or {}).get("started_at"),
            end_time=(container or {}).get("finished_at"), exit_code=(container or {}).get("exit_code"),
            cmd=list((container or request).get("command") or []), system_logs=runs.system_logs(properties),
            outputs=files.outputs(self.api, request) if state == State.COMPLETE else {}, has_logs=container is not None)

    def get_state(self, run_id: str) -> State:
        """The run's state (a preparation found stale is recorded failed on the way)."""
        request, container = runs.request_and_container(self.api, run_id)
        return runs.run_state(runs.settle_if_stale(self.api, request), container)

    def list_tasks(self, run_id: str, page_size: int, page_token: Optional[str]) -> Page:
        """The runner's child requests, in creation order."""
        _, container = runs.request_and_container(self.api, run_id)
        start = decode_token(page_token) or 0
        found, more = files.tasks(self.api, container, start, page_size)
        return Page(found, encode_token(start + len(found)) if more else "")

    def _task(self, run_id: str, task_id: str) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
        """A task's request and container; `NotFound` unless it is a child of the run's runner container."""
        _, runner = runs.request_and_container(self.api, run_id)
        with api_errors(f"run {run_id!r} has no task {task_id!r}"):
            child = self.api.container_requests().get(uuid=task_id).execute()
            if runner is None or child.get("requesting_container_uuid") != runner["uuid"]:
                raise NotFound(f"run {run_id!r} has no task {task_id!r}")
            container = self.api.containers().get(uuid=child["container_uuid"]).execute() \
                if child.get("container_uuid") else None
        return child, container

    def get_task(self, run_id: str, task_id: str) -> TaskRecord:
        """One child request of the run's runner container."""
        return files.task(*self._task(run_id, task_id))

    def cancel(self, run_id: str) -> None:
        """Priority 0, and Final for a run still on hold; a run being prepared stops before it is submitted."""
        runs.cancel(self.api, run_id)

    def log(self, run_id: str, stream: str, task_id: Optional[str] = None) -> Content:
        """A container's stderr (or a task's stdout): live while it runs, else from its log collection."""
        if task_id is None:
            request, container = runs.request_and_container(self.api, run_id)
            if stream == "stdout":  # a-c-r's runner mounts its stdout to cwl.output.json: the run's outputs
                raise NotFound(f"the runner of {run_id!r} writes no stdout; its output object is the run's outputs")
        else:
            request, container = self._task(run_id, task_id)
        arv = self.config.arvados
        return files.log(self.api, self._http(), arv.api_host, str(self.token), request, container, f"{stream}.txt")

    def output(self, run_id: str, relpath: str) -> Output:
        """A file or directory of the run's output collection."""
        request, _ = runs.request_and_container(self.api, run_id)
        return files.output(self.api, request, relpath)

    def _http(self) -> Client:
        return _http_client(self.config.arvados.api_host_insecure)

    # ---- images ---------------------------------------------------------------------------------

    def pull_image(self, image: Reference, platform: Optional[str] = None,
                   credentials: Optional[Dict[str, AuthConfig]] = None, project_uuid: Optional[str] = None) -> str:
        """Import `image` into Keep as the caller, into `project_uuid` or the default project, in a process of its own."""
        return image_pulls.start(self.api, self.config, image, platform, project_uuid, str(self.token), credentials)

    def get_image_pull(self, pull_id: str) -> ImagePull:
        """A pull the caller may see."""
        return image_pulls.get(self.api, pull_id)

    # ---- registered workflows ----------------------------------------------------------------

    def register_workflow(self, submission: Submission, name: Optional[str], description: Optional[str],
                          project_uuid: Optional[str], update_uuid: Optional[str] = None,
                          credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Register the workflow as the caller, in a process of its own (images into Keep, pins, a-c-r)."""
        return registrations.start(self.api, self.config, submission.staging_dir, submission.workflow, str(self.token),
                                   project_uuid=project_uuid, name=name, description=description,
                                   update_uuid=update_uuid, credentials=credentials)

    def get_workflow_registration(self, registration_id: str) -> WorkflowRegistration:
        """A registration the caller may see, with the workflow's Workbench page when the cluster names Workbench 2."""
        with api_errors("the cluster's configuration"):
            workbench = str(((self.api.config().get("Services") or {}).get("Workbench2") or {}).get("ExternalURL") or "")
        return registrations.get(self.api, registration_id, workbench)

    def list_images(self) -> Tuple[str, List[StoredImage]]:
        """The docker images the caller can read in Keep, by their arv-keepdocker links, newest first."""
        store = KeepImageStore(self.api)
        with api_errors("no images"):
            return store.kind, store.list()


@lru_cache(maxsize=2)
def _http_client(insecure: bool) -> Client:
    """The client that reads live logs from the API server: one per process (its pools and TLS set-up shared)."""
    return Client(insecure=insecure)


def _request_fields(request: Dict[str, Any]) -> Dict[str, Any]:
    """The RunRequest fields of a stored request, with the required ones present."""
    fields: Dict[str, Any] = {k: request.get(k) for k in ("workflow_params", "workflow_type", "workflow_type_version",
                                          "workflow_url", "tags", "workflow_engine_parameters", "workflow_engine",
                                          "workflow_engine_version") if k in request}
    fields.setdefault("workflow_params", {})
    fields.setdefault("workflow_type", "CWL")
    fields.setdefault("workflow_type_version", "")
    fields.setdefault("workflow_url", "")
    return fields
