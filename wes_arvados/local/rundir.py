"""The layout of one run's directory, the single home of its files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunDir:
    """Names the files of a run below ``<state_dir>/runs/<run_id>/``.

    request.json: the RunRequest as received; workdir/: the attachments;
    engine.json and job.json: what the runner executes; outputs/: cwltool's
    output directory; tmp/: scratch; stdout.log and stderr.log: the engine's
    streams; tasks.jsonl and tasks/: one entry and two logs per CWL job;
    outputs.json: the output object; result.json: the supervisor's verdict.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getattr__(self, name: str) -> Path:
        files = {
            "request": "request.json", "workdir": "workdir", "engine": "engine.json", "job": "job.json",
            "outputs": "outputs", "tmp": "tmp", "stdout": "stdout.log", "stderr": "stderr.log",
            "tasks": "tasks", "outputs_json": "outputs.json", "result": "result.json",
        }
        if name in files:
            return self.root / files[name]
        raise AttributeError(name)

    def task_log(self, task_id: str, stream: str) -> Path:
        """Path of a task's stdout or stderr file."""
        return self.tasks / f"{task_id}.{stream}"

    def run_log(self, stream: str) -> Path:
        """Path of the engine's stdout or stderr file."""
        return self.stdout if stream == "stdout" else self.stderr


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file, or return `default` when it does not exist."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
