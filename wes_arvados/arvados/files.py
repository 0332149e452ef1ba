"""A run's logs, outputs and tasks as Arvados holds them, read with the caller's token and streamed, never copied.

A container's log is in its request's log collection once it has ended, and is
served live by the controller while it runs (the collection can be 30 minutes
behind then). Outputs are the output collection's ``cwl.output.json``, whose
locations are relative to that collection; the web layer turns them into URLs.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import NotFound
from ..http import Client, release
from ..wes.models import OUTPUT_ROOT, Content, Entry, Listing, Output, TaskRecord
from .api import api_errors
from .runs import containers_of

LIVE = ("Locked", "Running")
OUTPUT_OBJECT = "cwl.output.json"
OUTPUT_OBJECT_MAX = 16 << 20
TASK_FIELDS = ["uuid", "name", "command", "state", "container_uuid", "log_uuid", "created_at"]


def _reader(api: Any, uuid: str) -> Any:
    from arvados.collection import CollectionReader  # here: only reading Keep needs it

    with api_errors(f"collection {uuid} is not readable"):
        return CollectionReader(uuid, api_client=api)


def _file(reader: Any, path: str, media_type: str) -> Output:
    """A file of a collection as `Content`, a directory as `Listing`; `NotFound` if neither."""
    from arvados.arvfile import ArvadosFile

    item = reader.find(path) if path.strip("/") else reader
    if item is None:
        raise NotFound(f"no {path!r} here")
    if isinstance(item, ArvadosFile):
        return Content(open=lambda: reader.open(path, "rb"), size=item.size(), media_type=media_type)
    entries = [Entry(name, not isinstance(child, ArvadosFile), child.size() if isinstance(child, ArvadosFile) else None)
               for name, child in sorted(item.items())]
    return Listing(path.rstrip("/").rsplit("/", 1)[-1], entries)


def log(api: Any, http: Client, api_host: str, token: str, request: Dict[str, Any],
        container: Optional[Dict[str, Any]], name: str) -> Content:
    """Log file `name` of `request`'s container: live while it runs, else from the log collection."""
    if container is not None and container["state"] in LIVE:
        url = (f"https://{api_host}/arvados/v1/container_requests/{request['uuid']}/log/"
               f"{container['uuid']}/{name}")
        answer = http.request("GET", url, headers={"Authorization": f"Bearer {token}"})
        if answer.status == 200:
            length = answer.headers.get("Content-Length")
            return Content(open=lambda: answer, size=int(length) if length else None,  # type: ignore[arg-type,return-value]
                           media_type="text/plain")
        release(answer)
    if request.get("log_uuid"):
        found = _file(_reader(api, request["log_uuid"]), name, "text/plain")
        if isinstance(found, Content):
            return found
    raise NotFound(f"no {name} of {request['uuid']} yet")


def output(api: Any, request: Dict[str, Any], path: str) -> Output:
    """An output file (or directory listing) of a finished run, from its output collection."""
    if not request.get("output_uuid"):
        raise NotFound(f"run {request['uuid']!r} has no outputs")
    return _file(_reader(api, request["output_uuid"]), path, "application/octet-stream")


def _relative(value: Any) -> Any:
    """cwl.output.json with locations relative to the collection made relative to OUTPUT_ROOT."""
    if isinstance(value, list):
        return [_relative(v) for v in value]
    if not isinstance(value, dict):
        return value
    result = {k: _relative(v) for k, v in value.items() if k != "path"}
    location = value.get("location")
    if value.get("class") in ("File", "Directory") and isinstance(location, str) and ":" not in location:
        result["location"] = OUTPUT_ROOT + location.lstrip("./")
    return result


def outputs(api: Any, request: Dict[str, Any]) -> Dict[str, Any]:
    """The run's CWL output object, its locations relative to the output root; {} before it has one."""
    if not request.get("output_uuid"):
        return {}
    found = _file(_reader(api, request["output_uuid"]), OUTPUT_OBJECT, "application/json")
    if not isinstance(found, Content) or found.open is None:
        return {}
    if found.size is not None and found.size > OUTPUT_OBJECT_MAX:
        raise NotFound(f"the output object of {request['uuid']} is over {OUTPUT_OBJECT_MAX} bytes")
    with found.open() as stream:
        return _relative(json.loads(stream.read()))


def tasks(api: Any, container: Optional[Dict[str, Any]], offset: int, limit: int) -> Tuple[List[TaskRecord], bool]:
    """The runner container's child requests as tasks, in creation order; and whether more follow."""
    if container is None:
        return [], False
    with api_errors("no tasks"):
        children = api.container_requests().list(
            filters=[["requesting_container_uuid", "=", container["uuid"]]], order=["created_at asc", "uuid asc"],
            select=TASK_FIELDS, offset=offset, limit=limit + 1, count="none").execute()["items"]
        found = containers_of(api, children[:limit])
    return [task(child, found.get(child.get("container_uuid") or "")) for child in children[:limit]], \
        len(children) > limit


def task(child: Dict[str, Any], container: Optional[Dict[str, Any]]) -> TaskRecord:
    """One child request as a WES task."""
    return TaskRecord(id=child["uuid"], name=child.get("name") or child["uuid"], cmd=list(child.get("command") or []),
                      start_time=(container or {}).get("started_at"), end_time=(container or {}).get("finished_at"),
                      exit_code=(container or {}).get("exit_code"),
                      system_logs=[f"container {container['uuid']}: {container['state']}"] if container else [])

