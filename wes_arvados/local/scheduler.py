"""Starts queued runs within the concurrency limit and reconciles runs whose supervisor is gone.

Any number of schedulers may share a state directory: a run is claimed inside
one write transaction, so it starts exactly once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import Dict, Optional

from ..config import RESOLVED_ENV, Config
from ..states import ACTIVE, State
from .processes import alive, kill_engine, start_time
from .rundir import RunDir, read_json
from .store import RunRow, RunStore, utcnow

log = logging.getLogger(__name__)

# A claimed run whose supervisor has not recorded itself after this long is orphaned.
CLAIM_TIMEOUT = 60.0


def _age(timestamp: Optional[str]) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


class Scheduler:
    """The loop that turns QUEUED runs into supervised processes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = RunStore(config.database_path)
        self.children: Dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()

    def reconcile(self) -> None:
        """Settle active runs whose supervisor no longer exists."""
        for row in self.store.in_states(sorted(ACTIVE)):
            if alive(row.supervisor_pid, row.supervisor_started):
                continue
            if row.supervisor_pid is None and _age(row.claimed_time) < CLAIM_TIMEOUT:
                continue
            self._settle_orphan(row)

    def _settle_orphan(self, row: RunRow) -> None:
        # An engine whose supervisor is gone has nobody to record its outcome: stop it.
        if row.engine_pid:
            kill_engine(row.engine_pid)
        run = RunDir(self.config.runs_dir / row.run_id)
        result = read_json(run.result)
        with self.store.transaction() as db:
            if self.store.state_in_tx(db, row.run_id) not in ACTIVE:
                return
            if result:
                state, line = State(result["state"]), "run finished while no scheduler watched; outcome recovered"
                self.store.update(row.run_id, db, state=state, exit_code=result.get("exit_code"),
                                  end_time=result.get("end_time", utcnow()))
            elif row.state == State.CANCELING:
                state, line = State.CANCELED, "run canceled; its supervisor had already stopped"
                self.store.update(row.run_id, db, state=state, end_time=utcnow())
            else:
                state = State.SYSTEM_ERROR
                line = ("the process supervising this run disappeared (server or machine restarted); "
                        "the run was stopped and cannot be resumed: submit it again")
                self.store.update(row.run_id, db, state=state, end_time=utcnow())
            db.execute("INSERT INTO system_logs (run_id, line) VALUES (?, ?)", (row.run_id, f"{utcnow()} {line}"))
        log.warning("run %s reconciled to %s", row.run_id, state.value)

    def claim(self) -> Optional[str]:
        """Move the oldest QUEUED run to INITIALIZING if a slot is free; return its id."""
        with self.store.transaction() as db:
            active = db.execute(
                f"SELECT COUNT(*) FROM runs WHERE state IN ({','.join('?' * len(ACTIVE))})", [s.value for s in ACTIVE]
            ).fetchone()[0]
            if active >= self.config.max_concurrent_runs:
                return None
            row = db.execute("SELECT run_id FROM runs WHERE state = ? ORDER BY seq LIMIT 1", (State.QUEUED.value,)).fetchone()
            if row is None:
                return None
            self.store.update(row["run_id"], db, state=State.INITIALIZING, claimed_time=utcnow())
            return row["run_id"]

    def launch(self, run_id: str) -> None:
        """Start the supervisor of a claimed run in a session of its own."""
        env = dict(os.environ, **{RESOLVED_ENV: self.config.to_json()})
        proc = subprocess.Popen(
            [sys.executable, "-m", "wes_arvados.local.supervisor", run_id],
            start_new_session=True, env=env, stdin=subprocess.DEVNULL,
        )
        self.children[run_id] = proc
        self.store.update(run_id, supervisor_pid=proc.pid, supervisor_started=start_time(proc.pid))
        self.store.log(run_id, "engine starting")

    def step(self) -> None:
        """One pass: reap finished supervisors, reconcile orphans, start what fits."""
        for run_id, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[run_id]
        self.reconcile()
        while not self.stopping.is_set():
            run_id = self.claim()
            if run_id is None:
                break
            try:
                self.launch(run_id)
            except OSError as exc:
                self.store.log(run_id, f"could not start the run: {exc}")
                self.store.update(run_id, state=State.SYSTEM_ERROR, end_time=utcnow())

    def run_forever(self) -> None:
        """Loop until `stopping` is set."""
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:  # keep scheduling; the next pass retries
                log.exception("scheduler pass failed")
            self.stopping.wait(self.config.poll_interval)
