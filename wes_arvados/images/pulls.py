"""The image pull service: imports asked for over the API (``POST /images``), for web-only users.

A pull is recorded in SQLite (QUEUED, RUNNING, then COMPLETE or SYSTEM_ERROR) and
runs in a thread of the process that took the request, so per-request registry
credentials (``X-Registry-Auth``) stay in that process's memory and are never
written anywhere. Any process reads the records; a pull whose process is gone
is reported as SYSTEM_ERROR when read. It goes through the same
`ImageService.ensure` as runs: same policy, same single-flight pulls, same store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import NotFound
from ..processes import alive, start_time
from ..sqlite import Database
from .errors import ImageError
from .registry import AuthConfig
from .service import ImageService

QUEUED, RUNNING, COMPLETE, SYSTEM_ERROR = "QUEUED", "RUNNING", "COMPLETE", "SYSTEM_ERROR"
UNFINISHED = (QUEUED, RUNNING)

SCHEMA = """
CREATE TABLE IF NOT EXISTS image_pulls (
    id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    platform TEXT,
    state TEXT NOT NULL,
    submitted_time TEXT NOT NULL,
    end_time TEXT,
    image_id TEXT,
    manifest_digest TEXT,
    size INTEGER,
    downloaded INTEGER,
    cached INTEGER,
    store TEXT,
    error TEXT,
    owner_pid INTEGER NOT NULL,
    owner_started REAL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ImagePull:
    """One pull asked for over the API."""

    id: str
    image: str
    platform: Optional[str]
    state: str
    submitted_time: str
    end_time: Optional[str] = None
    image_id: Optional[str] = None
    manifest_digest: Optional[str] = None
    size: Optional[int] = None
    downloaded: Optional[int] = None
    cached: Optional[bool] = None  # True: the store had it, nothing was downloaded
    store: Optional[str] = None
    error: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """As the API returns it (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class ImagePulls:
    """Starts pulls in threads and reads their records; one per process."""

    def __init__(self, database: Path, service: Callable[[], ImageService]) -> None:
        self.database = database
        self.service = service
        self.db = Database(database, SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def _update(self, pull_id: str, **fields: Any) -> None:
        sql = f"UPDATE image_pulls SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?"
        self._conn().execute(sql, [*fields.values(), pull_id])

    def submit(self, image: str, platform: Optional[str] = None,
               credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Check `image` against the policy (raising at once), record the pull and start it; return its id."""
        service = self.service()
        service.check(image)
        pull_id = uuid.uuid4().hex
        pid = os.getpid()
        self._conn().execute(
            "INSERT INTO image_pulls (id, image, platform, state, submitted_time, store, owner_pid, owner_started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (pull_id, image, platform, QUEUED, _now(), service.store.kind, pid, start_time(pid)))
        thread = threading.Thread(target=self._pull, args=(service, pull_id, image, platform, credentials),
                                  name=f"image-pull-{pull_id[:8]}", daemon=True)
        thread.start()
        return pull_id

    def _pull(self, service: ImageService, pull_id: str, image: str, platform: Optional[str],
              credentials: Optional[Dict[str, AuthConfig]]) -> None:
        self._update(pull_id, state=RUNNING)
        try:
            ensured = service.ensure(image, credentials, platform)
        except (ImageError, OSError) as exc:
            self._update(pull_id, state=SYSTEM_ERROR, end_time=_now(), error=" ".join(str(exc).split()))
            return
        except Exception as exc:  # recorded, never left RUNNING
            self._update(pull_id, state=SYSTEM_ERROR, end_time=_now(), error=f"internal error: {type(exc).__name__}")
            raise
        stored = ensured.stored
        self._update(pull_id, state=COMPLETE, end_time=_now(), image_id=stored.image_id,
                     manifest_digest=stored.manifest_digest, size=stored.size, downloaded=ensured.downloaded,
                     cached=int(not ensured.pulled))

    def get(self, pull_id: str) -> ImagePull:
        """The pull's record; `NotFound` if there is none. A pull whose process died is SYSTEM_ERROR."""
        row = self._conn().execute("SELECT * FROM image_pulls WHERE id = ?", (pull_id,)).fetchone()
        if row is None:
            raise NotFound(f"no image pull with id {pull_id!r}")
        if row["state"] in UNFINISHED and not alive(row["owner_pid"], row["owner_started"]):
            self._update(pull_id, state=SYSTEM_ERROR, end_time=_now(),
                         error="the server process doing this pull stopped before it finished; ask again")
            row = self._conn().execute("SELECT * FROM image_pulls WHERE id = ?", (pull_id,)).fetchone()
        fields = {k: row[k] for k in row.keys() if k not in ("owner_pid", "owner_started")}
        fields["cached"] = None if fields["cached"] is None else bool(fields["cached"])
        return ImagePull(**fields)
