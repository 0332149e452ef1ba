"""The task log of a local run: ``tasks.jsonl`` (one JSON event per line) and ``tasks/<id>.stdout|stderr``.

The runner appends a ``start`` event when a CWL job begins and an ``end`` event
when it finishes; the web server folds them into one record per task.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..timestamps import utcnow

TASKS_FILE = "tasks.jsonl"
TASKS_DIR = "tasks"
# Wide enough to sort as text for any ordinary run; read_tasks sorts numerically anyway.
ID_WIDTH = 4

PathLike = Union[str, "os.PathLike[str]"]


def task_log_path(run_dir: PathLike, task_id: str, stream: str) -> Path:
    """Path of a task's captured ``stdout`` or ``stderr``."""
    return Path(run_dir) / TASKS_DIR / f"{task_id}.{stream}"


def is_task_id(task_id: str) -> bool:
    """Whether `task_id` has the form this module gives ids (digits); anything else names no file."""
    return task_id.isascii() and task_id.isdigit() and len(task_id) <= 20


def _id_number(task_id: str) -> int:
    try:
        return int(task_id)
    except ValueError:
        return -1


class TaskLogWriter:
    """Appends task events to ``tasks.jsonl``, durably and safely from several threads."""

    def __init__(self, run_dir: PathLike) -> None:
        self.run_dir = Path(run_dir)
        (self.run_dir / TASKS_DIR).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        path = self.run_dir / TASKS_FILE
        # Continue after any tasks already recorded so ids stay unique if the file is reused.
        self._last = max((_id_number(t["id"]) for t in read_tasks(self.run_dir)), default=0)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # A crash mid-write leaves a partial last line; start on a fresh one so ours stay parseable.
        size = os.fstat(self._fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    self._write_line(b"\n")

    def _write_line(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def _append(self, event: Dict[str, Any]) -> None:
        self._write_line(json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n")

    def start(self, name: str, cmd: Sequence[str]) -> str:
        """Allocate the next task id, record its start event and return the id."""
        with self._lock:
            # Allocating and writing under one lock keeps the file in id order.
            self._last += 1
            task_id = f"{self._last:0{ID_WIDTH}d}"
            self._append({"event": "start", "id": task_id, "name": name, "cmd": [str(c) for c in cmd],
                          "start_time": utcnow()})
        return task_id

    def end(self, task_id: str, exit_code: Optional[int], status: Optional[str]) -> None:
        """Record the end event of a task."""
        with self._lock:
            self._append({"event": "end", "id": task_id, "end_time": utcnow(),
                          "exit_code": exit_code, "status": status})

    def close(self) -> None:
        """Close the file; further events fail."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_tasks(run_dir: PathLike) -> List[Dict[str, Any]]:
    """Fold the events of ``tasks.jsonl`` into one dict per task, in id order.

    Lines that are not complete JSON objects (a crash mid-write, or a line still
    being written while we read) are skipped. A task without an end event has
    ``None`` end_time, exit_code and status.
    """
    try:
        with open(Path(run_dir) / TASKS_FILE, "rb") as fh:
            lines = fh.read().split(b"\n")
    except FileNotFoundError:
        return []
    tasks: Dict[str, Dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:  # includes UnicodeDecodeError
            continue
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            continue
        if event.get("event") == "start":
            tasks[event["id"]] = {
                "id": event["id"], "name": event.get("name"), "cmd": event.get("cmd") or [],
                "start_time": event.get("start_time"), "end_time": None, "exit_code": None, "status": None,
            }
        elif event.get("event") == "end" and event["id"] in tasks:
            tasks[event["id"]].update(
                end_time=event.get("end_time"), exit_code=event.get("exit_code"), status=event.get("status"),
            )
    return sorted(tasks.values(), key=lambda t: (_id_number(t["id"]), t["id"]))
