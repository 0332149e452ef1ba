"""Thin WES operation handlers: parse the request, call the backend, shape the response.

Connexion routes each operationId of openapi/wes.yaml to the function of the same name.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Tuple

import flask
from werkzeug.wrappers import Response

from ..config import Config
from ..errors import BadRequest, TooLarge
from ..images.reference import parse_normalized_named
from ..images.registry import AuthConfig
from ..images.registry.credentials import REGISTRY_AUTH_HEADER, parse_registry_auth
from ..wes.backend import Backend
from ..wes.limits import Limits
from ..wes.models import Listing
from ..wes.pages import page_size as _page_size
from ..wes.service_info import service_info
from ..wes.states import State
from ..wes.submission import Attachment, Submission, check_engine, parse_submission
from . import shape
from .app import EXTENSION_KEY
from .workflow_url import download_workflow_url

FORM_FIELDS = (
    "workflow_params", "workflow_type", "workflow_type_version", "tags",
    "workflow_engine_parameters", "workflow_engine", "workflow_engine_version", "workflow_url",
)


def _context() -> Tuple[Backend, Config]:
    ext = flask.current_app.extensions[EXTENSION_KEY]
    return ext["backend"].for_caller(flask.g.caller), ext["config"]


def _registry_credentials() -> Optional[Dict[str, AuthConfig]]:
    """The request's X-Registry-Auth credentials, for its own pulls only (`BadRequest` family if malformed)."""
    header = flask.request.headers.get(REGISTRY_AUTH_HEADER)
    return parse_registry_auth(header) if header else None


def get_service_info() -> Dict[str, Any]:
    """GetServiceInfo."""
    backend, config = _context()
    return service_info(backend, config)


def list_runs(page_size: Optional[int] = None, page_token: Optional[str] = None,
              state: Optional[List[str]] = None, tag: Optional[List[str]] = None) -> Dict[str, Any]:
    """ListRuns, newest first, with the state and tag filter extensions."""
    backend, _ = _context()
    return run_list(backend, page_size, page_token, state, tag)


def run_list(backend: Backend, page_size: Optional[int], page_token: Optional[str], state: Optional[List[str]],
             tag: Optional[List[str]]) -> Dict[str, Any]:
    """ListRuns' answer for these query values (schema-valid ones), as `list_runs` and `fast_reads` give it."""
    tags: Dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise BadRequest(f"tag filter {item!r} must have the form key:value")
        tags[key] = value
    page = backend.list_runs(_page_size(page_size), page_token, [State(s) for s in state or []], tags)
    return {"runs": [r.to_dict() for r in page.items], "next_page_token": page.next_page_token}


def _form(limits: Limits) -> Tuple[Dict[str, str], List[Attachment]]:
    """Form fields and attachments; some clients send the fields as file parts too (read within the JSON limit)."""
    request = flask.request
    form: Dict[str, str] = {}
    for key, values in request.form.lists():
        if key == "workflow_attachment":  # a part with no file name: its content would be dropped unnamed
            raise BadRequest("a workflow_attachment has no file name")
        if key in FORM_FIELDS and len(values) > 1:
            raise BadRequest(f"{key} was sent {len(values)} times; send each field once")
        # Werkzeug decodes form fields with errors="replace": U+FFFD is where the bytes were not UTF-8.
        if key in FORM_FIELDS and "\ufffd" in values[0]:
            raise BadRequest(f"{key} is not valid UTF-8")
        form[key] = values[0]
    attachments: List[Attachment] = []
    for key in request.files:
        for upload in request.files.getlist(key):
            if key == "workflow_attachment":
                attachments.append(Attachment(upload.filename or "", upload.stream))
            elif key in FORM_FIELDS:
                if key in form:
                    raise BadRequest(f"{key} was sent more than once; send each field once")
                data = upload.stream.read(limits.json_bytes + 1)
                if len(data) > limits.json_bytes:
                    raise TooLarge(f"{key} is larger than this server's limit of {limits.json_bytes} bytes")
                try:
                    form[key] = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise BadRequest(f"{key} is not valid UTF-8") from None
            else:
                raise BadRequest(f"unexpected file field {key!r}")
    return form, attachments


def _staged(form: Dict[str, str], attachments: List[Attachment], config: Config) -> Submission:
    """The request's fields checked and its files staged (an http(s) workflow_url fetched within the limits)."""
    return parse_submission(
        form, attachments, config.staging_dir / uuid.uuid4().hex, config.allowed_dirs,
        lambda url, dest: download_workflow_url(url, dest, config.fetch_max_bytes, config.fetch_timeout,
                                                config.fetch_guard),
        config.limits,
        config.fetch_guard,
    )


