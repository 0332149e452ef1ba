"""Turning a RunWorkflow request into a validated, staged `Submission`.

Everything here is independent of the backend: the fields are checked, the
attachments are written below a staging directory (only once every name has
been checked, so a refused request writes nothing), and the workflow document is
read to check its CWL version.  The backend then takes the staging directory over.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote, urldefrag, urlparse

from ..errors import BadRequest
from ..fetch_guard import FetchGuard
from .documents import check_expansion, check_references, parse_document, read_document
from .limits import Limits
from .locations import inside, resolve_locations
from .models import RunRequest

CWL_VERSIONS = ("v1.0", "v1.1", "v1.2")
WORKFLOW_TYPES = ("CWL",)
FETCHED_DIR = "_workflow_url"


@dataclass
class Attachment:
    """One uploaded file: its relative name and a readable binary stream."""

    name: str
    stream: IO[bytes]


@dataclass
class Submission:
    """A checked RunWorkflow request whose files are staged on local disk."""

    request: RunRequest
    staging_dir: Path
    # Path of the workflow document relative to staging_dir, with its #fragment if any.
    workflow: str
    notes: List[str] = field(default_factory=list)

    def discard(self) -> None:
        """Remove the staged files (the submission was refused or already taken over)."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)


def _object_field(form: Dict[str, str], name: str, limits: Limits) -> Dict[str, Any]:
    raw = form.get(name)
    value = {} if raw is None or raw.strip() == "" else limits.load_json(name, raw)
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object, not {type(value).__name__}")
    return value


