"""What a run needs sent: every document the CWL loader reads, and every file the inputs name.

The documents are found by loading the workflow with cwltool and recording each one
its fetcher reads, so ``run:``, ``$import``, ``$include`` and schema-def imports are
all there because the loader read them, not because a scan guessed them. The input
files come from the job as cwltool binds it: defaults filled in and the
secondaryFiles of every top-level input discovered (a default's included), and a
Directory with everything under it. With no Node.js here, where cwltool could
evaluate no expression, a job whose binding needs one is bound without them
(`bind_without_expressions`).
Only local files are sent; ``http(s)`` and other remote locations are left for the
server. Names are relative to the directory that holds them all, so the documents'
relative references still hold on the server.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import unquote, urljoin, urlsplit

from ..errors import BadRequest

if TYPE_CHECKING:  # cwltool is loaded only when a workflow is read, not for --help
    from ..images.cwl import ImageNeed


class DependencyError(BadRequest):
    """The workflow or its inputs cannot be loaded; the message says why."""


@dataclass(frozen=True)
class Attachment:
    """A local file sent with the run, under a relative name."""

    name: str
    path: Path


@dataclass
class Dependencies:
    """The workflow's name among the attachments, the job rewritten to those names, and the attachments."""

    workflow: str
    job: Dict[str, Any]
    attachments: List[Attachment] = field(default_factory=list)
    images: List[ImageNeed] = field(default_factory=list)  # what its DockerRequirements name


def _local_path(location: str) -> Optional[Path]:
    """The file a ``file://`` URI (or plain path) names; None for any other scheme."""
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path)).resolve()
    return None


def _recording_fetcher(read: Set[Path]) -> Any:
    from schema_salad.fetcher import DefaultFetcher

    class Recording(DefaultFetcher):
        """schema-salad's fetcher, noting every local document it reads."""

        def fetch_text(self, url: str, content_types: Optional[List[str]] = None) -> str:
            path = _local_path(url.split("#", 1)[0])
            if path is not None:
                read.add(path)
            return str(super().fetch_text(url, content_types))

    return Recording


def documents_and_job(workflow: Path, fragment: str, job: Optional[Dict[str, Any]]
                      ) -> Tuple[Set[Path], Dict[str, Any], List[ImageNeed]]:
    """The local files cwltool reads or its documents name (a requirement's listing, a default), `job`
    as it binds it (file:// locations; {} for no job: a workflow registered, its inputs given when
    launched), and the images the workflow names."""
    from cwltool.context import LoadingContext, RuntimeContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool

    from ..images.cwl import images_in, quiet_cwltool

    read: Set[Path] = set()
    loading = LoadingContext({"fetcher_constructor": _recording_fetcher(read), "do_update": True,
                              "construct_tool_object": default_make_tool, "disable_js_validation": True})
    try:
        with quiet_cwltool():
            uri = workflow.resolve().as_uri() + (f"#{fragment}" if fragment else "")
            tool = load_tool(uri, loading)
            images = images_in(tool, uri)
            named = _named_by_documents(tool.doc_loader.idx if tool.doc_loader is not None else {})
            if job is None:
                return read | named, {}, images
            namespaces: Dict[str, str] = {**dict(tool.metadata.get("$namespaces") or {}),  # type: ignore[arg-type]
                                          **(job.get("$namespaces") or {})}
            given = _expanded(job, namespaces)
            try:
                builder = tool._init_job(given, RuntimeContext({"toplevel": True, "basedir": str(workflow.parent)}))
            except Exception as exc:
                if javascript_engine() or not _for_want_of_javascript(exc):
                    raise
                return read | named, bind_without_expressions(tool.tool["inputs"], given), images
    except DependencyError:
        raise
    except Exception as exc:  # cwltool raises many kinds; the user needs the message
        raise DependencyError(f"{workflow}: {' '.join(str(exc).split())}") from None
    return read | named, dict(builder.job), images


def javascript_engine() -> Optional[str]:
    """The Node.js that cwltool evaluates expressions with, if this machine has one."""
    return shutil.which("nodejs") or shutil.which("node")


def _for_want_of_javascript(exc: BaseException) -> bool:
    """Whether `exc` came of an expression that needed a JavaScript engine and found none."""
    from cwl_utils.errors import JavascriptException

    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, JavascriptException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def bind_without_expressions(inputs: List[Dict[str, Any]], job: Dict[str, Any]) -> Dict[str, Any]:
    """The job bound as cwltool binds it, for a machine with no Node.js: defaults filled in, and the
    secondaryFiles of each File input found by its plain patterns.

    cwltool's own binding evaluates every expression of the inputs (a position, a
    secondaryFiles pattern), and without Node.js it would fail, or run ``docker run
    node``. A secondaryFiles pattern that is an expression is left out here: the
    server evaluates it, and a file it names must then be in the job.
    """
    from cwltool.builder import substitute
    from cwltool.process import shortname

    bound = dict(job)
    for param in inputs:
        name = shortname(param["id"])
        if bound.get(name) is None and param.get("default") is not None:
            bound[name] = param["default"]
        patterns = [p if isinstance(p, dict) else {"pattern": p} for p in param.get("secondaryFiles") or []]
        plain = [p for p in patterns if isinstance(p.get("pattern"), str) and "$(" not in p["pattern"]
                 and "${" not in p["pattern"]]
        if plain:
            bound[name] = _with_secondary_files(bound.get(name), plain, name, substitute)
    return bound


