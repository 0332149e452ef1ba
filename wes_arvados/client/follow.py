"""Following a run until it ends, telling the user what happens: state changes, tasks, the server's log lines."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Set

from .session import WesSession

FINAL = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED")
POLL_SECONDS = 1.0
Say = Callable[[str], None]


class Interrupted(Exception):
    """`stop` was set while following (the user pressed Ctrl-C); raised between requests, never inside one."""


def follow(session: WesSession, run_id: str, say: Say, poll: float = POLL_SECONDS,
           stop: Optional[threading.Event] = None) -> Dict[str, Any]:
    """Poll the run until its state is final; return its RunLog. `say` gets one line per event.

    Once `stop` is set, `Interrupted` is raised at the next pause between polls.
    """
    stop = stop or threading.Event()
    state = ""
    logged = 0
    tasks: Dict[str, Set[str]] = {}  # task id -> the events already told ("start", "end")
    while True:
        log = session.call("GET", f"/runs/{run_id}")
        lines = log.get("system_logs") or []
        for line in lines[logged:]:
            say(f"[{run_id}] {line}")
        logged = len(lines)
        for task in _tasks(session, run_id):
            told = tasks.setdefault(str(task.get("id")), set())
            if task.get("start_time") and "start" not in told:
                told.add("start")
                say(f"[{run_id}] task {task.get('name') or task.get('id')} started")
            if task.get("end_time") and "end" not in told:
                told.add("end")
                say(f"[{run_id}] task {task.get('name') or task.get('id')} ended, exit code {task.get('exit_code')}")
        if log.get("state") != state:
            state = str(log.get("state"))
            say(f"[{run_id}] {state}")
        if state in FINAL:
            return log
        if stop.wait(poll):
            raise Interrupted()


def _tasks(session: WesSession, run_id: str) -> list:
    """Every task of the run, page after page."""
    found: list = []
    token = ""
    while True:
        page = session.call("GET", f"/runs/{run_id}/tasks?page_size=1000" + (f"&page_token={token}" if token else ""))
        found += page.get("task_logs") or []
        token = str(page.get("next_page_token") or "")
        if not token:
            return found
