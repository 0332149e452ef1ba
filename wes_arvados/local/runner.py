"""Run one WES run with cwltool in this process and record every CWL job as a task.

Usage: ``python -m wes_arvados.local.runner RUN_DIR``. The supervisor has opened
RUN_DIR/stdout.log and RUN_DIR/stderr.log as our stdout and stderr. The exit
status is cwltool's own (0, 1, 33, 2 for bad arguments, the signal number after
SIGTERM, ...), or 70 when this runner's own code failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, List, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

import cwltool.main
from cwltool.argparser import arg_parser
from cwltool.command_line_tool import CommandLineTool, ExpressionTool
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.job import JobBase
from cwltool.process import Process, shortname, uniquename
from cwltool.utils import CWLObjectType, JobsGeneratorType, JobsType, OutputCallbackType
from cwltool.workflow import default_make_tool
from ruamel.yaml.comments import CommentedMap

from ..config import load_config
from ..wes.locations import inside
from ..wes.states import RUNNER_SOFTWARE_EXIT
from .engine_options import RunnerError, cwltool_arguments, load_engine_request
from .rundir import RunDir
from .tasklog import TaskLogWriter, task_log_path

EX_SOFTWARE = RUNNER_SOFTWARE_EXIT

# Defaults we add unless the options already pick a side of the same
# mutually exclusive cwltool switch (argparse would reject both).
def parse_cwltool_arguments(argsl: Sequence[str]) -> argparse.Namespace:
    """Parse arguments exactly as ``cwltool.main.main`` does when given ``argsl``.

    We parse them ourselves because the loading context we pass to cwltool must
    be built from them (cwltool only builds its own when given none).
    """
    addl: List[str] = []
    if "CWLTOOL_OPTIONS" in os.environ:
        addl = [x for x in os.environ["CWLTOOL_OPTIONS"].split(" ") if x != ""]
    args = arg_parser().parse_args(addl + list(argsl))
    if args.record_container_id:
        if not args.cidfile_dir:
            args.cidfile_dir = os.getcwd()
        del args.record_container_id
    return args


@dataclass
class _Outcome:
    """What one job reported while running."""

    status: Optional[str] = None
    process: Optional["subprocess.Popen[Any]"] = None  # the tool's process, once started


def _exit_code(process: Optional["subprocess.Popen[Any]"]) -> Optional[int]:
    if process is None:
        return None
    if process.returncode is None:
        # cwltool's SIGTERM handler interrupts its wait for the tool, so we reap
        # the tool ourselves. Not via poll(): when the interrupted wait had already
        # reaped it, poll() reports 0, whereas the status is in fact lost.
        try:
            pid, status = os.waitpid(process.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:  # still running
            return None
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode


def outside_files(value: Any, roots: Sequence[str]) -> List[str]:
    """The local File/Directory locations (and paths) in `value` that are not below one of `roots`.

    Submission keeps what a request names inside the run; this catches what
    expressions make while it runs: an ExpressionTool or outputEval returning
    ``{"class": "File", "location": "file:///etc/passwd"}``, or a symlink a
    tool left in its output pointing out of the run (`inside` resolves it).
    """
    found: List[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class") in ("File", "Directory"):
                for key in ("location", "path"):
                    ref = item.get(key)
                    if not isinstance(ref, str):
                        continue
                    parts = urlsplit(ref)
                    if parts.scheme == "file" or (not parts.scheme and ref.startswith("/")):
                        path = unquote(parts.path) if parts.scheme == "file" else ref
                        if not inside(Path(path), roots):
                            found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class JobRecorder:
    """Builds cwltool's Process objects and records each job of its tools as a task.

    Each job's inputs and outputs may name files only below `roots` (the run's
    directory and the operator's allowed directories); a job that names another
    fails.
    """

    def __init__(self, writer: TaskLogWriter, run_dir: Path, roots: Sequence[str] = ()) -> None:
        self._writer = writer
        self._run_dir = run_dir
        self._roots = [str(run_dir.resolve())] + list(roots)
        self._failure_lock = threading.Lock()
        self.failure: Optional[BaseException] = None

    def make_tool(self, toolpath_object: CommentedMap, loading_context: LoadingContext) -> Process:
        """``LoadingContext.construct_tool_object``: cwltool's default, with job() of tools instrumented."""
        tool = default_make_tool(toolpath_object, loading_context)
        # Workflows are not tasks: their steps reach the tools below, which are.
        if isinstance(tool, (CommandLineTool, ExpressionTool)):
            original_job = tool.job

            def job(job_order: CWLObjectType, output_callbacks: Optional[OutputCallbackType],
                    runtime_context: RuntimeContext) -> JobsGeneratorType:
                return self._instrumented_jobs(tool, original_job, job_order, output_callbacks, runtime_context)

            tool.job = job  # type: ignore[method-assign,assignment]
        return tool

    def _instrumented_jobs(self, tool: Process, original_job: Callable[..., JobsGeneratorType],
                           job_order: CWLObjectType, output_callbacks: Optional[OutputCallbackType],
                           runtime_context: RuntimeContext) -> JobsGeneratorType:
        # Same naming rule as CommandLineTool.job, for jobs that carry no name of their own.
        stem = runtime_context.name or shortname(str(tool.tool.get("id", "job")))
        outside = outside_files(job_order, self._roots)
        if outside:
            raise WorkflowException(f"{stem}: its inputs name files outside the run and the allowed directories: "
                                    + ", ".join(outside))
        jobs = original_job(job_order, output_callbacks, runtime_context)
        try:
            for runnable in jobs:
                # None means "waiting for other jobs"; the executor needs to see it.
                if runnable is not None:
                    self._instrument(runnable, stem)
                yield runnable
        finally:
            jobs.close()

    def _instrument(self, job: JobsType, stem: str) -> None:
        # The executor checks isinstance() and assigns attributes on the job, so we
        # patch this instance rather than hand it a proxy.
        name = job.name if isinstance(job, JobBase) else uniquename(stem)
        original_run = job.run

        def run(runtimeContext: RuntimeContext, tmpdir_lock: Optional[threading.Lock] = None) -> None:
            self._run(job, name, original_run, runtimeContext, tmpdir_lock)

        job.run = run  # type: ignore[method-assign]

    def _failed(self, exc: BaseException) -> BaseException:
        with self._failure_lock:
            if self.failure is None:
                self.failure = exc
        return exc

    def _run(self, job: JobsType, name: str, original_run: Callable[..., None],
             runtime_context: RuntimeContext, tmpdir_lock: Optional[threading.Lock]) -> None:
        cmd = [str(arg) for arg in job.command_line] if isinstance(job, JobBase) else []
        try:
            task_id = self._writer.start(name, cmd)
        except Exception as exc:
            raise self._failed(exc)
        outcome = _Outcome()
        error_status: Optional[str] = None
        streams = contextlib.ExitStack()
        try:
            try:
                stdout = streams.enter_context(open(task_log_path(self._run_dir, task_id, "stdout"), "wb"))
                stderr = streams.enter_context(open(task_log_path(self._run_dir, task_id, "stderr"), "wb"))
            except Exception as exc:
                raise self._failed(exc)
            self._observe(job, outcome, name, self._roots)
            # A per-job copy: parallel jobs share the executor's context.
            context = runtime_context.copy()
            context.default_stdout = stdout
            context.default_stderr = stderr
            original_run(context, tmpdir_lock)
        except Exception:
            error_status = "permanentFail"
            raise
        except BaseException:  # SystemExit from cwltool's SIGTERM handler, KeyboardInterrupt
            error_status = "killed"
            raise
        finally:
            # Closed before the end event, so a reader that sees it sees the whole logs.
            streams.close()
            exit_code = _exit_code(outcome.process)
            try:
                self._writer.end(task_id, exit_code, outcome.status or error_status)
            except Exception as exc:
                self._failed(exc)
                if error_status is None:
                    raise

    @staticmethod
    def _observe(job: JobsType, outcome: _Outcome, name: str, roots: Sequence[str]) -> None:
        callback = getattr(job, "output_callback", None)  # a WorkflowJob reports through its steps
        if callback is not None:
            def output_callback(out: Optional[CWLObjectType], status: str) -> None:
                outside = outside_files(out, roots)
                if outside:
                    print(f"[job {name}] its outputs name files outside the run and the allowed directories: "
                          + ", ".join(outside) + "; the job fails", file=sys.stderr, flush=True)
                    out, status = {}, "permanentFail"
                outcome.status = status
                callback(out, status)

            job.output_callback = output_callback  # type: ignore[union-attr]
        if isinstance(job, JobBase):
            # Every way of running a tool (plain, Docker, Podman, Singularity, udocker,
            # job script) goes through _execute, but only some pass a monitor; so we
            # always pass one, chained to theirs, to get hold of the Popen.
            execute = job._execute

            def _execute(runtime: List[str], env: Any, runtimeContext: RuntimeContext,
                         monitor_function: Optional[Callable[["subprocess.Popen[Any]"], None]] = None) -> None:
                def monitor(sproc: "subprocess.Popen[Any]") -> None:
                    outcome.process = sproc
                    if monitor_function is not None:
                        monitor_function(sproc)

                execute(runtime, env, runtimeContext, monitor)

            job._execute = _execute  # type: ignore[method-assign]


