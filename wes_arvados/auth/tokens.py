"""The token file: one caller per line, ``<token> <user> [admin|read]``.

A token is written as itself or, better, as ``sha256:<hex digest>`` of itself, so
that the file does not hold usable secrets (``wes-arvados`` users get the digest
with ``printf %s TOKEN | sha256sum``). Blank lines and ``#`` comments are skipped.
The file is read again whenever it changes, so users are added without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import ConfigError
from ..wes.caller import Caller

ROLES = ("admin", "read")
log = logging.getLogger(__name__)
_DIGEST = "sha256:"


def token_digest(token: str) -> str:
    """The form a token is looked up in: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    digest: str
    caller: Caller


def parse_token_file(text: str, path: str = "the token file") -> List[_Entry]:
    """The entries of a token file's text; `ConfigError` naming the line of any that is malformed."""
    entries: List[_Entry] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
        if not words:
            continue
        if len(words) not in (2, 3) or (len(words) == 3 and words[2] not in ROLES):
            raise ConfigError(f"{path}, line {number}: expected '<token> <user> [admin|read]'")
        token, user = words[0], words[1]
        digest = token[len(_DIGEST):].lower() if token.startswith(_DIGEST) else token_digest(token)
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{path}, line {number}: a sha256: token must be 64 hex digits")
        role = words[2] if len(words) == 3 else ""
        entries.append(_Entry(digest, Caller(user, admin=role == "admin", read_only=role == "read")))
    return entries


class TokenFile:
    """Looks callers up in a token file, read again when its modification time or size changes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: Optional[Tuple[int, int]] = None
        self._callers: Dict[str, Caller] = {}
        self._load()  # a missing or malformed file stops the server at start-up

    def _load(self) -> None:
        try:
            info = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {self.path}: {exc.strerror}") from None
        self._callers = {e.digest: e.caller for e in parse_token_file(text, str(self.path))}
        self._stamp = (info.st_mtime_ns, info.st_size)

    def _fresh(self) -> Dict[str, Caller]:
        with self._lock:
            try:
                info = os.stat(self.path)
                stamp: Optional[Tuple[int, int]] = (info.st_mtime_ns, info.st_size)
            except OSError:
                stamp = None
            if stamp != self._stamp:
                try:
                    self._load()
                except ConfigError as exc:
                    # Caught mid-edit, broken or gone: keep the users last read, and say so once per change.
                    log.warning("token file not reloaded, still using the users read before: %s", exc)
                    self._stamp = stamp
            return self._callers

    def caller(self, token: str) -> Optional[Caller]:
        """The caller a token belongs to, or None."""
        # Looked up by digest: what a lookup's timing could reveal is of a SHA-256, not of a token.
        found = self._fresh().get(token_digest(token))
        return None if found is None else Caller(found.user, found.admin, found.read_only, token)
