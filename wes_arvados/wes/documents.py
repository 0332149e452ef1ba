"""The workflow document of a submission: read within limits, parsed, and its references to files checked.

A CWL document can name other files: ``$import`` / ``$include`` / ``$schemas``
(schema-salad), a step's ``run``, ``dockerLoad``, and File or Directory
``location`` / ``path`` in defaults and listings. The engine reads them all when the run starts, with the server's
permissions; a reference to ``/etc/passwd``, ``file:///…`` or ``../`` out of
the attachments would show the server's files (or another run's) to the
submitter. Each is resolved against the document that holds it and refused
unless it stays among the attachments or in an operator's allowed directory.
Documents reached by ``$import`` or ``run`` among the attachments are checked
the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urldefrag, urlparse

import yaml

from ..errors import BadRequest, TooLarge
from .limits import Limits
from ..fetch_guard import FetchGuard
from .locations import check_remote, inside

# Keys whose string value names another file; for "$import" and "run", a document that is itself checked.
REFERENCE_KEYS = ("$import", "$include", "run", "dockerLoad")
FOLLOWED_KEYS = ("$import", "run")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's is ~10x faster


def read_document(path: Path, where: str, limits: Limits) -> str:
    """A workflow document's text: `TooLarge` over the JSON size limit, `BadRequest` when not UTF-8."""
    size = path.stat().st_size
    if size > limits.json_bytes:
        raise TooLarge(f"workflow document {where} is {size} bytes; this server's limit is "
                       f"{limits.json_bytes} bytes (max_json_bytes)")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"workflow document {where} is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None


def parse_document(text: str, where: str) -> Any:
    """A YAML or JSON document parsed (JSON, as packed workflows are, by the fast parser); `BadRequest` if neither."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style also starts with "{"
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise BadRequest(f"workflow document {where} is not valid YAML or JSON: {exc}") from exc
    except RecursionError:
        raise BadRequest(f"workflow document {where} is nested too deeply") from None


def check_expansion(document: Any, where: str, limits: Limits) -> None:
    """`TooLarge` for a document whose YAML aliases expand it past the JSON size limit (a "billion laughs").

    The parser shares aliased nodes, so the document itself is small; every
    reader that walks it (this module, the engine) would see each copy.
    """
    sizes: Dict[int, int] = {}
    stack: List[Tuple[Any, bool]] = [(document, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)) or (id(node) in sizes and not done):
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(node)] > limits.json_bytes:
                raise TooLarge(f"workflow document {where} expands (through YAML aliases) to more than "
                               f"{limits.json_bytes} values; this server's limit is max_json_bytes")
            continue
        sizes[id(node)] = 1  # on the stack: a cycle counts once
        stack.append((node, True))
        stack.extend((c, False) for c in children)


def check_references(document: Any, path: Path, staging_dir: Path, allowed_dirs: List[str], limits: Limits,
                     guard: Optional[FetchGuard] = None) -> None:
    """Refuse a document (at `path`, parsed as `document`) that names a file outside the attachments and allowed dirs,
    or (with `guard`) an http(s) URL at an address the server may not fetch from.

    Documents it reaches among the attachments by ``$import`` or ``run`` are
    checked in turn (each once; one over the size limit or unparsable is left
    to the engine to judge, as cwltool reads it only within the run).
    """
    staged = str(staging_dir.resolve())
    roots = [staged] + list(allowed_dirs)
    pending: List[Tuple[Path, Any]] = [(path, document)]
    seen = {path.resolve()}
    while pending:
        current, parsed = pending.pop()
        for key, value in _references(parsed):
            target = _target(value, current)
            if target is None:
                if guard is not None:
                    check_remote(value, f"workflow document {_shown(current, staging_dir)} ({key})", guard)
                continue
            if not inside(target, roots):
                raise BadRequest(
                    f"workflow document {_shown(current, staging_dir)} names {value!r} ({key}), which is outside the "
                    "attachments and not in a directory the operator allowed; attach that file instead")
            resolved = target.resolve()
            if key in FOLLOWED_KEYS and resolved not in seen and inside(resolved, [staged]) and resolved.is_file():
                seen.add(resolved)
                child = _parse_quietly(resolved, limits)
                if child is not None:
                    check_expansion(child, repr(resolved.name), limits)
                    pending.append((resolved, child))


def _shown(path: Path, staging_dir: Path) -> str:
    try:
        return repr(str(path.resolve().relative_to(staging_dir.resolve())))
    except ValueError:
        return repr(path.name)


def _parse_quietly(path: Path, limits: Limits) -> Optional[Any]:
    """A referenced document parsed, or None when it is too large, not text or not YAML."""
    try:
        return parse_document(read_document(path, repr(path.name), limits), repr(path.name))
    except (BadRequest, OSError):
        return None


def _references(value: Any) -> Iterator[Tuple[str, str]]:
    """Every (key, reference) in a parsed document: reference keys, and File/Directory locations and paths."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in seen:  # an alias: its references were seen already
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            for key in REFERENCE_KEYS:
                if isinstance(item.get(key), str):
                    yield key, item[key]
            schemas = item.get("$schemas")
            for schema in schemas if isinstance(schemas, list) else []:
                if isinstance(schema, str):
                    yield "$schemas", schema
            if item.get("class") in ("File", "Directory"):
                for key in ("location", "path"):
                    if isinstance(item.get(key), str):
                        yield key, item[key]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _target(reference: str, document: Path) -> Optional[Path]:
    """The local path a reference names, resolved against its document; None for a remote URL or a fragment."""
    url, _ = urldefrag(reference)
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        return None  # http(s) and other remote documents are the fetching code's concern
    raw = unquote(url)
    return Path(raw) if raw.startswith("/") else document.parent / raw
