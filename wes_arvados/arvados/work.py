"""Work done for a caller outside the web worker (a run's preparation, an image pull), recorded in Arvados.

Each piece of work runs in a process of its own (``python -m <module> <id>``) that
gets its job, the caller's token included, on its stdin: never on disk or in a
command line. Its progress is a record in Arvados' properties with a
``heartbeat`` (when its process last wrote) and ``stale_after`` (seconds), so that
any replica tells work going on from work whose process stopped, and says so.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, Mapping

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


def start(config: Config, module: str, work_id: str, job: Dict[str, Any]) -> None:
    """Start ``python -m module work_id`` in a session of its own; `job` (token included) goes on its stdin.

    The work's id is in its command line so that an operator can tell the processes apart.
    """
    proc = subprocess.Popen([sys.executable, "-m", module, work_id], stdin=subprocess.PIPE,
                            start_new_session=True, env=config.child_env())
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
