"""WES runs as Arvados keeps them: a runner container request marked as a WES run, and its container.

The run's own data lives in the request's properties (they are what a-c-r copies
from the staged workflow's ``http://arvados.org/cwl#ProcessProperties`` hint onto
the request it commits): the marker `RUN_PROPERTY`, one ``wes_arvados_tag:<key>``
property per tag (so that a tag filter is an Arvados filter), the request as
submitted, and, before a-c-r commits it, the server's preparation with its heartbeat.
Workbench's launch of a registered workflow (a runner request with the workflow's
uuid as ``template_uuid``) is read as a run too, by its uuid, though ListRuns
lists only the marked runs. Everything here reads with the caller's own API client:
Arvados' permissions decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import BadRequest, NotFound
from ..wes import pages
from ..wes.models import Page, RunSummary
from ..wes.states import ArvadosRun, State, state_from_arvados
from . import work
from .api import api_errors

RUN_PROPERTY = "wes_arvados_run"  # its value: the version of this layout
RUN_LAYOUT = "1"
TAG_PREFIX = "wes_arvados_tag:"
REQUEST_PROPERTY = "wes_arvados_request"
# Workbench 2 launches a registered workflow with the workflow's uuid in this property of its runner request.
LAUNCH_PROPERTY = "template_uuid"
RUNNER_COMMAND = "arvados-cwl-runner"
LOG_PROPERTY = "wes_arvados_system_logs"  # the preparation's lines (JSON), carried onto the committed request
# {"state": queued|preparing|submitting|failed|canceled, "heartbeat", "stale_after", "message"}
PREPARATION_PROPERTY = "wes_arvados_preparation"
# While a-c-r submits nobody beats (a-c-r is about to replace the properties), so that step
# has a-c-r's time limit too.
STALE_MESSAGE = ("the process preparing this run stopped before it was submitted (its server or machine "
                 "restarted); the run cannot go on: submit it again")
SUBMIT_SECONDS = 1800.0
# Requests read per API call while filling a page that a state filter thins out.
BATCH = 100
REQUEST_FIELDS = ["uuid", "state", "priority", "container_uuid", "properties", "created_at", "modified_at",
                  "log_uuid", "output_uuid"]
CONTAINER_FIELDS = ["uuid", "state", "exit_code", "runtime_status", "started_at", "finished_at"]


def run_properties(tags: Dict[str, str], request: Dict[str, Any]) -> Dict[str, str]:
    """The properties that make a container request a WES run with these tags and this request (as JSON)."""
    properties = {RUN_PROPERTY: RUN_LAYOUT, REQUEST_PROPERTY: json.dumps(request, sort_keys=True)}
    properties.update({TAG_PREFIX + key: value for key, value in tags.items()})
    return properties


def request_of(properties: Dict[str, Any]) -> Dict[str, Any]:
    """The RunWorkflow request kept in a run's properties ({} if it is not there)."""
    try:
        request = json.loads(properties.get(REQUEST_PROPERTY) or "{}")
    except (TypeError, ValueError):
        return {}
    return request if isinstance(request, dict) else {}


def is_launch(request: Dict[str, Any]) -> bool:
    """Whether a container request is Workbench's launch of a registered workflow: a runner, with the workflow's uuid."""
    properties = request.get("properties") or {}
    return bool(properties.get(LAUNCH_PROPERTY)) and list(request.get("command") or [])[:1] == [RUNNER_COMMAND]


def run_request_of(request: Dict[str, Any]) -> Dict[str, Any]:
    """The RunWorkflow fields of a run: as it was submitted, or, for a launch, the registered workflow and the inputs."""
    properties = request.get("properties") or {}
    if RUN_PROPERTY in properties or not is_launch(request):
        return request_of(properties)
    mounts = request.get("mounts") or {}
    definition = (mounts.get("/var/lib/cwl/workflow.json") or {}).get("content") or {}
    inputs = (mounts.get("/var/lib/cwl/cwl.input.json") or {}).get("content") or {}
    return {"workflow_url": str(properties[LAUNCH_PROPERTY]), "workflow_type": "CWL",
            "workflow_type_version": str(definition.get("cwlVersion") or "") if isinstance(definition, dict) else "",
            "workflow_params": inputs if isinstance(inputs, dict) else {}}


def tags_of(properties: Dict[str, Any]) -> Dict[str, str]:
    """The WES tags kept in a request's properties."""
    return {key[len(TAG_PREFIX):]: value for key, value in properties.items() if key.startswith(TAG_PREFIX)}


