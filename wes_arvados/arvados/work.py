"""Work done for a caller outside the web worker (a run's preparation, an image pull), recorded in Arvados.

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
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from ..config import Config
from ..timestamps import age_seconds

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
