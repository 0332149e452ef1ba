"""A full state directory: submissions get a clear 507, runs already there stay whole, and service resumes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..tmpfs import fill, tmpfs
from ..wes import DATA, WesClient, WesServer


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
