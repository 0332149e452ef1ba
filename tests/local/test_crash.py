"""SIGKILL of every process the server started, with runs queued and running, then a restart: nothing lost."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import psutil

from wes_arvados.local.image_store import remove_abandoned

from ..processes import kill_process_tree
from ..threaded import ThreadedServer
from ..wes import TERMINAL, WesClient, WesServer
from .test_restart import _wait_port_free

WF = Path(__file__).resolve().parent / "data"
RUNS = 20
ACTIVE = {"INITIALIZING", "RUNNING", "CANCELING", "PAUSED"}


def _states(database: Path) -> Dict[str, str]:
    with sqlite3.connect(str(database)) as db:
        return dict(db.execute("SELECT run_id, state FROM runs"))


def _listed(client: WesClient) -> List[str]:
    """Every run id ListRuns gives, page after page."""
    ids: List[str] = []
    token = ""
    while True:
        page = client.get("/runs", params={"page_size": 7, **({"page_token": token} if token else {})}).json()
        ids += [r["run_id"] for r in page["runs"]]
        token = page.get("next_page_token") or ""
        if not token:
            return ids


def _wait_until_some_done_some_executing(state: Path, ids: List[str], mark_of: Dict[str, Path]) -> None:
    """Return once two runs are COMPLETE and a tool of a RUNNING one has begun (its mark written)."""
    deadline = time.monotonic() + 180
    while True:
        states = _states(state / "wes.sqlite")
        done = [r for r in ids if states[r] == "COMPLETE"]
        executing = [r for r in ids if states[r] == "RUNNING" and mark_of[r].exists()]
        if len(done) >= 2 and executing:
            return
        assert time.monotonic() < deadline, f"runs did not get going: {states}"
        time.sleep(0.05)


def test_sigkill_of_every_server_process_with_20_runs_loses_and_repeats_none(tmp_path: Path) -> None:
    state = tmp_path / "state"
    marks = tmp_path / "marks"
    marks.mkdir()
    server = WesServer(state, max_concurrent_runs=3).start()
    client = WesClient(server.url)
    ids = [client.run(WF / "mark.cwl", {"mark": str(marks / f"run-{i}"), "seconds": 1 + i % 3}) for i in range(RUNS)]
    mark_of = {run_id: marks / f"run-{i}" for i, run_id in enumerate(ids)}
    try:
        _wait_until_some_done_some_executing(state, ids, mark_of)
    except BaseException:
        server.stop(signal.SIGKILL)
        server.kill_runs()
        raise
    assert server.proc is not None
    killed = kill_process_tree(server.proc.pid)
    server.proc.wait()
    before = _states(state / "wes.sqlite")
    for part in ("gunicorn", "wes_arvados.local.supervisor", "wes_arvados.local.runner"):
        assert any(part in command for command in killed), (part, killed)
    left = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert not [c for c in left if "wes_arvados.local.runner" in c and str(state) in c], left
    at_kill = {s: {r for r in ids if before[r] == s} for s in set(before.values())}
    assert at_kill.get("QUEUED"), f"no run was still queued at the kill: {before}"
    assert {r for s in ACTIVE for r in at_kill.get(s, set())}, f"no run was under way at the kill: {before}"
    _wait_port_free(server.port)

    restarted = WesServer(state, port=server.port, max_concurrent_runs=3).start()
    try:
        client = WesClient(restarted.url)
        logs = {run_id: client.wait(run_id, timeout=240) for run_id in ids}
        assert sorted(_listed(client)) == sorted(ids)  # none lost, none twice
    finally:
        restarted.stop()
        restarted.kill_runs()

    for run_id, log in logs.items():
        was, now, lines = before[run_id], log["state"], log["system_logs"]
        ran = len(mark_of[run_id].read_text().splitlines()) if mark_of[run_id].exists() else 0
        assert now in TERMINAL
        # A run starts once: one supervisor, and its tool executed at most once.
        assert sum("supervisor started" in line for line in lines) <= 1, lines
        assert ran <= 1, f"{run_id} ({was} -> {now}) executed its tool {ran} times"
        if was in ("COMPLETE", "QUEUED"):
            assert now == "COMPLETE" and ran == 1, (was, now, ran, lines)
        elif was in ACTIVE:
            # Its supervisor and engine were killed: nobody can say the tool finished, unless result.json does.
            assert now in ("COMPLETE", "SYSTEM_ERROR"), (was, now, lines)
            if now == "SYSTEM_ERROR":
                assert any("disappeared" in line for line in lines), lines
                assert log["run_log"]["end_time"]
        else:
            assert now == was, (was, now)
    for database in (state / "wes.sqlite", state / "images" / "store.sqlite"):
        if database.exists():
            with sqlite3.connect(str(database)) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], database



LOADER = """
import pathlib, sys, time
from wes_arvados.fetch_guard import FetchGuard
from wes_arvados.images.cwl import ImageNeed
from wes_arvados.local.images import _load

class Stuck:
    name = "docker"

    def load(self, path):
        print(path, flush=True)
        time.sleep(600)

url, run, work = sys.argv[1:]
_load(Stuck(), ImageNeed("img", "load", True, ("tool",), url), pathlib.Path(run), pathlib.Path(work),
      FetchGuard(["127.0.0.1"]))
"""


def test_a_docker_load_archive_left_by_a_killed_run_is_removed_when_the_image_store_opens(tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "image.tar").write_bytes(b"\0" * 100_000)
    work, run = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    run.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    with ThreadedServer(handler) as served:  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{served.port}/image.tar"
        loader = subprocess.Popen([sys.executable, "-c", LOADER, url, str(run), str(work)], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert loader.stdout is not None
            archive = Path(loader.stdout.readline().strip())  # downloaded, being loaded
            assert archive.parent == work and archive.stat().st_size == 100_000
        finally:
            loader.kill()
            loader.wait(30)
    live = work / f"load.{os.getpid()}.0123456789abcdef.tar"  # a process still at work keeps its archive
    live.write_bytes(b"x")
    assert archive.exists()
    remove_abandoned(work)
    assert sorted(work.iterdir()) == [live]
