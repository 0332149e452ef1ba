"""The layout of one run's directory, the single home of its files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .tasklog import task_log_path


class RunDir:
    """Names the files of a run below ``<state_dir>/runs/<run_id>/``.

    Besides those named here, tasks.jsonl (see tasklog.py) lists the run's CWL jobs.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def request(self) -> Path:
        """The RunRequest as received."""
        return self.root / "request.json"

    @property
    def workdir(self) -> Path:
        """The attachments (and a fetched workflow_url)."""
        return self.root / "workdir"

    @property
    def engine(self) -> Path:
        """What the runner executes: workflow, job, options."""
        return self.root / "engine.json"

    @property
    def job(self) -> Path:
        """The input object with absolute locations."""
        return self.root / "job.json"

    @property
    def outputs(self) -> Path:
        """cwltool's output directory."""
        return self.root / "outputs"

    @property
    def tmp(self) -> Path:
        """Scratch directories of the engine."""
        return self.root / "tmp"

    @property
    def stdout(self) -> Path:
        """The engine's stdout."""
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        """The engine's stderr."""
        return self.root / "stderr.log"

    @property
    def tasks(self) -> Path:
        """Per-task stdout and stderr files."""
        return self.root / "tasks"

    @property
    def outputs_json(self) -> Path:
        """The CWL output object, written on success."""
        return self.root / "outputs.json"

    @property
    def result(self) -> Path:
        """The supervisor's record of how the run ended."""
        return self.root / "result.json"

    def task_log(self, task_id: str, stream: str) -> Path:
        """Path of a task's stdout or stderr file."""
        return task_log_path(self.root, task_id, stream)

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
