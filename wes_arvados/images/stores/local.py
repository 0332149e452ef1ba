"""The local image store: images loaded into this machine's container runtime, with a record of each.

The runtime (Docker or Podman) is the truth about what is loaded: `lookup` asks it
for the ID of the name, so an image removed by ``docker rmi`` is loaded again.
The records (a SQLite table beside the run database) remember what the store was
asked for, for listings; several processes share them.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from ..runtime import ContainerRuntime
from ...sqlite import Database
from ..archive import iter_archive
from ..manifest import config_platform
from ..writer import write_archive
from .base import ImageStore, StoredImage

if TYPE_CHECKING:
    from ..pull import OpenedImage

SCHEMA = """
CREATE TABLE IF NOT EXISTS stored_images (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    platform TEXT,
    stored_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalImageStore(ImageStore):
    """Images in the local runtime, recorded in `database`."""

    def __init__(self, runtime: ContainerRuntime, database: Path, work_dir: Path, jobs: int = 2) -> None:
        self.runtime = runtime
        self.work_dir = work_dir
        self.jobs = max(1, min(jobs, os.cpu_count() or 1))  # layers inflated at once
        work_dir.mkdir(parents=True, exist_ok=True)
        self.kind = runtime.name
        self.database = database
        self.db = Database(database, SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def _record(self, name: str) -> Optional[StoredImage]:
        row = self._conn().execute("SELECT * FROM stored_images WHERE name = ?", (name,)).fetchone()
        return None if row is None else StoredImage(location=row["name"], **{k: row[k] for k in row.keys()})

    def lookup(self, name: str, image_id: str) -> Optional[StoredImage]:
        """The record of `name` if the runtime has it as `image_id` (recorded now if it was loaded otherwise)."""
        if self.runtime.image_id(name) != image_id:
            return None
        record = self._record(name)
        if record is not None and record.image_id == image_id:
            return record
        # Loaded by someone else (an operator's docker pull): usable as it is.
        return self._insert(StoredImage(name=name, image_id=image_id, manifest_digest="", size=0, platform=None,
                                        stored_at=_now(), location=name))

    def _insert(self, record: StoredImage) -> StoredImage:
        self._conn().execute(
            "INSERT OR REPLACE INTO stored_images (name, image_id, manifest_digest, size, platform, stored_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.name, record.image_id, record.manifest_digest, record.size, record.platform, record.stored_at))
        return record

    def put(self, name: str, image: "OpenedImage") -> StoredImage:
        """Write the image's docker-save archive, load it into the runtime under `name`, and record it."""
        image_id = image.resolved.manifest.config.digest
        archive = self.work_dir / f"{image_id.split(':')[1]}.{secrets.token_hex(4)}.tar"
        try:
            size = write_archive(archive, iter_archive(image.archive()), self.jobs)
            image.fetcher.close()
            self.runtime.load(archive)
        finally:
            archive.unlink(missing_ok=True)
        if self.runtime.image_id(name) != image_id:
            # The archive's RepoTags is the familiar name; give the runtime the name as written too.
            self.runtime.tag(image_id, name)
        platform = config_platform(image.resolved.config)
        return self._insert(StoredImage(name=name, image_id=image_id, manifest_digest=image.resolved.manifest.digest,
                                        size=size, platform=str(platform) if platform else None, stored_at=_now(),
                                        location=name))

    def list(self) -> List[StoredImage]:
        """The recorded images the runtime still has, newest first."""
        rows = self._conn().execute("SELECT * FROM stored_images ORDER BY stored_at DESC").fetchall()
        records = [StoredImage(location=r["name"], **{k: r[k] for k in r.keys()}) for r in rows]
        return [r for r in records if self.runtime.image_id(r.name) == r.image_id]