def preparation_of(properties: Dict[str, Any], now: datetime) -> Optional[str]:
    """The preparation's state as `state_from_arvados` reads it, "stale" when its heartbeat stopped."""
    preparation = properties.get(PREPARATION_PROPERTY)
    if not isinstance(preparation, dict):
        return None
    state = preparation.get("state")
    if state in ("queued", "preparing", "submitting") and \
            work.stale(preparation, now, SUBMIT_SECONDS if state == "submitting" else 0):
        return "stale"
    return state if isinstance(state, str) else None


def run_state(request: Dict[str, Any], container: Optional[Dict[str, Any]], now: Optional[datetime] = None) -> State:
    """The WES state of the run whose runner request and container (if any) these are."""
    now = now or datetime.now(timezone.utc)
    runtime_status = (container or {}).get("runtime_status") or {}
    return state_from_arvados(ArvadosRun(
        request_state=request["state"], priority=request.get("priority") or 0,
        container_state=container["state"] if container else None,
        exit_code=container.get("exit_code") if container else None,
        preempted=bool(runtime_status.get("preemptionNotice")),
        preparation=preparation_of(request.get("properties") or {}, now) if request["state"] == "Uncommitted"
        else None))


def summary(request: Dict[str, Any], container: Optional[Dict[str, Any]], now: Optional[datetime] = None
            ) -> RunSummary:
    """The WES `RunSummary` of a run: its state, the container's times and the tags."""
    return RunSummary(run_id=request["uuid"], state=run_state(request, container, now),
                      start_time=(container or {}).get("started_at"), end_time=(container or {}).get("finished_at"),
                      tags=tags_of(request.get("properties") or {}))


@dataclass(frozen=True)
class Position:
    """Where a listing stopped: the last request it looked at, in ``created_at desc, uuid desc`` order."""

    created_at: str
    uuid: str

    def encode(self) -> str:
        """An opaque page token."""
        return pages.encode([self.created_at, self.uuid])

    @classmethod
    def decode(cls, token: Optional[str]) -> Optional["Position"]:
        """The position behind a token this server made; `BadRequest` for any other."""
        if not token:
            return None
        value = pages.decode(token)
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise BadRequest(f"page_token {token!r} is not valid")
        return cls(value[0], value[1])


def list_filters(tags: Dict[str, str]) -> List[list]:
    """Filters for the WES runs with these tags, of every state."""
    filters: List[list] = [[f"properties.{RUN_PROPERTY}", "exists", True]]
    filters += [[f"properties.{TAG_PREFIX}{key}", "=", value] for key, value in sorted(tags.items())]
    return filters