def _with_secondary_files(value: Any, patterns: List[Dict[str, Any]], name: str,
                          substitute: Callable[[str, str], str]) -> Any:
    """`value` (a File or a list of them) with the secondaryFiles `patterns` name, where they exist."""
    if isinstance(value, list):
        return [_with_secondary_files(item, patterns, name, substitute) for item in value]
    if not isinstance(value, dict) or value.get("class") != "File" or not value.get("location"):
        return value
    location = str(value["location"])
    found = list(value.get("secondaryFiles") or [])
    for entry in patterns:
        pattern = entry["pattern"]
        optional = pattern.endswith("?") or entry.get("required") is False or isinstance(entry.get("required"), str)
        target = urljoin(location, substitute(location.rsplit("/", 1)[-1], pattern.rstrip("?")))
        path = _local_path(target)
        if path is not None and path.exists():
            found.append({"class": "Directory" if path.is_dir() else "File", "location": target})
        elif path is not None and not optional:
            raise DependencyError(f"input {name}: missing secondary file {path} (pattern {pattern})")
    return {**value, "secondaryFiles": found} if found else value


def _named_by_documents(index: Dict[str, Any]) -> Set[Path]:
    """The local files the loaded documents name as File/Directory objects; a ``path`` is made a location.

    The loader resolves a ``location`` against its document; a bare ``path`` (allowed in a default) is
    resolved here against the document that holds it, as cwltool does before it binds the inputs.
    """
    found: Set[Path] = set()
    for uri, document in list(index.items()):
        if "#" in uri:
            continue  # a part of a document the walk below reaches from the document itself
        for obj in _files(document):
            if not obj.get("location") and isinstance(obj.get("path"), str):
                obj["location"] = urljoin(uri, obj.pop("path"))
            found |= _inputs({"_": obj})
    return found


def _files(value: Any) -> Iterator[Dict[str, Any]]:
    """Every File and Directory object in a job value or a document, secondaryFiles and listings included."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield value
            for key in ("secondaryFiles", "listing"):
                yield from _files(value.get(key))
        else:
            for item in value.values():
                yield from _files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _files(item)


def _inputs(job: Dict[str, Any]) -> Set[Path]:
    """The local files the bound job names; a Directory stands for every file under it."""
    found: Set[Path] = set()
    for obj in _files(job):
        where = str(obj.get("location") or obj.get("path") or "")
        path = _local_path(where) if where and not where.startswith("_:") else None  # "_:": a literal
        if path is None:
            continue
        if obj["class"] == "Directory":
            for root, _, names in os.walk(path):
                found.update(Path(root, name) for name in names)
        else:
            found.add(path)
    return found


def _absolute_job(job: Dict[str, Any], base: Path) -> Dict[str, Any]:
    """The job with every relative File/Directory location made a file:// URI against `base` (the job file's folder)."""
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            value = {k: fix(v) for k, v in value.items()}
            if value.get("class") in ("File", "Directory"):
                for key in ("location", "path"):
                    ref = value.get(key)
                    if isinstance(ref, str) and urlsplit(ref).scheme == "":
                        value["location"] = (base / ref).resolve().as_uri()
                        value.pop("path", None)
                        break
            return value
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return {k: fix(v) for k, v in job.items()}


def _relative_job(job: Dict[str, Any], names: Dict[Path, str]) -> Dict[str, Any]:
    """The job the user gave, each local location replaced by its attachment's name."""
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            value = {k: fix(v) for k, v in value.items()}
            if value.get("class") in ("File", "Directory"):
                path = _local_path(str(value.get("location") or ""))
                if path is not None and value.get("location"):
                    value["location"] = names.get(path) or _name_of_directory(path, names)
            return value
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return {k: fix(v) for k, v in job.items()}


def _name_of_directory(path: Path, names: Dict[Path, str]) -> str:
    """A directory's name on the server: that of the files under it, cut at its own level."""
    for file, name in names.items():
        if path in file.parents:
            depth = len(file.relative_to(path).parts)
            return "/".join(name.split("/")[:-depth]) or "."
    return path.name


def _expanded(job: Dict[str, Any], namespaces: Dict[str, str]) -> Dict[str, Any]:
    """The job as cwltool binds it: File formats with their prefix expanded, and ``$``-keys left out."""
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            value = {k: fix(v) for k, v in value.items()}
            prefix, _, rest = str(value.get("format") or "").partition(":")
            if value.get("class") == "File" and rest and prefix in namespaces:
                value["format"] = namespaces[prefix] + rest
            return value
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return {k: fix(v) for k, v in job.items() if not k.startswith("$")}


def find(workflow: Path, job: Optional[Dict[str, Any]] = None, job_dir: Optional[Path] = None,
         bind: bool = True) -> Dependencies:
    """Everything `workflow` run with `job` (relative locations against `job_dir`) needs sent, and how to name it.

    Without `bind` no job is bound (a workflow registered: its inputs are given when it is launched).
    """
    fragment = ""
    text = str(workflow)
    if "#" in text:
        text, fragment = text.split("#", 1)
    workflow = Path(text).resolve()
    given = _absolute_job(job or {}, (job_dir or Path.cwd()).resolve())
    documents, bound, images = documents_and_job(workflow, fragment, given if bind else None)
    documents.add(workflow)
    files = documents | _inputs(given) | _inputs(bound)
    missing = sorted(str(p) for p in files if not p.is_file())
    if missing:
        raise DependencyError(f"not found: {', '.join(missing)}")
    base = Path(os.path.commonpath([str(p.parent) for p in files]))
    names = {path: path.relative_to(base).as_posix() for path in files}
    attachments = sorted((Attachment(name, path) for path, name in names.items()), key=lambda a: a.name)
    return Dependencies(names[workflow] + (f"#{fragment}" if fragment else ""), _relative_job(given, names), attachments,
                        images)