def run_workflow(*_args: Any, **_kwargs: Any) -> Dict[str, str]:
    """RunWorkflow: stage the request, hand it to the backend, return the run id."""
    backend, config = _context()
    credentials = _registry_credentials()  # before anything is staged
    form, attachments = _form(config.limits)
    check_engine(form.get("workflow_engine"), form.get("workflow_engine_version"), backend.engine_versions())
    submission = _staged(form, attachments, config)
    try:
        run_id = backend.submit(submission, credentials)
    finally:
        submission.discard()
    return {"run_id": run_id}


REGISTRATION_FIELDS = ("name", "description", "project_uuid")


def _registration(update_uuid: Optional[str]) -> Tuple[Dict[str, str], int]:
    """Stage the workflow's files and hand them to the backend to register; 202 with the registration's id."""
    backend, config = _context()
    credentials = _registry_credentials()  # before anything is staged
    form, attachments = _form(config.limits)
    fields = {key: (form.pop(key, "") or "").strip() or None for key in REGISTRATION_FIELDS}
    if "workflow_params" in form:
        raise BadRequest("workflow_params is for runs: a registered workflow's inputs are given when it is launched")
    submission = _staged(form, attachments, config)
    try:
        registration_id = backend.register_workflow(submission, fields["name"], fields["description"],
                                                    fields["project_uuid"], update_uuid, credentials)
    finally:
        submission.discard()
    return {"registration_id": registration_id}, 202


def register_workflow(*_args: Any, **_kwargs: Any) -> Tuple[Dict[str, str], int]:
    """RegisterWorkflow (extension): register a workflow in Arvados, outside the request."""
    return _registration(None)


def update_workflow(id: str, *_args: Any, **_kwargs: Any) -> Tuple[Dict[str, str], int]:  # noqa: A002 - the path's
    """UpdateWorkflow (extension): register new files for the workflow `id`, keeping its uuid."""
    return _registration(id)


def get_workflow_registration(id: str) -> Dict[str, Any]:  # noqa: A002 - the path's name
    """GetWorkflowRegistration (extension)."""
    backend, _ = _context()
    return backend.get_workflow_registration(id).to_json()


def get_run_log(run_id: str) -> Dict[str, Any]:
    """GetRunLog."""
    backend, _ = _context()
    return shape.run_log(backend.get_run(run_id), shape.base_url())


def get_run_status(run_id: str) -> Dict[str, str]:
    """GetRunStatus."""
    backend, _ = _context()
    return shape.run_status(run_id, backend.get_state(run_id))


def cancel_run(run_id: str) -> Dict[str, str]:
    """CancelRun."""
    backend, _ = _context()
    backend.cancel(run_id)
    return {"run_id": run_id}


def list_tasks(run_id: str, page_size: Optional[int] = None, page_token: Optional[str] = None) -> Dict[str, Any]:
    """ListTasks, in start order."""
    backend, _ = _context()
    page = backend.list_tasks(run_id, _page_size(page_size), page_token)
    base = shape.base_url()
    return {"task_logs": [shape.task_log(run_id, t, base) for t in page.items], "next_page_token": page.next_page_token}


def get_task(run_id: str, task_id: str) -> Dict[str, Any]:
    """GetTask."""
    backend, _ = _context()
    return shape.task_log(run_id, backend.get_task(run_id, task_id), shape.base_url())


def get_run_log_stream(run_id: str, stream: str) -> Response:
    """The engine's stdout or stderr (extension)."""
    backend, _ = _context()
    return shape.content_response(backend.log(run_id, stream))


def get_task_log_stream(run_id: str, task_id: str, stream: str) -> Response:
    """A task's stdout or stderr (extension)."""
    backend, _ = _context()
    return shape.content_response(backend.log(run_id, stream, task_id))


def get_output_file(run_id: str, path: str) -> Any:
    """One output file of a run, or the listing of an output directory (extension)."""
    backend, _ = _context()
    output = backend.output(run_id, path)
    if isinstance(output, Listing):
        return flask.jsonify(shape.directory_listing(run_id, path, output, shape.base_url()))
    return shape.content_response(output)


def pull_image(body: Dict[str, Any]) -> Tuple[Dict[str, str], int]:
    """PullImage: check the image and start importing it; 202 with the pull's id."""
    backend, _ = _context()
    image = parse_normalized_named(body["image"])
    pull_id = backend.pull_image(image, body.get("platform") or None, _registry_credentials(),
                                 body.get("project_uuid") or None)
    return {"pull_id": pull_id}, 202


def get_image_pull(pull_id: str) -> Dict[str, Any]:
    """GetImagePull."""
    backend, _ = _context()
    return backend.get_image_pull(pull_id).to_json()


def list_images() -> Dict[str, Any]:
    """ListImages: what the image store holds."""
    backend, _ = _context()
    store, images = backend.list_images()
    return {"store": store, "images": [image.to_json() for image in images]}