def containers_of(api: Any, requests: Iterable[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The containers of these requests, by uuid, in one call per `BATCH`."""
    uuids = sorted({r["container_uuid"] for r in requests if r.get("container_uuid")})
    found: Dict[str, Dict[str, Any]] = {}
    for start in range(0, len(uuids), BATCH):
        chunk = uuids[start:start + BATCH]
        answer = api.containers().list(filters=[["uuid", "in", chunk]], select=CONTAINER_FIELDS, limit=len(chunk),
                                       count="none").execute()
        found.update({c["uuid"]: c for c in answer["items"]})
    return found


def _requests_after(api: Any, filters: List[list], position: Optional[Position], limit: int
                    ) -> List[Dict[str, Any]]:
    """Up to `limit` WES requests after `position`, newest first (ties on created_at broken by uuid)."""
    if position is None:
        return api.container_requests().list(filters=filters, order=["created_at desc", "uuid desc"],
                                             select=REQUEST_FIELDS, limit=limit, count="none").execute()["items"]
    # The rest of the position's own second of creation, then everything older.
    same = api.container_requests().list(
        filters=filters + [["created_at", "=", position.created_at], ["uuid", "<", position.uuid]],
        order=["uuid desc"], select=REQUEST_FIELDS, limit=limit, count="none").execute()["items"]
    if len(same) >= limit:
        return same
    older = api.container_requests().list(
        filters=filters + [["created_at", "<", position.created_at]], order=["created_at desc", "uuid desc"],
        select=REQUEST_FIELDS, limit=limit - len(same), count="none").execute()["items"]
    return same + older


def list_runs(api: Any, page_size: int, page_token: Optional[str], states: Sequence[State] = (),
              tags: Optional[Dict[str, str]] = None, now: Optional[datetime] = None) -> Page:
    """The caller's WES runs, newest first: a page of `RunSummary` and the token of the next one.

    A state filter is applied to the computed state, so requests are read in batches
    until the page is full or none are left; the token names the last one looked at.
    """
    filters = list_filters(tags or {})
    position = Position.decode(page_token)
    wanted = set(states)
    items: List[RunSummary] = []
    while len(items) < page_size:
        batch = _requests_after(api, filters, position, BATCH if wanted else page_size - len(items) + 1)
        if not batch:
            return Page(items, "")
        containers = containers_of(api, batch)
        for request in batch:
            if len(items) == page_size:
                return Page(items, position.encode() if position else "")
            run = summary(request, containers.get(request.get("container_uuid") or ""), now)
            position = Position(request["created_at"], request["uuid"])
            if not wanted or run.state in wanted:
                items.append(run)
    more = _requests_after(api, filters, position, 1)
    return Page(items, position.encode() if more and position else "")


def state_counts(api: Any, now: Optional[datetime] = None) -> Dict[str, int]:
    """How many of the caller's WES runs are in each state."""
    counts: Dict[str, int] = {state.value: 0 for state in State}
    token: Optional[str] = None
    while True:
        page = list_runs(api, BATCH, token, now=now)
        for run in page.items:
            counts[run.state.value] += 1
        if not page.next_page_token:
            return counts
        token = page.next_page_token


def request_and_container(api: Any, run_id: str) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """A WES run's request and its container; `NotFound` if the caller cannot see it or it is no WES run."""
    with api_errors(f"no run with id {run_id!r}"):
        request = api.container_requests().get(uuid=run_id).execute()
    if RUN_PROPERTY not in (request.get("properties") or {}) and not is_launch(request):
        raise NotFound(f"no run with id {run_id!r}")
    container = None
    if request.get("container_uuid"):
        container = api.containers().get(uuid=request["container_uuid"]).execute()
    return request, container


def cancel(api: Any, run_id: str, now: Optional[datetime] = None) -> State:
    """Stop a run; return the state it is in now (CANCELING until its container is final, or CANCELED).

    Before a-c-r commits the request, the preparation is marked canceled (its preparer
    stops at the next step and never submits). A committed request gets priority 0;
    one whose container has not started (none yet, Queued or Locked) is also made
    Final, since Arvados keeps such a request "on hold", Committed, forever.
    """
    request, container = request_and_container(api, run_id)
    state = run_state(request, container, now)
    if state.terminal:
        raise BadRequest(f"run {run_id!r} has already finished ({state.value}); it cannot be canceled")
    with api_errors(f"no run with id {run_id!r}"):
        if request["state"] == "Uncommitted":
            properties = dict(request.get("properties") or {})
            properties[PREPARATION_PROPERTY] = dict(properties.get(PREPARATION_PROPERTY) or {}, state="canceled")
            api.container_requests().update(uuid=run_id, body={"properties": properties}).execute()
            return State.CANCELED
        api.container_requests().update(uuid=run_id, body={"priority": 0}).execute()
        if container is None or container["state"] in ("Queued", "Locked"):
            api.container_requests().update(uuid=run_id, body={"state": "Final"}).execute()
    return run_state(*request_and_container(api, run_id), now)


def fail_preparation(api: Any, run_id: str, message: str) -> None:
    """Mark a run whose preparation cannot go on as failed, with the message the user will read."""
    with api_errors(f"no run with id {run_id!r}"):
        request = api.container_requests().get(uuid=run_id).execute()
        if request["state"] != "Uncommitted":
            return  # committed meanwhile: its properties are a-c-r's now
        properties = dict(request.get("properties") or {})
        record = dict(properties.get(PREPARATION_PROPERTY) or {})
        record.update(state="failed", message=message)
        properties[PREPARATION_PROPERTY] = record
        api.container_requests().update(uuid=run_id, body={"properties": properties}).execute()


def system_logs(properties: Dict[str, Any], now: Optional[datetime] = None) -> List[str]:
    """The preparation's lines (its images), then what ended it if it never reached a-c-r: failure, cancel, silence."""
    record = properties.get(PREPARATION_PROPERTY)
    try:
        kept = json.loads(properties.get(LOG_PROPERTY) or "[]")
    except (TypeError, ValueError):
        kept = []
    lines = [line for line in (kept or (record or {}).get("lines") or []) if isinstance(line, str)]
    if not isinstance(record, dict):
        return lines
    state = preparation_of(properties, now or datetime.now(timezone.utc))
    if state == "failed":
        lines.append(f"preparation failed: {record.get('message') or 'no reason recorded'}")
    elif state == "stale":
        lines.append(f"{STALE_MESSAGE} (last heartbeat: {record.get('heartbeat') or 'none'})")
    elif state == "canceled":
        lines.append("canceled before it was submitted to Arvados")
    return lines


def settle_if_stale(api: Any, request: Dict[str, Any], now: Optional[datetime] = None) -> Dict[str, Any]:
    """Record the failure of a preparation whose process stopped, as whichever replica reads it first; the request."""
    if request["state"] != "Uncommitted" or \
            preparation_of(request.get("properties") or {}, now or datetime.now(timezone.utc)) != "stale":
        return request
    fail_preparation(api, request["uuid"], STALE_MESSAGE)
    with api_errors(f"no run with id {request['uuid']!r}"):
        return api.container_requests().get(uuid=request["uuid"]).execute()
