"""Looking for secrets where they must not be: files, command lines, environments, answers.

A secret is searched for in every form it could be written in: as itself, in
base64 (standard and URL-safe), percent-encoded and JSON-escaped. `ProcessWatch`
reads the command line and environment of every process on the machine while a
run goes on (the server's runs leave its process tree); `Evidence` gathers what
was seen and written, and says where any secret was found.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil


def forms(secret: str) -> Set[bytes]:
    """The ways `secret` could be written down."""
    raw = secret.encode()
    return {raw, base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"="),
            urllib.parse.quote(secret, safe="").encode(), json.dumps(secret)[1:-1].encode()}


def files_under(root: Path) -> Dict[str, bytes]:
    """Every regular file under `root` (symlinks not followed), by path."""
    found: Dict[str, bytes] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                found[str(path)] = path.read_bytes()
            except OSError:
                pass
    return found


def grep_tree(root: Path, needle: bytes) -> List[str]:
    """Files under `root` whose bytes contain `needle`."""
    return [path for path, data in files_under(root).items() if needle in data]


def process_texts(but: Sequence[int]) -> List[bytes]:
    """The command line and environment of every process on the machine but these (those that can be read)."""
    texts: List[bytes] = []
    for process in psutil.process_iter():
        if process.pid in but:
            continue
        for name in ("cmdline", "environ"):
            try:
                texts.append(Path(f"/proc/{process.pid}/{name}").read_bytes())
            except OSError:
                pass
    return texts


class ProcessWatch:
    """Reads every process's command line and environment every `interval` seconds, in a thread, until stopped.

    The test's own process and `but` are left out. `seen` maps "pid <n> cmdline|environ
    (<command>)" to the distinct texts read there.
    """

    def __init__(self, but: Iterable[int] = (), interval: float = 0.05) -> None:
        self.but = {psutil.Process().pid, *but}
        self.interval = interval
        self.seen: Dict[str, Set[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="process-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for process in psutil.process_iter():
                if process.pid in self.but:
                    continue
                try:
                    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
                    environ = Path(f"/proc/{process.pid}/environ").read_bytes()
                except OSError:
                    continue
                command = b" ".join(cmdline.split(b"\0")[:3]).decode(errors="replace")[:100]
                self.seen.setdefault(f"pid {process.pid} cmdline ({command})", set()).add(cmdline)
                self.seen.setdefault(f"pid {process.pid} environ ({command})", set()).add(environ)
            self._stop.wait(self.interval)

    def __enter__(self) -> "ProcessWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def texts(self, kind: str) -> Dict[str, bytes]:
        """What was seen of one kind ("cmdline" or "environ"), every distinct text joined by NULs."""
        return {k: b"\0".join(sorted(v)) for k, v in self.seen.items() if f" {kind} " in k}


class Evidence:
    """Everything gathered: `add` texts under a name saying where they came from; `leaks` searches them."""

    def __init__(self) -> None:
        self.texts: Dict[str, bytes] = {}

    def add(self, where: str, text: bytes | str) -> None:
        """One more text to search."""
        self.texts[where] = text.encode() if isinstance(text, str) else text

    def add_all(self, texts: Dict[str, bytes], prefix: str = "") -> None:
        """Many texts, by where they came from."""
        for where, text in texts.items():
            self.add(prefix + where, text)

    def leaks(self, secrets: Dict[str, str], only: Optional[Tuple[str, ...]] = None) -> List[str]:
        """'<secret's name> in <where>' for every secret found (in any form) in the texts (whose names start with `only`)."""
        found = []
        for name, secret in secrets.items():
            for where, text in self.texts.items():
                if only is not None and not where.startswith(only):
                    continue
                if any(form in text for form in forms(secret)):
                    found.append(f"{name} in {where}")
        return found

    @property
    def size(self) -> int:
        """Bytes gathered."""
        return sum(len(t) for t in self.texts.values())