def check_attachment_name(name: Optional[str]) -> str:
    """Return the normalized relative path of an attachment, or refuse the name."""
    if not name:
        raise BadRequest("a workflow_attachment has no file name")
    if "\x00" in name:
        raise BadRequest("workflow_attachment name contains a NUL character")
    if "\\" in name:
        raise BadRequest(f"workflow_attachment name {name!r} contains a backslash")
    if name.startswith("/"):
        raise BadRequest(f"workflow_attachment name {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise BadRequest(f"workflow_attachment name {name!r} leaves the run directory")
    if parts[0] == FETCHED_DIR:
        raise BadRequest(f"workflow_attachment name {name!r} uses a reserved directory")
    return "/".join(parts)


def read_cwl_version(text: str, where: str) -> str:
    """The `cwlVersion` of a CWL document's text; `BadRequest` when it has none."""
    return cwl_version(parse_document(text, where), where)


def cwl_version(doc: Any, where: str) -> str:
    if not isinstance(doc, dict) or not isinstance(doc.get("cwlVersion"), str):
        raise BadRequest(f"workflow document {where} has no cwlVersion")
    return doc["cwlVersion"]


def _normalize_version(version: str) -> str:
    version = version.strip()
    return version if version.startswith("v") else "v" + version


def check_workflow_type(workflow_type: str, workflow_type_version: str) -> None:
    """Refuse workflow types and versions this server does not run."""
    if not workflow_type:
        raise BadRequest("workflow_type is required")
    if workflow_type.upper() not in WORKFLOW_TYPES:
        raise BadRequest(f"workflow_type {workflow_type!r} is not supported; use one of: {', '.join(WORKFLOW_TYPES)}")
    if not workflow_type_version:
        raise BadRequest("workflow_type_version is required")
    if _normalize_version(workflow_type_version) not in CWL_VERSIONS:
        raise BadRequest(
            f"workflow_type_version {workflow_type_version!r} is not supported; use one of: {', '.join(CWL_VERSIONS)}"
        )


def check_engine(engine: Optional[str], engine_version: Optional[str], available: Dict[str, List[str]]) -> None:
    """Refuse a workflow_engine (and version) that the backend does not run."""
    if engine_version and not engine:
        raise BadRequest("workflow_engine_version needs workflow_engine")
    if engine and engine not in available:
        raise BadRequest(f"workflow_engine {engine!r} is not available; this server runs: {', '.join(available)}")
    if engine and engine_version and engine_version not in available[engine]:
        raise BadRequest(f"workflow_engine_version {engine_version!r} of {engine} is not available; "
                         f"this server runs: {', '.join(available[engine])}")


def parse_submission(
    form: Dict[str, str],
    attachments: List[Attachment],
    staging_dir: Path,
    allowed_dirs: List[str],
    fetch: Callable[[str, Path], None],
    limits: Limits = Limits(),
    guard: Optional[FetchGuard] = None,
) -> Submission:
    """Check a RunWorkflow request and stage its files below `staging_dir`.

    `fetch(url, dest)` downloads an http(s) workflow_url with the server's
    limits; `limits` bound the request's own parts; `guard` refuses http(s)
    documents and inputs that the engine would fetch from where the server
    must not. On any error nothing is left in `staging_dir`.
    """
    limits.check_attachment_count(len(attachments))
    workflow_type = (form.get("workflow_type") or "").strip()
    workflow_type_version = (form.get("workflow_type_version") or "").strip()
    check_workflow_type(workflow_type, workflow_type_version)
    workflow_url = (form.get("workflow_url") or "").strip()
    if not workflow_url:
        raise BadRequest("workflow_url is required")
    params = _object_field(form, "workflow_params", limits)
    tags = _object_field(form, "tags", limits)
    bad_tags = [k for k, v in tags.items() if not isinstance(v, str)]
    if bad_tags:
        raise BadRequest(f"tags must map strings to strings; not so for: {', '.join(sorted(bad_tags))}")
    limits.check_tags(tags)
    engine_parameters = _object_field(form, "workflow_engine_parameters", limits)
    names = [check_attachment_name(a.name) for a in attachments]
    request = RunRequest(
        workflow_params=params,
        workflow_type=workflow_type,
        workflow_type_version=workflow_type_version,
        workflow_url=workflow_url,
        tags=tags,
        workflow_engine_parameters={str(k): (None if v is None else str(v)) for k, v in engine_parameters.items()},
        workflow_engine=form.get("workflow_engine") or None,
        workflow_engine_version=form.get("workflow_engine_version") or None,
    )
    staging_dir.mkdir(parents=True)
    submission = Submission(request=request, staging_dir=staging_dir, workflow="")
    try:
        _stage_attachments(staging_dir, names, attachments, limits)
        submission.workflow, document = _locate_workflow(workflow_url, staging_dir, names, allowed_dirs, fetch, limits)
        parsed = parse_document(document, repr(workflow_url))
        version = cwl_version(parsed, repr(workflow_url))
        if _normalize_version(version) != _normalize_version(workflow_type_version):
            raise BadRequest(
                f"workflow_type_version {workflow_type_version!r} does not match the document's cwlVersion {version!r}"
            )
        check_expansion(parsed, repr(workflow_url), limits)
        check_references(parsed, staging_dir / urldefrag(submission.workflow)[0], staging_dir, allowed_dirs, limits,
                         guard)
        resolve_locations(params, staging_dir, allowed_dirs, check_only=True, guard=guard)
    except BaseException:
        submission.discard()
        raise
    return submission


def _stage_attachments(staging_dir: Path, names: List[str], attachments: List[Attachment], limits: Limits) -> None:
    """Write the attachments; a name sent twice must carry the same bytes both times.

    Clients such as toil-wes-cwl-runner attach a file once for the workflow and
    once for the inputs; that is harmless, differing contents are not.
    """
    digests: Dict[str, str] = {}
    for name, attachment in zip(names, attachments):
        target = staging_dir / name if name not in digests else staging_dir / f".{uuid.uuid4().hex}.again"
        hasher = hashlib.sha256()
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in iter(lambda: attachment.stream.read(1024 * 1024), b""):
                    size += len(chunk)
                    limits.check_attachment_size(name, size)
                    hasher.update(chunk)
                    out.write(chunk)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise BadRequest(f"workflow_attachment {name!r} is both a file and a directory") from None
        if name in digests:
            target.unlink()
            if digests[name] != hasher.hexdigest():
                raise BadRequest(f"workflow_attachment {name!r} was sent twice with different contents")
        digests[name] = hasher.hexdigest()


def _locate_workflow(
    workflow_url: str,
    staging_dir: Path,
    names: List[str],
    allowed_dirs: List[str],
    fetch: Callable[[str, Path], None],
    limits: Limits,
) -> Tuple[str, str]:
    """Find the workflow document; return its staged relative path (with fragment) and text."""
    url, fragment = urldefrag(workflow_url)
    suffix = f"#{fragment}" if fragment else ""
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        basename = posixpath.basename(urlparse(url).path) or "workflow.cwl"
        relative = f"{FETCHED_DIR}/{basename}"
        dest = staging_dir / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        fetch(url, dest)
        return relative + suffix, read_document(dest, repr(workflow_url), limits)
    if scheme == "file" or url.startswith("/"):
        path = Path(unquote(urlparse(url).path) if scheme == "file" else url)
        if not inside(path, allowed_dirs):
            raise BadRequest(
                f"workflow_url {workflow_url!r} names a file on the server; send the workflow as an attachment "
                "(or ask the operator to allow that directory)"
            )
        if not path.is_file():
            raise BadRequest(f"workflow_url {workflow_url!r} does not exist on the server")
        relative = f"{FETCHED_DIR}/{path.name}"
        (staging_dir / FETCHED_DIR).mkdir(exist_ok=True)
        shutil.copyfile(path, staging_dir / relative)
        return relative + suffix, read_document(staging_dir / relative, repr(workflow_url), limits)
    if scheme:
        raise BadRequest(f"workflow_url scheme {scheme!r} is not supported; use a relative attachment name or http(s)")
    try:
        name = check_attachment_name(unquote(url))
    except BadRequest as exc:
        raise BadRequest(f"workflow_url {workflow_url!r} is not a valid attachment path") from exc
    if name not in names:
        raise BadRequest(f"workflow_url {workflow_url!r} is not among the workflow_attachment files")
    return name + suffix, read_document(staging_dir / name, repr(workflow_url), limits)
