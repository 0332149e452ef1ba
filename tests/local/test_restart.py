"""Any server process answers for any run, and a killed server loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from wes_arvados.config import load_config
from wes_arvados.local.rundir import RunDir
from wes_arvados.local.scheduler import CLAIM_TIMEOUT, Scheduler
from wes_arvados.local.store import RunStore
from wes_arvados.local.supervisor import Supervisor
from wes_arvados.timestamps import FORMAT
from wes_arvados.wes.states import State

from ..wes import DATA, WesClient, WesServer

WF = Path(__file__).resolve().parent / "data"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_port_free(port: int) -> None:
    deadline = time.monotonic() + 30
    while not _port_free(port):  # the web workers die with the server
        assert time.monotonic() < deadline, "web workers outlived the killed server"
        time.sleep(0.2)


def test_a_run_submitted_through_one_server_is_read_and_canceled_through_another(tmp_path: Path):
    state = tmp_path / "state"
    first = WesServer(state, workers=2).start()
    second = WesServer(state, workers=2).start()
    try:
        a, b = WesClient(first.url), WesClient(second.url)
        run_id = a.run(WF / "sleep.cwl")
        b.wait(run_id, timeout=60, states=["RUNNING"])
        assert b.log(run_id)["request"]["workflow_url"] == "sleep.cwl"
        assert [r["run_id"] for r in b.get("/runs").json()["runs"]] == [run_id]
        assert b.http.post(f"{b.url}/runs/{run_id}/cancel").status_code == 200
        assert a.wait(run_id)["state"] == "CANCELED"
        # Both schedulers watch the same queue: a run starts exactly once.
        ids = [a.run(DATA / "hello.cwl", {"name": str(i)}) for i in range(4)]
        for run_id in ids:
            log = b.wait(run_id)
            assert log["state"] == "COMPLETE"
            assert sum("supervisor started" in line for line in log["system_logs"]) == 1
    finally:
        for srv in (first, second):
            srv.stop()
            srv.kill_runs()


def test_every_web_worker_answers_for_every_run(tmp_path: Path):
    server = WesServer(tmp_path / "state", workers=2).start()
    try:
        client = WesClient(server.url)
        ids = [client.run(DATA / "hello.cwl", {"name": str(i)}) for i in range(3)]
        for _ in range(20):  # fresh connections land on either worker
            for run_id in ids:
                fresh = WesClient(server.url)
                assert fresh.get(f"/runs/{run_id}/status").status_code == 200
    finally:
        server.stop()
        server.kill_runs()


def test_sigkill_of_the_server_loses_no_run(tmp_path: Path):
    state = tmp_path / "state"
    server = WesServer(state, max_concurrent_runs=1).start()
    client = WesClient(server.url)
    done = client.run(DATA / "hello.cwl", {"name": "done"})
    client.wait(done)
    napping = client.run(DATA / "nap.cwl", {"seconds": 8})
    queued = client.run(DATA / "hello.cwl", {"name": "queued"})
    client.wait(napping, timeout=60, states=["RUNNING"])
    assert client.status(queued) == "QUEUED"

    server.stop(signal.SIGKILL)
    _wait_port_free(server.port)

    restarted = WesServer(state, port=server.port, max_concurrent_runs=1).start()
    try:
        client = WesClient(restarted.url)
        assert client.status(done) == "COMPLETE"
        # The run kept going under its supervisor and finishes normally.
        log = client.wait(napping, timeout=120)
        assert log["state"] == "COMPLETE", log
        assert client.get(log["outputs"]["rested"]["location"].replace(client.url, "")).content == b"rested\n"
        assert client.wait(queued, timeout=120)["state"] == "COMPLETE"
    finally:
        restarted.stop()
        restarted.kill_runs()


def test_a_run_whose_supervisor_died_with_the_machine_is_system_error_with_a_reason(tmp_path: Path):
    state = tmp_path / "state"
    server = WesServer(state, max_concurrent_runs=1).start()
    client = WesClient(server.url)
    napping = client.run(DATA / "nap.cwl", {"seconds": 60})
    queued = client.run(DATA / "hello.cwl", {"name": "after"})
    client.wait(napping, timeout=60, states=["RUNNING"])
    server.stop(signal.SIGKILL)
    server.kill_runs()  # as if the machine went down: supervisor and engine are gone
    _wait_port_free(server.port)

    restarted = WesServer(state, port=server.port, max_concurrent_runs=1).start()
    try:
        client = WesClient(restarted.url)
        log = client.wait(napping, timeout=60)
        assert log["state"] == "SYSTEM_ERROR"
        assert any("disappeared" in line for line in log["system_logs"]), log["system_logs"]
        assert log["run_log"]["end_time"]
        assert client.wait(queued, timeout=120)["state"] == "COMPLETE"
        with sqlite3.connect(str(state / "wes.sqlite")) as db:
            states = dict(db.execute("SELECT run_id, state FROM runs"))
        assert states == {napping: "SYSTEM_ERROR", queued: "COMPLETE"}
    finally:
        restarted.stop()
        restarted.kill_runs()


def test_sigterm_stops_the_server_cleanly(tmp_path: Path):
    server = WesServer(tmp_path / "state").start()
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert children, "the server has no web workers"
    assert server.stop(signal.SIGTERM) == 0
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    assert _port_free(server.port)


def _spares(server: WesServer) -> list:
    """The server's spare supervisors, not counting one that has ended (a zombie until the scheduler reaps it)."""
    assert server.proc is not None
    spares = []
    for process in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            command = process.cmdline()
        except psutil.Error:  # gone, or a zombie
            continue
        if "--spare" in command and "wes_arvados.local.supervisor" in command:
            spares.append(process)
    return spares