class OutputCapture(io.TextIOBase):
    """cwltool's stdout: passes text on to our stdout as UTF-8 and keeps a copy."""

    def __init__(self, target: Union[BinaryIO, IO[str]]) -> None:
        super().__init__()
        self._target = target
        self._parts: List[str] = []

    def writable(self) -> bool:
        """Always writable."""
        return True

    def write(self, text: str) -> int:
        """Forward and keep ``text``."""
        self._parts.append(text)
        if isinstance(self._target, io.TextIOBase):
            self._target.write(text)
        else:
            self._target.write(text.encode("utf-8"))  # type: ignore[arg-type]
        return len(text)

    def flush(self) -> None:
        """Flush the target."""
        self._target.flush()

    def getvalue(self) -> str:
        """Everything written so far."""
        return "".join(self._parts)


def write_outputs(path: Path, text: str) -> None:
    """Write cwltool's output object text to ``path`` atomically, after checking it is a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RunnerError(f"cwltool succeeded but its output is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RunnerError("cwltool succeeded but its output is not a JSON object")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _version() -> str:
    # cwltool's default names sys.argv[0], which is this file rather than cwltool.
    return f"cwltool {importlib.metadata.version('cwltool')} in wes_arvados.local.runner"


def _stdout_target() -> Union[BinaryIO, IO[str]]:
    sys.stdout.flush()
    return getattr(sys.stdout, "buffer", sys.stdout)


def execute_run(run: RunDir) -> int:
    """Run cwltool for ``run`` and return its exit status; raise on our own failures."""
    request = load_engine_request(run)
    for directory in (run.outputs, run.tmp, run.tasks):
        directory.mkdir(parents=True, exist_ok=True)
    # cwltool puts some things in the working directory (Singularity image pulls).
    os.chdir(run.root)
    args = parse_cwltool_arguments(cwltool_arguments(run, request))
    config = load_config()
    # cwltool fetches the http(s) documents and inputs a run names, and follows their redirects, with the server's
    # network position: every name it resolves is checked as the server's own fetches are.
    config.fetch_guard.guard_resolution()
    writer = TaskLogWriter(run.root)
    recorder = JobRecorder(writer, run.root, config.allowed_dirs)
    loading_context = LoadingContext(vars(args))
    loading_context.construct_tool_object = recorder.make_tool  # type: ignore[assignment]
    capture = OutputCapture(_stdout_target())
    try:
        # run(), not main(): it installs cwltool's SIGTERM handler, which kills the
        # tools, and kills leftovers when main() returns.
        code = cwltool.main.run(args=args, stdout=capture, loadingContext=loading_context,
                                versionfunc=_version)
    finally:
        writer.close()
    if recorder.failure is not None:
        raise RunnerError(f"recording tasks failed: {type(recorder.failure).__name__}: {recorder.failure}")
    if code == 0:
        write_outputs(run.outputs_json, capture.getvalue())
    return int(code)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: ``python -m wes_arvados.local.runner RUN_DIR``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m wes_arvados.local.runner RUN_DIR", file=sys.stderr)
        return EX_SOFTWARE
    try:
        return execute_run(RunDir(Path(argv[0]).resolve()))
    except Exception as exc:  # SystemExit (bad cwltool arguments, SIGTERM) keeps cwltool's status
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"wes_arvados.local.runner: internal error: {message}", file=sys.stderr, flush=True)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
