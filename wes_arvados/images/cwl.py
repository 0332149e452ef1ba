"""The Docker images a CWL workflow needs, found before cwltool runs it.

The workflow is loaded by cwltool's own loader, so that what we find is what
the engine will run: packed ``$graph`` documents, ``run:`` references,
``$import``/``$include``, inline subworkflows, and v1.0/v1.1 documents upgraded
to v1.2. Each process then reports its effective DockerRequirement through
``Process.get_requirement``, which already holds CWL's inheritance: cwltool
hands a workflow's and a step's requirements and hints down to the processes
under them when it constructs them, a process's own entry beats an inherited
one, and anything under ``requirements`` beats anything under ``hints``.

Loading reads local files only: ``$schemas`` are skipped and remote documents
are refused rather than fetched, and cwltool's log records of the loading
thread are dropped, so a check of a submitted workflow is quiet and offline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import cwltool.workflow  # registers default_make_tool with cwltool.context
from cwltool.command_line_tool import CommandLineTool
from cwltool.context import LoadingContext
from cwltool.load_tool import load_tool
from cwltool.process import Process
from schema_salad.exceptions import ValidationException
from schema_salad.fetcher import DefaultFetcher
from schema_salad.ref_resolver import file_uri

from .errors import ImageError

__all__ = ["ImageNeed", "WorkflowLoadError", "find_images", "image_of", "images_in"]

DOCKER_REQUIREMENT = "DockerRequirement"
PULL = "pull"
LOAD = "load"
FILE = "file"
IMPORT = "import"
ID = "id"  # a local image id: it names no repository, so it cannot be pulled

# Loggers that cwltool and schema-salad write to while loading.
_LOADING_LOGGERS = ("cwltool", "cwltool.validation_warnings", "salad", "rdflib.term", "cwl_utils")

# A full or short (12+ hex digits, as `docker images` shows) image id, with or
# without its algorithm. Shorter hex strings are valid repository names too.
_IMAGE_ID_RE = re.compile(r"(?:sha256:[0-9a-f]{1,64}|[0-9a-f]{12,64})")


class WorkflowLoadError(ImageError):
    """cwltool could not load the workflow, so its images are unknown; the engine will report why."""

    def __init__(self, document: str, reason: str) -> None:
        super().__init__(f"cannot load CWL document {document}: {reason}")
        self.document = document
        self.reason = reason


@dataclass(frozen=True)
class ImageNeed:
    """One Docker image a workflow needs."""

    image: str  # the name to pull/load (dockerPull, else dockerImageId); "" when unnamed
    source: str  # "pull", "id", "load", "file" or "import"
    required: bool  # True when some process has it under requirements, False when only under hints
    processes: Tuple[str, ...]  # short ids of the processes that need it, for messages
    location: str = ""  # dockerLoad / dockerImport resolved against the document's URI


def find_images(workflow: str, default_container: Optional[str] = None) -> List[ImageNeed]:
    """The images `workflow` (a path or file:// URI, optionally with #fragment) needs, in order of first appearance.

    One entry per distinct (image, source, location), required when any process
    requires it. A CommandLineTool without a DockerRequirement needs
    `default_container` (as a hint) when one is given, as with cwltool's
    --default-container. Raises WorkflowLoadError when cwltool cannot load it.
    """
    uri = _document_uri(workflow)
    return images_in(_load(uri, workflow), uri, default_container)


def images_in(root: Process, uri: str, default_container: Optional[str] = None) -> List[ImageNeed]:
    """What `find_images` finds, in a process tree cwltool has already loaded from `uri`."""
    top_file = urllib.parse.urldefrag(uri)[0]
    needs: Dict[Tuple[str, str, str], ImageNeed] = {}
    for process, name, chain in _walk(root, _short_name(root.tool["id"], top_file), top_file):
        if not isinstance(process, CommandLineTool):
            # Workflows only hand requirements down; ExpressionTool and Operation
            # run inside cwltool without a container.
            continue
        requirement, required = process.get_requirement(DOCKER_REQUIREMENT)
        if requirement is not None:
            key = image_of(requirement, _origin(requirement, chain))
            if key is None:
                continue
            is_required = bool(required)
        elif default_container:
            # cwltool's --default-container stands in only where nothing names an image.
            key, is_required = (default_container, PULL, ""), False
        else:
            continue
        needs[key] = _merge(needs.get(key), key, is_required, name)
    return list(needs.values())


def _merge(known: Optional[ImageNeed], key: Tuple[str, str, str], required: bool, name: str) -> ImageNeed:
    """`known` (or a new need for `key`) with process `name` needing it too."""
    if known is None:
        return ImageNeed(image=key[0], source=key[1], required=required, processes=(name,), location=key[2])
    processes = known.processes if name in known.processes else known.processes + (name,)
    return ImageNeed(image=known.image, source=known.source, required=known.required or required,
                     processes=processes, location=known.location)


def image_of(requirement: Mapping[str, Any], base: str) -> Optional[Tuple[str, str, str]]:
    """(image, source, location) of a DockerRequirement, in the order cwltool acts on its fields.

    cwltool builds a dockerFile whenever there is one (tagged dockerImageId,
    which defaults to dockerPull), else pulls dockerPull, else loads dockerLoad,
    else imports dockerImport; with dockerImageId alone it only looks for a
    local image. None for a requirement that names nothing at all.
    """
    pull = str(requirement.get("dockerPull") or "")
    image_id = str(requirement.get("dockerImageId") or "")
    if requirement.get("dockerFile"):
        return image_id or pull, FILE, ""
    if pull:
        return pull, PULL, ""
    if requirement.get("dockerLoad"):
        return image_id, LOAD, _location(str(requirement["dockerLoad"]), base)
    if requirement.get("dockerImport"):
        return image_id, IMPORT, _location(str(requirement["dockerImport"]), base)
    if image_id:
        return image_id, ID if _IMAGE_ID_RE.fullmatch(image_id) else PULL, ""
    return None


def _location(written: str, base: str) -> str:
    """A dockerLoad/dockerImport value as a URI: a URL stays as written, a path is made absolute against `base`."""
    if urllib.parse.urlsplit(written).scheme:
        return written
    # A path names a file, so its characters are literal ("%", "?", " "): quote them into the URI.
    return urllib.parse.urljoin(base, urllib.parse.quote(written))


# Where a process's requirements can come from, nearest first: the process
# itself, the step that runs it, the workflow holding that step, and so on up;
# each with the URI of the document it was written in.
_Chain = Tuple[Tuple[Mapping[str, Any], str], ...]


def _walk(process: Process, name: str, top_file: str, parent_chain: _Chain = (),
          parent_base: str = "") -> Iterator[Tuple[Process, str, _Chain]]:
    """Every process under `process` (itself first), depth first, steps in document order."""
    base = _document_of(str(process.tool.get("id", "")), parent_base)
    chain: _Chain = ((process.tool, base),) + parent_chain
    yield process, name, chain
    for step, child in _children(process):
        if step is None:
            yield from _walk(child, _child_name(child, name + "/run", top_file), top_file, chain, base)
            continue
        step_base = _document_of(str(step.id), base)
        yield from _walk(child, _child_name(child, _short_name(step.id, top_file) + "/run", top_file), top_file,
                         ((step.tool, step_base),) + chain, step_base)


def _document_of(object_id: str, parent_base: str) -> str:
    # Inline objects without an id get a random "_:" one; they live in their parent's document.
    return parent_base if object_id.startswith("_:") else urllib.parse.urldefrag(object_id)[0]


def _children(process: Process) -> List[Tuple[Any, Process]]:
    """(step, process run by it) for a workflow; (None, tool) for a process wrapping one, as ProcessGenerator does."""
    if isinstance(process, cwltool.workflow.Workflow):
        # cwltool shuffles Workflow.steps; the document keeps their order.
        order = {str(step["id"]): index for index, step in enumerate(process.tool.get("steps", []))}
        steps = sorted(process.steps, key=lambda step: order.get(str(step.id), len(order)))
        return [(step, step.embedded_tool) for step in steps]
    embedded = getattr(process, "embedded_tool", None)
    return [(None, embedded)] if isinstance(embedded, Process) else []


def _child_name(process: Process, anonymous: str, top_file: str) -> str:
    # Inline processes without an id get a random "_:" id; the step that runs them names them better.
    own_id = str(process.tool.get("id", ""))
    return anonymous if own_id.startswith("_:") else _short_name(own_id, top_file)


def _short_name(uri: str, top_file: str) -> str:
    """`uri` for messages: its fragment within the submitted document, else its file (relative when below it) and fragment."""
    file, fragment = urllib.parse.urldefrag(uri)
    if file == top_file:
        return fragment or os.path.basename(urllib.parse.urlsplit(file).path)
    top_dir = top_file.rsplit("/", 1)[0] + "/"
    shown = urllib.parse.unquote(file[len(top_dir):]) if file.startswith(top_dir) else file
    return f"{shown}#{fragment}" if fragment else shown


def _origin(requirement: Mapping[str, Any], chain: _Chain) -> str:
    """The URI of the document where the effective `requirement` was written: the nearest level of `chain` that has it.

    cwltool copies inherited requirements, so they are found by equality.
    """
    for tool, base in chain:
        for field in ("requirements", "hints"):
            for entry in tool.get(field) or []:
                if isinstance(entry, Mapping) and entry.get("class") == DOCKER_REQUIREMENT and entry == requirement:
                    return base
    return chain[0][1]


def _document_uri(workflow: str) -> str:
    """`workflow` as the absolute URI cwltool would make of it, its #fragment kept."""
    if urllib.parse.urlsplit(workflow).scheme in ("file", "http", "https"):
        return workflow  # a remote one is then refused by _LocalFetcher, with that reason
    path, fragment = workflow, ""
    if not os.path.exists(workflow) and "#" in workflow:
        path, _, fragment = workflow.rpartition("#")
    uri = file_uri(os.path.abspath(path))
    return f"{uri}#{urllib.parse.quote(fragment)}" if fragment else uri


def _load(uri: str, document: str) -> Process:
    """The process tree cwltool builds from `uri`; WorkflowLoadError when it cannot."""
    context = LoadingContext({
        "doc_cache": False,  # no HTTP cache under $HOME
        "do_update": True,  # upgrade v1.0/v1.1 to v1.2, as the engine does
        "skip_schemas": True,  # $schemas are only for format checks, and remote
        # jshint runs node (or a node container) per expression, and only warns.
        "disable_js_validation": True,
        "fetcher_constructor": _LocalFetcher,
        "construct_tool_object": cwltool.workflow.default_make_tool,
    })
    try:
        with quiet_cwltool():
            return load_tool(uri, context)
    except Exception as exc:  # noqa: BLE001
        # Whatever cwltool's loader raises (schema-salad validation, WorkflowException,
        # an OSError, or a loader bug) means the same thing to the caller: the images
        # are unknown, and the engine will say what is wrong with the workflow.
        raise WorkflowLoadError(document, str(exc).strip() or type(exc).__name__) from exc


@contextlib.contextmanager
def quiet_cwltool() -> Iterator[None]:
    """Drop what cwltool, schema-salad and cwl-utils log from this thread meanwhile (the caller reports errors)."""
    quiet = _DropRecordsOfThisThread()
    loggers = [logging.getLogger(name) for name in _LOADING_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class _DropRecordsOfThisThread(logging.Filter):
    """Drops the records logged by the thread that created it, so other threads' cwltool logs still flow."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for records of the loading thread."""
        return record.thread != self.thread


class _LocalFetcher(DefaultFetcher):
    """schema-salad's fetcher for file: URLs only; a document that refers to a remote one fails to load instead."""

    def fetch_text(self, url: str, content_types: Optional[List[str]] = None) -> str:
        """The text at local `url`."""
        _refuse_remote(url)
        return super().fetch_text(url, content_types)

    def check_exists(self, url: str) -> bool:
        """Whether local `url` exists."""
        _refuse_remote(url)
        return super().check_exists(url)


def _refuse_remote(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("file", ""):
        raise ValidationException(f"not fetching remote document {url}: only local files are read")
