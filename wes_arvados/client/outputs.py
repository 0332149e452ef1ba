"""A finished run's outputs, downloaded into a local directory, and its output object rewritten to them.

Top-level Files and Directories land in the output directory under their
basenames, as cwltool puts them; a Directory's listing is fetched entry by entry.
Each location becomes a ``file://`` URI of the local copy, with ``path`` set; the
checksum and size stay as the server gave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from .session import ClientError, WesSession


def download_outputs(session: WesSession, outputs: Any, outdir: Path, said: Callable[[str], None]) -> Any:
    """`outputs` with every File and Directory downloaded under `outdir` and pointing there."""
    return _localize(session, outputs, outdir.resolve(), said)


def _localize(session: WesSession, value: Any, into: Path, said: Callable[[str], None]) -> Any:
    if isinstance(value, list):
        return [_localize(session, item, into, said) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("class")
    if kind not in ("File", "Directory"):
        return {key: _localize(session, item, into, said) for key, item in value.items()}
    basename = str(value.get("basename") or unquote(urlsplit(str(value.get("location") or "")).path.rsplit("/", 1)[-1]))
    if not basename or "/" in basename or basename in (".", ".."):
        raise ClientError(f"the server gave an output with no usable basename: {basename!r}")
    dest = into / basename
    local = dict(value)
    if kind == "File":
        if "location" not in value:
            return value  # a literal file with contents only
        size = session.download(str(value["location"]), dest)
        said(f"downloaded {dest} ({size} bytes)")
        if "secondaryFiles" in value:
            local["secondaryFiles"] = [_localize(session, item, into, said) for item in value["secondaryFiles"]]
    else:
        dest.mkdir(parents=True, exist_ok=True)
        local["listing"] = [_localize(session, item, dest, said) for item in value.get("listing") or []]
    local["location"] = dest.as_uri()
    local["path"] = str(dest)
    return local
