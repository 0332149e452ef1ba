"""The local image store: images loaded into this machine's container runtime, with a record of each.

The runtime (Docker or Podman) is the truth about what is loaded: `lookup` asks it
for the ID of the name, so an image removed by ``docker rmi`` is loaded again.
The records (a SQLite table beside the run database) remember what the store was
asked for, for listings; several processes share them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from ..images.manifest import config_platform
from ..images.stores.base import ImageStore, StoredImage
from ..images.strategy import Uncompressed
from ..processes import alive
from ..timestamps import utcnow
from .runtime import ContainerRuntime
from .store import StoredImageRecords

if TYPE_CHECKING:
    from ..images.pull import OpenedImage


def remove_abandoned(work_dir: Path) -> None:
    """Remove the archives that processes killed while writing or loading them (e.g. with the server) left."""
    for path in work_dir.glob("*.tar"):
        parts = path.name.split(".")
        if len(parts) == 4 and parts[1].isdigit() and not alive(int(parts[1]), None):
            path.unlink(missing_ok=True)


class LocalImageStore(ImageStore):
    """Images in the local runtime, recorded in `database`."""

    def __init__(self, runtime: ContainerRuntime, database: Path, work_dir: Path, jobs: int = 2) -> None:
        self.runtime = runtime
        self.work_dir = work_dir
        self.jobs = max(1, min(jobs, os.cpu_count() or 1))  # layers inflated at once
        work_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned(work_dir)
        self.kind = runtime.name
        self.records = StoredImageRecords(database)

    def lookup(self, name: str, image_id: str) -> Optional[StoredImage]:
        """The record of `name` if the runtime has it as `image_id` (recorded now if it was loaded otherwise)."""
        if self.runtime.image_id(name) != image_id:
            return None
        record = self.records.get(name)
        if record is not None and record.image_id == image_id:
            return record
        # Loaded by someone else (an operator's docker pull): usable as it is.
        return self.records.put(StoredImage(name=name, image_id=image_id, manifest_digest="", size=0, platform=None,
                                        stored_at=utcnow(), location=name))

    def put(self, name: str, image: "OpenedImage") -> StoredImage:
        """Write the image's docker-save archive, load it into the runtime under `name`, and record it."""
        image_id = image.resolved.manifest.config.digest
        # The writer's pid in the name: whoever finds it dead removes what it left (`remove_abandoned`).
        archive = self.work_dir / f"{image_id.split(':')[1]}.{os.getpid()}.{secrets.token_hex(4)}.tar"
        try:
            size = image.write(Uncompressed(self.jobs), archive)
            self.runtime.load(archive)
        finally:
            archive.unlink(missing_ok=True)
        if self.runtime.image_id(name) != image_id:
            # The archive's RepoTags is the familiar name; give the runtime the name as written too.
            self.runtime.tag(image_id, name)
        platform = config_platform(image.resolved.config)
        return self.records.put(StoredImage(name=name, image_id=image_id, manifest_digest=image.resolved.manifest.digest,
                                        size=size, platform=str(platform) if platform else None, stored_at=utcnow(),
                                        location=name))

    def list(self) -> List[StoredImage]:
        """The recorded images the runtime still has, newest first."""
        return [r for r in self.records.newest_first() if self.runtime.image_id(r.name) == r.image_id]
