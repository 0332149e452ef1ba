"""The embedded local backend: runs CWL with cwltool on this machine."""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import uuid
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

from ..config import Config
from ..errors import BadRequest, Forbidden, NotFound, ServerError
from ..images.reference import Reference
from ..images.registry import AuthConfig
from ..images.service import ImageService
from ..images.stores.base import StoredImage
from ..timestamps import utcnow
from ..wes.backend import Backend, BackgroundWork
from ..wes.caller import Caller, anonymous
from ..wes.locations import resolve_locations
from ..wes.models import (
    OUTPUT_ROOT,
    Content,
    Entry,
    ImagePull,
    Listing,
    Output,
    Page,
    RunRecord,
    RunRequest,
    RunSummary,
    TaskRecord,
)
from ..wes.pages import decode_token, encode_token
from ..wes.states import State
from ..wes.submission import Submission
from . import handoff
from .engine_options import CWLTOOL
from .image_pulls import ImagePulls
from .images import local_image_service
from .rundir import RunDir, read_json, write_json
from .runtime import detect_runtime
from .scheduler import Scheduler
from .store import RunStore
from .tasklog import is_task_id, read_tasks


@lru_cache(maxsize=None)
def _cwltool_version() -> str:
    # Read once: the installed cwltool does not change under a running server, and each lookup scans sys.path (~2 ms).
    return version("cwltool")


