"""One run's supervisor: starts the runner, stops it on cancel, records how it ended.

It runs in its own session, so a restart of the server does not stop the run:
the next scheduler finds the supervisor alive and leaves it to finish. A full
disk delays the record of how a run ended, never loses it: the supervisor waits
for space (`until_recorded`), and a run whose engine failed while the disk was
full ends SYSTEM_ERROR saying so.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional

from ..config import Config, load_config
from ..errors import out_of_space
from ..logs import configure as configure_logging
from ..processes import kill_group, start_time
from ..timestamps import utcnow
from ..wes.states import (
    IMAGES_UNAVAILABLE_EXIT,
    RUNNER_SOFTWARE_EXIT,
    State,
    state_from_engine_exit,
)
from . import handoff
from .engine_options import cwltool_arguments, load_engine_request
from .images import prepare_images
from .rundir import RunDir, write_json
from .store import RunStore

RUNNER = [sys.executable, "-m", "wes_arvados.local.runner"]
log = logging.getLogger("wes_arvados.local.supervisor")  # not __main__: it runs with -m
SPACE_WAIT = 2.0  # seconds between tries to record while the disk is full
LOW_SPACE = 1 << 20  # bytes free below which a failed engine is taken to have run out of space


def until_recorded(write: Callable[[], None], what: str, run_id: str) -> None:
    """Do `write` (a record of the run), waiting for space as long as the disk is full; other errors are raised."""
    waiting = False
    while True:
        try:
            write()
            return
        except Exception as exc:
            if not out_of_space(exc):
                raise
            if not waiting:
                log.warning("run %s: no space left to record %s; trying again every %.0f s", run_id, what,
                            SPACE_WAIT, extra={"run_id": run_id})
                waiting = True
        time.sleep(SPACE_WAIT)


def free_bytes(path: os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the file system of `path`."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def runner_command(run: RunDir) -> List[str]:
    """The engine command line shown in RunLog.run_log.cmd."""
    return ["cwltool", *cwltool_arguments(run, load_engine_request(run))]


class Supervisor:
    """Drives one run from INITIALIZING to a final state."""

    def __init__(self, store: RunStore, run: RunDir, run_id: str, config: Config) -> None:
        self.store, self.run, self.run_id, self.config = store, run, run_id, config
        self.cancel_grace = config.cancel_grace
        self.proc: Optional[subprocess.Popen] = None

    def record_self(self) -> None:
        """Write this process into its INITIALIZING run, as the scheduler does once it has started it: a scheduler
        that died in between leaves a run whose supervisor its successor finds alive, not an orphan to end."""
        with self.store.transaction() as db:
            if self.store.state_in_tx(db, self.run_id) == State.INITIALIZING:
                self.store.update(self.run_id, db, supervisor_pid=os.getpid(),
                                  supervisor_started=start_time(os.getpid()))

    def prepare(self) -> bool:
        """INITIALIZING: get the run's images; False if it must not start (the run is then ended or canceled)."""
        request = load_engine_request(self.run)
        log = lambda line: self.store.log(self.run_id, line)  # noqa: E731
        try:
            credentials = handoff.collect(self.run.root)
        except handoff.CredentialsLost:
            credentials = None
            log("the registry credentials sent with this run are gone (the server process that took the request "
                "stopped before the run started); images that need them will fail: submit the run again")
        preparation = prepare_images(self.config, self.run.root, request, log, credentials=credentials,
                                     canceled=lambda: self.store.get(self.run_id).state == State.CANCELING)
        if preparation.error is not None:
            with self.store.transaction() as db:
                if self.store.state_in_tx(db, self.run_id) == State.INITIALIZING:
                    self.store.finish(self.run_id, State.SYSTEM_ERROR, preparation.error + "; the engine was not "
                                      "started", db, exit_code=IMAGES_UNAVAILABLE_EXIT)
            return False
        if preparation.engine_options:
            write_json(self.run.engine, {"workflow": request.workflow, "job": request.job,
                                         "options": [*request.options, *preparation.engine_options]})
        return True

    def start(self) -> bool:
        """Move the run to RUNNING and start the runner; False if it was canceled first."""
        with self.store.transaction() as db:
            if self.store.state_in_tx(db, self.run_id) != State.INITIALIZING:
                return False
            self.run.tasks.mkdir(exist_ok=True)
            self.run.tmp.mkdir(exist_ok=True)
            with open(self.run.stdout, "ab") as out, open(self.run.stderr, "ab") as err:
                self.proc = subprocess.Popen(
                    RUNNER + [str(self.run.root)], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=str(self.run.root),
                )
            self.store.update(self.run_id, db, state=State.RUNNING, start_time=utcnow(), cmd=runner_command(self.run),
                              supervisor_pid=os.getpid(), supervisor_started=start_time(os.getpid()),
                              engine_pid=self.proc.pid)
        return True

    def wait(self) -> None:
        """Wait for the runner, stopping it if the run is canceled, then record the outcome."""
        assert self.proc is not None
        canceled = False
        deadline = None
        while True:
            try:
                code = self.proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if not canceled and self.store.get(self.run_id).state == State.CANCELING:
                canceled = True
                kill_group(self.proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + self.cancel_grace
            elif deadline is not None and time.monotonic() > deadline:
                kill_group(self.proc.pid, signal.SIGKILL)
                deadline = None
        # Whatever the runner started and left behind goes with it.
        kill_group(self.proc.pid, signal.SIGKILL)
        self.finish(code, canceled)

    def finish(self, code: int, canceled: bool) -> None:
        """Record the final state, exit code and end time."""
        if canceled:
            state, line = State.CANCELED, "run canceled; engine stopped"
        else:
            state = state_from_engine_exit(code)
            line = f"engine exited with status {code}" if code >= 0 else f"engine killed by signal {-code}"
            free = free_bytes(self.run.root)
            if code != 0 and free < LOW_SPACE:
                state = State.SYSTEM_ERROR
                line = (f"the server's disk is full ({free} bytes free where runs keep their files): {line}; "
                        "submit the run again once its operator has made room")
        end_time = utcnow()
        until_recorded(lambda: write_json(self.run.result, {"state": state.value, "exit_code": code,
                                                            "end_time": end_time}), "how it ended", self.run_id)
        until_recorded(lambda: self.store.finish(self.run_id, state, line, exit_code=code, end_time=end_time),
                       "how it ended", self.run_id)
        log.info("run %s ended %s: %s", self.run_id, state.value, line)


def finish_canceled_before_start(store: RunStore, run_id: str) -> None:
    """A run canceled while INITIALIZING never starts its engine."""
    with store.transaction() as db:
        if store.state_in_tx(db, run_id) == State.CANCELING:
            store.update(run_id, db, state=State.CANCELED, end_time=utcnow())


SPARE = "--spare"


def wait_for_run() -> Optional[str]:
    """A spare's wait: cwltool imported first (a second or more), then the run id the scheduler writes on stdin.

    None when stdin ends without one: the scheduler stopped, or died, and the spare is not needed.
    """
    from ..images import cwl  # noqa: F401  (the import a run's INITIALIZING would otherwise wait for)

    line = sys.stdin.readline().strip()
    return line or None


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: ``python -m wes_arvados.local.supervisor RUN_ID``, or ``--spare`` to be handed one on stdin."""
    run_id = (argv or sys.argv[1:])[0]
    if run_id == SPARE:
        given = wait_for_run()
        if given is None:
            return 0
        run_id = given
    config = load_config()
    configure_logging(config.log_level, config.log_format, run_id=run_id)
    store = RunStore(config.database_path)
    supervisor = Supervisor(store, RunDir(config.runs_dir / run_id), run_id, config)
    # SIGTERM to the supervisor (e.g. the whole session being stopped) cancels the run cleanly.
    signal.signal(signal.SIGTERM, lambda *_: store.update(run_id, state=State.CANCELING))
    try:
        supervisor.record_self()
        if not (supervisor.prepare() and supervisor.start()):
            finish_canceled_before_start(store, run_id)
            return 0
        supervisor.wait()
    except Exception as exc:  # the run must not stay RUNNING because the supervisor failed
        if supervisor.proc is not None:
            kill_group(supervisor.proc.pid, signal.SIGKILL)
        reason = f"supervisor failed: {type(exc).__name__}: {exc}"
        until_recorded(lambda: store.finish(run_id, State.SYSTEM_ERROR, reason, exit_code=RUNNER_SOFTWARE_EXIT),
                       "how it failed", run_id)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
