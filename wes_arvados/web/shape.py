"""Shapes backend records into WES JSON, turning log names and output paths into URLs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict
from urllib.parse import quote

import flask
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..wes.models import OUTPUT_ROOT, Content, Listing, RunRecord, TaskRecord
from ..wes.states import State
from .app import BASE_PATH, EXTENSION_KEY


def base_url() -> str:
    """The WES base URL as the client sees it (or as configured behind a proxy)."""
    config = flask.current_app.extensions[EXTENSION_KEY]["config"]
    return (config.public_url or flask.request.host_url).rstrip("/") + BASE_PATH


def _output_urls(value: Any, prefix: str) -> Any:
    if isinstance(value, list):
        return [_output_urls(v, prefix) for v in value]
    if not isinstance(value, dict):
        return value
    result = {k: _output_urls(v, prefix) for k, v in value.items()}
    location = value.get("location")
    if value.get("class") in ("File", "Directory") and isinstance(location, str) and location.startswith(OUTPUT_ROOT):
        result["location"] = prefix + quote(location[len(OUTPUT_ROOT):])
    return result


def directory_listing(run_id: str, relpath: str, listing: Listing, base: str) -> Dict[str, Any]:
    """What an output directory's URL answers: a CWL Directory whose entries are URLs."""
    prefix = f"{base}/runs/{run_id}/outputs/{quote(relpath.rstrip('/'))}/"
    entries = []
    for entry in listing.entries:
        item: Dict[str, Any] = {"class": "Directory" if entry.is_dir else "File", "basename": entry.name,
                                "location": prefix + quote(entry.name)}
        if entry.size is not None:
            item["size"] = entry.size
        entries.append(item)
    return {"class": "Directory", "basename": listing.name, "location": prefix.rstrip("/"), "listing": entries}


def content_response(content: Content) -> Response:
    """A backend's file as an HTTP answer: streamed with ranges and conditional requests, or a redirect."""
    if content.redirect or content.open is None:
        return flask.redirect(content.redirect or "", code=302)
    response: Response = flask.Response(wrap_file(flask.request.environ, content.open()),
                                        mimetype=content.media_type, direct_passthrough=True)
    if content.size is not None:
        response.content_length = content.size
    if content.modified is not None:
        response.last_modified = datetime.fromtimestamp(int(content.modified), timezone.utc)
    response.cache_control.no_cache = True
    response = response.make_conditional(flask.request.environ, accept_ranges=True, complete_length=content.size)
    response.headers.pop("Date", None)  # the ASGI server dates every answer; werkzeug's would be a second Date
    return response


def run_status(run_id: str, state: State) -> Dict[str, str]:
    """The WES `RunStatus` of a run."""
    return {"run_id": run_id, "state": state.value}


def run_log(run: RunRecord, base: str) -> Dict[str, Any]:
    """The WES `RunLog` of a run."""
    run_url = f"{base}/runs/{run.run_id}"
    return {
        "run_id": run.run_id,
        "request": run.request.to_dict(),
        "state": run.state.value,
        "run_log": {
            "name": run.request.workflow_url,
            "cmd": run.cmd,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "stdout": f"{run_url}/logs/stdout" if run.has_logs else None,
            "stderr": f"{run_url}/logs/stderr" if run.has_logs else None,
            "exit_code": run.exit_code,
            "system_logs": run.system_logs,
        },
        "task_logs_url": f"{run_url}/tasks",
        "outputs": _output_urls(run.outputs, f"{run_url}/outputs/"),
        "system_logs": run.system_logs,
    }


def task_log(run_id: str, task: TaskRecord, base: str) -> Dict[str, Any]:
    """The WES `TaskLog` of a task."""
    task_url = f"{base}/runs/{run_id}/tasks/{quote(task.id)}"
    return {
        "id": task.id,
        "name": task.name,
        "cmd": task.cmd,
        "start_time": task.start_time,
        "end_time": task.end_time,
        "stdout": f"{task_url}/logs/stdout",
        "stderr": f"{task_url}/logs/stderr",
        "exit_code": task.exit_code,
        "system_logs": task.system_logs,
    }
