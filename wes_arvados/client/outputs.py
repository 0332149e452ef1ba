"""A finished run's outputs, downloaded into a local directory, and its output object rewritten to them.

Top-level Files and Directories land in the output directory under their
basenames, as cwltool puts them; a Directory's listing is fetched entry by entry.
Two different outputs with one basename are kept apart as cwltool keeps them
(the second is ``NAME_2``, its basename unchanged); one output named twice is
fetched once. Each location becomes a ``file://`` URI of the local copy, with
``path`` set; the checksum and size stay as the server gave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Set, Tuple
from urllib.parse import unquote, urlsplit

from .session import ClientError, WesSession


def download_outputs(session: WesSession, outputs: Any, outdir: Path, said: Callable[[str], None]) -> Any:
    """`outputs` with every File and Directory downloaded under `outdir` and pointing there."""
    return _Download(session, said).localize(outputs, outdir.resolve())


class _Download:
    """One download of a run's outputs, which knows where each location went."""

    def __init__(self, session: WesSession, said: Callable[[str], None]) -> None:
        self.session, self.said = session, said
        self.placed: Dict[str, Path] = {}  # a location -> its local copy
        self.taken: Set[Path] = set()

    def place(self, location: str, into: Path, basename: str) -> Tuple[Path, bool]:
        """Where `location` goes, and whether it is there already: its earlier copy, else ``into/basename``,
        else ``into/basename_N`` (cwltool's way) when another output took that name."""
        if location in self.placed:
            return self.placed[location], True
        dest, n = into / basename, 2
        while dest in self.taken:
            dest, n = into / f"{basename}_{n}", n + 1
        self.taken.add(dest)
        if location:
            self.placed[location] = dest
        return dest, False

    def localize(self, value: Any, into: Path) -> Any:
        """`value` with its Files and Directories downloaded under `into`."""
        if isinstance(value, list):
            return [self.localize(item, into) for item in value]
        if not isinstance(value, dict):
            return value
        kind = value.get("class")
        if kind not in ("File", "Directory"):
            return {key: self.localize(item, into) for key, item in value.items()}
        if kind == "File" and "location" not in value:
            return value  # a literal file with contents only
        location = str(value.get("location") or "")
        basename = str(value.get("basename") or unquote(urlsplit(location).path.rsplit("/", 1)[-1]))
        if not basename or "/" in basename or basename in (".", ".."):
            raise ClientError(f"the server gave an output with no usable basename: {basename!r}")
        dest, there = self.place(location, into, basename)
        local = dict(value)
        if kind == "File":
            if not there:
                size = self.session.download(location, dest)
                self.said(f"downloaded {dest} ({size} bytes)")
            if "secondaryFiles" in value:
                local["secondaryFiles"] = [self.localize(item, into) for item in value["secondaryFiles"]]
        else:
            dest.mkdir(parents=True, exist_ok=True)
            local["listing"] = [self.localize(item, dest) for item in value.get("listing") or []]
        local["location"] = dest.as_uri()
        local["path"] = str(dest)
        return local
