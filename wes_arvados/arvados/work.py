"""Work done for a caller outside the web worker (a run's preparation, an image pull, a workflow registration),
recorded in Arvados.

Each piece of work runs in a process of its own (``python -m <module> <id>``) that
gets its job, the caller's token included, on its stdin: never on disk or in a
command line. Its progress is a record in Arvados' properties with a
``heartbeat`` (when its process last wrote) and ``stale_after`` (seconds), so that
any replica tells work going on from work whose process stopped, and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from ..config import Config
from ..errors import NotFound
from ..timestamps import age_seconds, utcnow
from ..wes.states import State
from .api import api_errors

# Work whose heartbeat is older than its "stale_after" (else this) was abandoned: its process stopped.
STALE_AFTER_SECONDS = 120.0


def stale(record: Mapping[str, Any], now: datetime, grace: float = 0.0) -> bool:
    """Whether the work this progress record describes has been silent for longer than it may be (plus `grace`)."""
    heartbeat = record.get("heartbeat")
    allowed = float(record.get("stale_after") or STALE_AFTER_SECONDS) + grace
    return not isinstance(heartbeat, str) or age_seconds(heartbeat, now) > allowed


@contextlib.contextmanager
def beating(beat: Callable[[], object], every: float, name: str) -> Iterator[None]:
    """Call `beat()` every `every` seconds on a thread of its own while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            try:
                beat()
            except Exception:  # a missed beat is retried; only a long silence makes the work stale
                continue

    thread = threading.Thread(target=run, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Canceled(Exception):
    """The work was canceled while it waited for its turn."""


@contextlib.contextmanager
def turn(config: Config, canceled: Optional[threading.Event] = None, poll: float = 0.5) -> Iterator[None]:
    """Hold one of the machine's ``arvados.max_concurrent_preparations`` turns while the block runs.

    A turn is a lock file under the state directory, shared by every process of
    the servers that use that directory; it goes with its process however that
    ends. Waiting stops with `Canceled` once `canceled` is set.
    """
    directory = Path(config.state_dir) / "arvados" / "turns"
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        for number in range(max(1, config.arvados.max_concurrent_preparations)):
            with open(directory / f"{number}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                yield  # the lock is released when the file closes
                return
        if canceled is not None and canceled.wait(poll):
            raise Canceled()
        if canceled is None:
            time.sleep(poll)


def start(config: Config, module: str, work_id: str, job: Dict[str, Any]) -> None:
    """Start ``python -m module work_id`` in a session of its own; `job` (token included) goes on its stdin.

    The work's id is in its command line so that an operator can tell the processes apart.
    """
    proc = subprocess.Popen([sys.executable, "-m", module, work_id], stdin=subprocess.PIPE,
                            start_new_session=True, env=config.child_env())
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()


_RECORDING = threading.Lock()  # a process's heartbeat and its work update the same properties


@dataclass(frozen=True)
class LinkWork:
    """Work whose record is an Arvados link of `link_class` (an image pull, a workflow registration).

    The link's uuid is the work's id, owned by a project (else the caller), so
    any replica answers for it and Arvados' permissions decide who sees it; its
    properties hold the state, the heartbeat and the result.
    """

    link_class: str
    noun: str  # what the work is called in errors: "no <noun> with id …"
    gone: str  # the error of work whose process stopped before it finished

    def create(self, api: Any, config: Config, name: str, project: Optional[str], **properties: Any) -> Dict[str, Any]:
        """The new link (QUEUED, beating from now), in `project` if given."""
        now = utcnow()
        body: Dict[str, Any] = {"link_class": self.link_class, "name": name, "properties": {
            "state": State.QUEUED.value, **properties, "submitted_time": now, "heartbeat": now,
            "stale_after": config.arvados.heartbeat_timeout}}
        if project:
            body["owner_uuid"] = project
        with api_errors(f"project {project!r} was not found"):
            return dict(api.links().create(body={"link": body}).execute())

    def link(self, api: Any, work_id: str) -> Dict[str, Any]:
        """The work's link as the caller may see it; `NotFound` if there is none."""
        with api_errors(f"no {self.noun} with id {work_id!r}"):
            link = api.links().get(uuid=work_id).execute()
        if link.get("link_class") != self.link_class:
            raise NotFound(f"no {self.noun} with id {work_id!r}")
        return dict(link)

    def record(self, api: Any, work_id: str, head_uuid: Optional[str] = None, **fields: Any) -> Dict[str, Any]:
        """Update the properties (Arvados replaces the whole field) with `fields` and a fresh heartbeat; the link."""
        with _RECORDING:
            properties = dict(self.link(api, work_id).get("properties") or {}, heartbeat=utcnow(), **fields)
            body: Dict[str, Any] = {"properties": properties}
            if head_uuid:
                body["head_uuid"] = head_uuid
            with api_errors(f"no {self.noun} with id {work_id!r}"):
                return dict(api.links().update(uuid=work_id, body=body).execute())

    def current(self, api: Any, work_id: str, now: Optional[datetime] = None) -> Dict[str, Any]:
        """The link, work whose process stopped before it finished recorded SYSTEM_ERROR first."""
        link = self.link(api, work_id)
        properties = link.get("properties") or {}
        active = (State.QUEUED.value, State.RUNNING.value)
        if properties.get("state") in active and stale(properties, now or datetime.now(timezone.utc)):
            link = self.record(api, work_id, state=State.SYSTEM_ERROR.value, end_time=utcnow(), error=self.gone)
        return link