class LocalBackend(Backend):
    """Runs live in SQLite and run directories; a scheduler process executes them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        config.runs_dir.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(config.database_path)
        self._images: Optional[ImageService] = None
        self._image_pulls: Optional[ImagePulls] = None
        self.caller = anonymous()

    def for_caller(self, caller: Caller) -> "LocalBackend":
        """This backend for `caller`: it submits runs as their owner and sees only theirs (an admin, all)."""
        view = copy.copy(self)
        view.caller = caller
        return view

    @property
    def _owner(self) -> Optional[str]:
        return self.caller.owner_filter

    def run_dir(self, run_id: str) -> RunDir:
        """The directory of a run (which may not exist)."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise NotFound(f"no run with id {run_id!r}")
        return RunDir(self.config.runs_dir / run_id)

    def background_work(self) -> Sequence[BackgroundWork]:
        """The scheduler: it starts queued runs and settles orphaned ones."""
        return [Scheduler(self.config)]

    def engine_versions(self) -> Dict[str, List[str]]:
        """The cwltool this server runs."""
        return {"cwltool": [_cwltool_version()]}

    def default_engine_parameters(self) -> List[dict]:
        """The cwltool options clients may set."""
        return CWLTOOL.defaults()

    def filesystem_protocols(self) -> List[str]:
        """Inputs can be attachments (relative paths), http(s) URLs, or allowed server directories."""
        return ["http", "https"] + (["file"] if self.config.allowed_dirs else [])

    def state_counts(self) -> Dict[str, int]:
        """The caller's runs per state."""
        return self.store.counts(self._owner)

    def ready(self) -> None:
        """Ready when the database takes its write lock within 2 s."""
        try:
            self.store.db.check_writable()
        except sqlite3.Error as exc:
            raise ServerError(f"the run database {self.config.database_path} is not writable: {exc}") from None

    def submit(self, submission: Submission, credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
        """Move the staged files into a new run directory, then queue the run (credentials offered to it first)."""
        options, notes = CWLTOOL.options(submission.request.workflow_engine_parameters)
        run_id = str(uuid.uuid4())
        run = self.run_dir(run_id)
        run.root.mkdir(parents=True)
        try:
            os.rename(submission.staging_dir, run.workdir)
            params = resolve_locations(submission.request.workflow_params, run.workdir, self.config.allowed_dirs)
            write_json(run.job, params)
            workflow, _, fragment = submission.workflow.partition("#")
            write_json(run.engine, {
                "workflow": str(run.workdir / workflow) + (f"#{fragment}" if fragment else ""),
                "job": str(run.job),
                "options": list(self.config.cwltool_options) + options,
            })
            write_json(run.request, submission.request.to_dict())
            if credentials:
                handoff.offer(run.root, credentials)
            self.store.insert(run_id, submission.request.to_dict(), [f"{utcnow()} {n}" for n in submission.notes + notes],
                              self.caller.user)
        except BaseException:
            handoff.withdraw(run.root)
            shutil.rmtree(run.root, ignore_errors=True)
            raise
        return run_id

    def list_runs(self, page_size: int, page_token: Optional[str], states: Sequence[State] = (),
                  tags: Optional[Dict[str, str]] = None) -> Page:
        """Runs newest first."""
        rows, token = self.store.page(page_size, page_token, states, tags or {}, self._owner)
        return Page([RunSummary(r.run_id, r.state, r.start_time, r.end_time, r.request.get("tags", {})) for r in rows], token)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with its logs and outputs."""
        row = self.store.get(run_id, self._owner)
        run = self.run_dir(run_id)
        outputs = read_json(run.outputs_json, {}) if row.state == State.COMPLETE else {}
        return RunRecord(
            run_id=row.run_id, state=row.state, request=RunRequest(**row.request), submitted_time=row.submitted_time,
            start_time=row.start_time, end_time=row.end_time, exit_code=row.exit_code, cmd=row.cmd,
            system_logs=self.store.system_logs(run_id), outputs=relative_outputs(outputs, run.outputs),
            has_logs=run.stderr.exists(),
        )

    def get_state(self, run_id: str) -> State:
        """The run's state."""
        return self.store.get(run_id, self._owner).state

    def _tasks(self, run_id: str) -> List[TaskRecord]:
        self.store.get(run_id, self._owner)
        return [
            TaskRecord(id=t["id"], name=t["name"], cmd=t.get("cmd") or [], start_time=t.get("start_time"),
                       end_time=t.get("end_time"), exit_code=t.get("exit_code"),
                       system_logs=[f"status: {t['status']}"] if t.get("status") else [])
            for t in read_tasks(self.run_dir(run_id).root)
        ]

    def list_tasks(self, run_id: str, page_size: int, page_token: Optional[str]) -> Page:
        """Tasks in start order; the token is the index of the next one."""
        tasks = self._tasks(run_id)
        start = decode_token(page_token) or 0
        end = start + page_size
        return Page(tasks[start:end], encode_token(end) if end < len(tasks) else "")

    def get_task(self, run_id: str, task_id: str) -> TaskRecord:
        """One task by id."""
        for task in self._tasks(run_id):
            if task.id == task_id:
                return task
        raise NotFound(f"run {run_id!r} has no task {task_id!r}")

    def cancel(self, run_id: str) -> None:
        """QUEUED runs stop at once; running ones are stopped by their supervisor."""
        with self.store.transaction() as db:
            state = self.store.state_in_tx(db, run_id, self._owner)
            if state == State.QUEUED:
                self.store.update(run_id, db, state=State.CANCELED, end_time=utcnow())
            elif state in (State.INITIALIZING, State.RUNNING, State.PAUSED):
                self.store.update(run_id, db, state=State.CANCELING)
            elif state not in (State.CANCELING, State.CANCELED):
                raise BadRequest(f"run {run_id!r} has already finished ({state.value}); it cannot be canceled")
            self.store.log(run_id, f"cancel requested while {state.value}", db)

    def log(self, run_id: str, stream: str, task_id: Optional[str] = None) -> Content:
        """The engine's or a task's stdout/stderr file."""
        self.store.get(run_id, self._owner)
        run = self.run_dir(run_id)
        if task_id is None:
            path = run.run_log(stream)
        else:
            if not is_task_id(task_id):
                raise NotFound(f"run {run_id!r} has no task {task_id!r}")
            path = run.task_log(task_id, stream)
        if not path.is_file():
            raise NotFound(f"no {stream} log yet for run {run_id!r}" + (f" task {task_id!r}" if task_id else ""))
        return file_content(path, "text/plain")

    def output(self, run_id: str, relpath: str) -> Output:
        """An output file or directory; never a path outside the run's output directory."""
        self.store.get(run_id, self._owner)
        root = self.run_dir(run_id).outputs.resolve()
        try:
            path = (root / relpath).resolve()
            found = str(path).startswith(str(root) + os.sep) and (path.is_file() or path.is_dir())
        except OSError:  # a name the file system cannot hold (too long, a NUL) names no output
            found = False
        if not found:
            raise NotFound(f"run {run_id!r} has no output {relpath!r}")
        if path.is_dir():
            entries = [Entry(e.name, e.is_dir(), None if e.is_dir() else e.stat().st_size)
                       for e in sorted(path.iterdir(), key=lambda e: e.name)]
            return Listing(path.name, entries)
        return file_content(path, "application/octet-stream")

    # ---- images -----------------------------------------------------------------------------

    def _image_service(self) -> ImageService:
        if self._images is None:
            if self.config.images.runtime == "none":  # the operator's choice, not a fault
                raise Forbidden("this server keeps no images: its operator turned the image store off "
                                "(images.runtime: none)")
            runtime = detect_runtime(self.config.images.runtime)
            if runtime is None:
                raise ServerError(f"this server has no container runtime to keep images in "
                                  f"(images.runtime: {self.config.images.runtime})")
            self._images = local_image_service(self.config, runtime)
        return self._images

    def _pulls(self) -> ImagePulls:
        if self._image_pulls is None:
            self._image_pulls = ImagePulls(self.config, self._image_service)
        return self._image_pulls

    def pull_image(self, image: Reference, platform: Optional[str] = None,
                   credentials: Optional[Dict[str, AuthConfig]] = None, project_uuid: Optional[str] = None) -> str:
        """Queue a pull into the local runtime; the scheduler starts it in a process of its own."""
        if project_uuid:
            raise BadRequest("project_uuid is for the Arvados backend; this server's images go into its local runtime")
        return self._pulls().submit(image, platform, credentials)

    def get_image_pull(self, pull_id: str) -> ImagePull:
        """A pull's record."""
        return self._pulls().get(pull_id)

    def list_images(self) -> Tuple[str, List[StoredImage]]:
        """The images this server loaded into the local runtime."""
        service = self._image_service()
        return service.store.kind, service.store.list()


def relative_outputs(outputs: Any, root: Path) -> Any:
    """Rewrite File/Directory locations below `root` to "./"-relative paths and drop server paths."""
    if isinstance(outputs, list):
        return [relative_outputs(v, root) for v in outputs]
    if not isinstance(outputs, dict):
        return outputs
    result = {k: relative_outputs(v, root) for k, v in outputs.items() if k != "path"}
    location = outputs.get("location")
    if outputs.get("class") in ("File", "Directory") and isinstance(location, str) and location.startswith("file://"):
        path = unquote(urlparse(location).path)
        prefix = str(root.resolve()) + os.sep
        if path.startswith(prefix):
            result["location"] = OUTPUT_ROOT + path[len(prefix):]
    return result


def file_content(path: Path, media_type: str) -> Content:
    """A local file as `Content`: opened when served, its size and time taken now."""
    stat = path.stat()
    return Content(open=lambda: open(path, "rb"), size=stat.st_size, media_type=media_type, modified=stat.st_mtime)
