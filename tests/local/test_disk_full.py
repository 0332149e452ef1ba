"""A full state directory: submissions get a clear 507, runs already there stay whole, a run executing then ends
saying so once there is space, and service resumes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..tmpfs import fill, tmpfs
from ..wes import DATA, WesClient, WesServer

WF = Path(__file__).resolve().parent / "data"


def _integrity(database: Path) -> list:
    with sqlite3.connect(str(database)) as db:
        return db.execute("PRAGMA integrity_check").fetchall()


def test_a_full_state_directory_refuses_runs_with_507_keeps_the_old_ones_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", "48m") as state:
        server = WesServer(state, max_concurrent_runs=1).start()
        try:
            client = WesClient(server.url)
            before = client.run(DATA / "hello.cwl", {"name": "before"})
            old = client.wait(before)
            assert old["state"] == "COMPLETE", old
            greeting = old["outputs"]["greeting"]["location"].replace(client.url, "")
            filler = fill(state)

            refused = client.submit(DATA / "hello.cwl", {"name": "while-full"})
            assert refused.status_code == 507, refused.text
            assert refused.json()["status_code"] == 507
            assert "no storage space left" in refused.json()["msg"]
            # Nothing of the refused request was kept, and what was there still reads whole.
            assert [r["run_id"] for r in client.get("/runs").json()["runs"]] == [before]
            assert list(state.glob("staging/*")) == []
            assert [p.name for p in (state / "runs").iterdir()] == [before]
            assert client.log(before) == old
            assert client.get(greeting).content == b"hello before\n"
            assert "success" in client.http.get(old["run_log"]["stderr"], timeout=30).text
            assert _integrity(state / "wes.sqlite") == [("ok",)]

            filler.unlink()
            after = client.run(DATA / "hello.cwl", {"name": "after"})
            log = client.wait(after)
            assert log["state"] == "COMPLETE", log["system_logs"]
            assert client.get(log["outputs"]["greeting"]["location"].replace(client.url, "")).content == \
                b"hello after\n"
        finally:
            server.stop()
            server.kill_runs()
        assert _integrity(state / "wes.sqlite") == [("ok",)]


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_run_whose_disk_fills_while_it_executes_ends_system_error_saying_so_once_there_is_space(
        tmp_path: Path) -> None:
    go = tmp_path / "go"
    with tmpfs(tmp_path / "state", "48m") as state:
        server = WesServer(state, max_concurrent_runs=1).start()
        try:
            client = WesClient(server.url)
            run_id = client.run(WF / "write_when_told.cwl", {"go": str(go), "megabytes": 64})
            _wait_for(lambda: client.get(f"/runs/{run_id}/tasks").json()["task_logs"], "the tool to start")
            filler = fill(state)
            go.touch()  # the tool now writes 64 MiB where there is no byte left
            _wait_for(lambda: "no space left to record how it ended" in server.log_path.read_text(errors="replace"),
                      "the supervisor to find no room for the outcome")
            # Full: the run is not lost nor misreported, reads go on, nothing is settled as an orphan.
            assert client.status(run_id) == "RUNNING"
            assert client.log(run_id)["run_log"]["exit_code"] is None

            filler.unlink()
            log = client.wait(run_id, timeout=60)
            assert log["state"] == "SYSTEM_ERROR", log
            assert log["run_log"]["exit_code"] == 1  # cwltool's, when its tool failed
            assert "the server's disk is full" in log["system_logs"][-1], log["system_logs"]
            assert "engine exited with status 1" in log["system_logs"][-1]
            assert not any("disappeared" in line for line in log["system_logs"])
            assert "scheduler pass failed" not in server.log_path.read_text(errors="replace")

            after = client.run(DATA / "hello.cwl", {"name": "after"})
            assert client.wait(after)["state"] == "COMPLETE"
        finally:
            server.stop()
            server.kill_runs()
        assert _integrity(state / "wes.sqlite") == [("ok",)]
