"""The image pull service: imports asked for over the API (``POST /images``), for web-only users.

As with runs, the web worker that takes the request only records it (QUEUED, in
SQLite) and answers; the scheduler starts each queued pull in a process of its
own (``python -m wes_arvados.local.image_pulls <pull_id>``, RUNNING, then
COMPLETE or SYSTEM_ERROR), which outlives a restart of the server. Per-request
registry credentials (``X-Registry-Auth``) never touch a disk: the web worker
offers them to that process over `handoff`, as it does for runs. Any process
reads the records; a pull whose process is gone is reported SYSTEM_ERROR when
read. Pulls go through the same `ImageService.ensure` as runs: same policy, same
single-flight pulls, same store.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Dict, Optional

from ..config import Config, load_config
from ..logs import configure as configure_logging
from ..errors import NotFound
from ..images.errors import ImageError
from ..images.reference import Reference, parse_normalized_named
from ..images.registry import AuthConfig
from ..images.service import ImageService
from ..processes import alive, start_time
from ..timestamps import age_seconds, utcnow
from ..wes.models import ImagePull
from ..wes.states import State
from . import handoff
from .store import ImagePullRecords

log = logging.getLogger("wes_arvados.local.image_pulls")  # not __main__: it runs with -m

# A pull moves through the WES run states: QUEUED, RUNNING, then COMPLETE or SYSTEM_ERROR.
QUEUED, RUNNING, COMPLETE, SYSTEM_ERROR = (s.value for s in (State.QUEUED, State.RUNNING, State.COMPLETE,
                                                            State.SYSTEM_ERROR))
UNFINISHED = (QUEUED, RUNNING)
# A claimed pull whose process has not been recorded after this long was lost with its scheduler.
CLAIM_TIMEOUT = 60.0
GONE = "the process doing this pull stopped before it finished; ask again"


def pull_dir(config: Config, pull_id: str) -> Path:
    """Where a pull keeps what its process needs from the web worker (the credentials' handoff)."""
    return config.images_dir / "pulls" / pull_id


class ImagePulls:
    """Records pulls and reads their records, in the web workers; `start_queued` starts them."""

    def __init__(self, config: Config, service: Callable[[], ImageService]) -> None:
        self.config = config
        self.service = service
        self.records = ImagePullRecords(config.images_dir / "store.sqlite")

    def submit(self, image: Reference, platform: Optional[str] = None,
               credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Check `image` against the policy (raising at once) and queue its pull; return the pull's id."""
        service = self.service()
        service.check(image)
        pull_id = uuid.uuid4().hex
        where = pull_dir(self.config, pull_id)
        where.mkdir(parents=True)
        try:
            if credentials:
                handoff.offer(where, credentials)
            self.records.insert(id=pull_id, image=image.as_written, platform=platform, state=QUEUED,
                                submitted_time=utcnow(), store=service.store.kind, owner_pid=0)
        except BaseException:
            handoff.withdraw(where)
            shutil.rmtree(where, ignore_errors=True)
            raise
        return pull_id

    def get(self, pull_id: str) -> ImagePull:
        """The pull's record; `NotFound` if there is none. A pull whose process died is SYSTEM_ERROR."""
        row = self.records.get(pull_id)
        if row is None:
            raise NotFound(f"no image pull with id {pull_id!r}")
        if row["state"] in UNFINISHED and self._lost(row):
            self.records.update(pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=GONE)
            row = self.records.get(pull_id)
            assert row is not None  # records are never deleted
        fields = {k: row[k] for k in row.keys() if k not in ("owner_pid", "owner_started", "claimed_time")}
        fields["cached"] = None if fields["cached"] is None else bool(fields["cached"])
        return ImagePull(**fields)

    @staticmethod
    def _lost(row: Dict) -> bool:
        if row["owner_pid"]:
            return not alive(row["owner_pid"], row["owner_started"])
        return row["claimed_time"] is not None and age_seconds(row["claimed_time"]) > CLAIM_TIMEOUT


def start_queued(config: Config, records: ImagePullRecords) -> Dict[str, subprocess.Popen]:
    """Start a process for every queued pull not yet claimed (the scheduler's part); pull id → process."""
    started: Dict[str, subprocess.Popen] = {}
    while (pull_id := records.claim_queued(utcnow())) is not None:
        env = config.child_env()
        try:
            proc = subprocess.Popen([sys.executable, "-m", __name__, pull_id], start_new_session=True,
                                    env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            records.update(pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=f"could not start the pull: {exc}")
            continue
        records.update(pull_id, owner_pid=proc.pid, owner_started=start_time(proc.pid))
        started[pull_id] = proc
    return started


def run_pull(config: Config, pull_id: str, service: ImageService) -> None:
    """Do the pull `pull_id` in this process and record how it ended."""
    records = ImagePullRecords(config.images_dir / "store.sqlite")
    row = records.get(pull_id)
    if row is None:
        raise NotFound(f"no image pull with id {pull_id!r}")
    records.update(pull_id, state=RUNNING, owner_pid=os.getpid(), owner_started=start_time(os.getpid()))
    where = pull_dir(config, pull_id)
    try:
        credentials = handoff.collect(where)
        ensured = service.ensure(parse_normalized_named(row["image"]), credentials, row["platform"])
    except handoff.CredentialsLost:
        records.update(pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error="the registry credentials sent with "
                       "this pull were lost (the server process that took the request stopped); ask again")
        return
    except (ImageError, OSError) as exc:
        records.update(pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=" ".join(str(exc).split()))
        return
    except Exception as exc:  # recorded, never left RUNNING
        records.update(pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=f"internal error: {type(exc).__name__}")
        raise
    finally:
        shutil.rmtree(where, ignore_errors=True)
    stored = ensured.stored
    records.update(pull_id, state=COMPLETE, end_time=utcnow(), image_id=stored.image_id,
                   manifest_digest=stored.manifest_digest, size=stored.size, downloaded=ensured.downloaded,
                   cached=int(not ensured.pulled))


def main(argv: list) -> int:
    """``python -m wes_arvados.local.image_pulls PULL_ID``: the process the scheduler starts for one pull."""
    from .images import local_image_service
    from .runtime import detect_runtime

    config = load_config()
    pull_id = argv[1]
    configure_logging(config.log_level, config.log_format, pull_id=pull_id)
    runtime = detect_runtime(config.images.runtime)
    if runtime is None:
        ImagePullRecords(config.images_dir / "store.sqlite").update(
            pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error="this server has no container runtime")
        return 1
    run_pull(config, pull_id, local_image_service(config, runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