def test_a_run_goes_to_a_spare_supervisor_that_waited_with_cwltool_loaded_and_spares_end_with_the_server(
        tmp_path: Path):
    server = WesServer(tmp_path / "state").start()
    try:
        deadline = time.monotonic() + 30
        while not _spares(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        (spare,) = _spares(server)
        client = WesClient(server.url)
        run_id = client.run(DATA / "hello.cwl", {"name": "spare"})
        assert client.wait(run_id)["state"] == "COMPLETE"
        with sqlite3.connect(server.state_dir / "wes.sqlite") as db:
            (supervisor,) = db.execute("SELECT supervisor_pid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        assert supervisor == spare.pid  # the run did not wait for a supervisor to start
        while not [p for p in _spares(server) if p.pid != spare.pid] and time.monotonic() < deadline:
            time.sleep(0.1)
        (next_spare,) = [p for p in _spares(server) if p.pid != spare.pid]  # and another waits for the next run
        assert next_spare.pid != spare.pid
    finally:
        assert server.stop() == 0
        server.kill_runs()
    next_spare.wait(timeout=30)  # a spare ends with its scheduler (psutil.TimeoutExpired if not)
    assert not next_spare.is_running()


def test_a_supervisor_records_itself_so_a_scheduler_that_died_before_recording_it_does_not_end_its_run(
        tmp_path: Path):
    """The scheduler claims a run, starts its supervisor, then writes the supervisor's pid; if it dies in between,
    the next scheduler must still find the run supervised once the claim is old."""
    config = load_config(overrides={"state_dir": str(tmp_path / "state")}, environ={})
    store = RunStore(config.database_path)
    long_ago = (datetime.now(timezone.utc) - timedelta(seconds=10 * CLAIM_TIMEOUT)).strftime(FORMAT)
    for run_id in ("supervised", "orphan"):
        store.insert(run_id, {"workflow_url": "wf.cwl"}, [])
        store.update(run_id, state=State.INITIALIZING, claimed_time=long_ago)
    # This process stands for the supervisor, which is alive.
    Supervisor(store, RunDir(config.runs_dir / "supervised"), "supervised", config).record_self()
    Scheduler(config).reconcile()
    assert store.get("supervised").state == State.INITIALIZING
    assert store.get("supervised").supervisor_pid == os.getpid()
    orphan = store.get("orphan")
    assert orphan.state == State.SYSTEM_ERROR and "disappeared" in store.system_logs("orphan")[-1]
