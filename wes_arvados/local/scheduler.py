"""Starts queued runs within the concurrency limit and reconciles runs whose supervisor is gone.

Any number of schedulers may share a state directory: a run is claimed inside
one write transaction, so it starts exactly once.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from typing import Dict, Optional

from ..config import Config
from ..errors import out_of_space
from ..processes import alive, kill_engine, start_time
from ..timestamps import age_seconds, utcnow
from ..wes.states import ACTIVE, RUNNER_SOFTWARE_EXIT, State
from .image_pulls import start_queued
from .rundir import RunDir, read_json
from .store import ImagePullRecords, RunRow, RunStore
from .supervisor import SPARE

log = logging.getLogger(__name__)

# A claimed run whose supervisor has not recorded itself after this long is orphaned.
CLAIM_TIMEOUT = 60.0


def _age(timestamp: Optional[str]) -> float:
    return age_seconds(timestamp) if timestamp else float("inf")


class Scheduler:
    """The loop that turns QUEUED runs into supervised processes."""

    name = "scheduler"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pulls = ImagePullRecords(config.images_dir / "store.sqlite")
        self.store = RunStore(config.database_path)
        self.children: Dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.spare: Optional[subprocess.Popen] = None

    def stop(self) -> None:
        """Ask `run_forever` to return after its current pass."""
        self.stopping.set()

    def _start_supervisor(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "wes_arvados.local.supervisor", *args],
                                start_new_session=True, env=self.config.child_env(),
                                stdin=subprocess.PIPE if args == (SPARE,) else subprocess.DEVNULL)

    def _keep_a_spare(self) -> None:
        # A supervisor that has imported cwltool already and waits for a run: the next run's INITIALIZING
        # does not wait a second or more for the import. It exits when its stdin ends (the scheduler stopped).
        if self.spare is None or self.spare.poll() is not None:
            self.spare = self._start_supervisor(SPARE)

    def _release_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None and spare.stdin is not None:
            spare.stdin.close()  # it exits once its import is done
            try:
                spare.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spare.kill()
                spare.wait()

    def _take_spare(self, run_id: str) -> Optional[subprocess.Popen]:
        spare, self.spare = self.spare, None
        if spare is None or spare.stdin is None or spare.poll() is not None:
            return None
        try:
            spare.stdin.write(f"{run_id}\n".encode())
            spare.stdin.close()
        except OSError:  # it died meanwhile
            return None
        return spare

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
                state = State(result["state"])
                self.store.finish(row.run_id, state, "run finished while no scheduler watched; outcome recovered",
                                  db, exit_code=result.get("exit_code"), end_time=result.get("end_time", utcnow()))
            elif row.state == State.CANCELING:
                state = State.CANCELED
                self.store.finish(row.run_id, state, "run canceled; its supervisor had already stopped", db)
            else:
                state = State.SYSTEM_ERROR
                self.store.finish(row.run_id, state, "the process supervising this run disappeared (server or "
                                  "machine restarted); the run was stopped and cannot be resumed: submit it again",
                                  db, exit_code=RUNNER_SOFTWARE_EXIT)
        log.warning("run %s reconciled to %s", row.run_id, state.value, extra={"run_id": row.run_id})

    def claim(self) -> Optional[str]:
        """Move the oldest QUEUED run to INITIALIZING if a slot is free; return its id."""
        with self.store.transaction() as db:
            if self.store.active_count(db) >= self.config.max_concurrent_runs:
                return None
            run_id = self.store.oldest_queued(db)
            if run_id is not None:
                self.store.update(run_id, db, state=State.INITIALIZING, claimed_time=utcnow())
            return run_id

    def launch(self, run_id: str) -> None:
        """Start the supervisor of a claimed run in a session of its own."""
        proc = self._take_spare(run_id) or self._start_supervisor(run_id)
        self.children[run_id] = proc
        self.store.update(run_id, supervisor_pid=proc.pid, supervisor_started=start_time(proc.pid))
        self.store.log(run_id, "supervisor started: images, then the engine")
        log.info("run %s: supervisor %d started", run_id, proc.pid, extra={"run_id": run_id})

    def step(self) -> None:
        """One pass: reap finished supervisors, reconcile orphans, start what fits."""
        for child, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[child]
        self.reconcile()
        # Pull processes are children too: polling them reaps them, so a dead one does not look alive.
        self.children.update({f"pull {k}": v for k, v in start_queued(self.config, self.pulls).items()})
        while not self.stopping.is_set():
            run_id = self.claim()
            if run_id is None:
                break
            try:
                self.launch(run_id)
            except OSError as exc:
                self.store.finish(run_id, State.SYSTEM_ERROR, f"could not start the run: {exc}",
                                  exit_code=RUNNER_SOFTWARE_EXIT)
        if not self.stopping.is_set():
            self._keep_a_spare()

    def run_forever(self) -> None:
        """Loop until `stopping` is set."""
        full = False
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                    if full:
                        log.info("the state directory has space again; scheduling goes on")
                    full = False
                except Exception as exc:  # keep scheduling; the next pass retries
                    if not out_of_space(exc):
                        log.exception("scheduler pass failed")
                    elif not full:  # once, not every pass, while the disk stays full
                        full = True
                        log.warning("the state directory is full: no run is started or settled until there is "
                                    "space (%s)", exc)
                self.stopping.wait(self.config.poll_interval)
        finally:
            self._release_spare()
