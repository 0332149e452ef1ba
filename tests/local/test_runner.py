"""The local runner with real cwltool: exit codes, outputs.json, and the task log."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
from cwltool.argparser import arg_parser

from wes_arvados.local.engine_options import CWLTOOL, EngineRequest, cwltool_arguments
from wes_arvados.local.rundir import RunDir
from wes_arvados.local.runner import parse_cwltool_arguments
from wes_arvados.local.tasklog import (
    TASKS_FILE,
    TaskLogWriter,
    read_tasks,
    task_log_path,
)

from ..wes import require

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
WORDS = ["alpha", "beta", "gamma"]
# cwltool evaluates the ExpressionTool's JavaScript with Node.js.
needs_node = pytest.mark.usefixtures("node")


@pytest.fixture
def node() -> None:
    """CWL expressions need Node.js; missing it is a failure in CI."""
    require(bool(shutil.which("node") or shutil.which("nodejs")), "needs Node.js for CWL expressions")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # An operator's CWLTOOL_OPTIONS would change what these tests run.
    env.pop("CWLTOOL_OPTIONS", None)
    return env


def prepare(run_dir: Path, workflow: str, job: Dict[str, Any], options: Sequence[str] = ()) -> None:
    """Write job.json and engine.json the way the server does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    engine = {"workflow": str(DATA / workflow), "job": str(run_dir / "job.json"), "options": list(options)}
    (run_dir / "engine.json").write_text(json.dumps(engine), encoding="utf-8")


def start_runner(run_dir: Path) -> subprocess.Popen:
    """Start the runner as the supervisor does: own session, streams in the run directory."""
    with open(run_dir / "stdout.log", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "wes_arvados.local.runner", str(run_dir)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=run_dir, env=_env(), start_new_session=True,
        )


def run_runner(run_dir: Path, workflow: str, job: Dict[str, Any], options: Sequence[str] = ()) -> int:
    """Prepare the run directory, run the runner to completion and return its exit code."""
    prepare(run_dir, workflow, job, options)
    proc = start_runner(run_dir)
    try:
        return proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def stderr_log(run_dir: Path) -> str:
    return (run_dir / "stderr.log").read_text(encoding="utf-8", errors="replace")


def task_output(run_dir: Path, task_id: str, stream: str) -> str:
    return task_log_path(run_dir, task_id, stream).read_text(encoding="utf-8")


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


def sha1(data: bytes) -> str:
    return "sha1$" + hashlib.sha1(data).hexdigest()


def assert_output_file(run_dir: Path, obj: Dict[str, Any], basename: str, content: bytes) -> None:
    path = run_dir / "outputs" / basename
    assert obj["class"] == "File"
    assert obj["location"] == path.as_uri()
    assert obj["basename"] == basename
    assert obj["size"] == len(content)
    assert obj["checksum"] == sha1(content)
    assert path.read_bytes() == content


def assert_timing(tasks: List[Dict[str, Any]]) -> None:
    for task in tasks:
        assert parse_time(task["start_time"]) <= parse_time(task["end_time"]), task
    starts = [parse_time(t["start_time"]) for t in tasks]
    assert starts == sorted(starts), "ids must follow start order"


# --- runs of real CWL ------------------------------------------------------


def test_single_tool_output_and_task_logs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "echo.cwl", {"message": "hello"})
    assert code == 0, stderr_log(run_dir)

    outputs = json.loads((run_dir / "outputs.json").read_text(encoding="utf-8"))
    assert set(outputs) == {"result"}
    assert_output_file(run_dir, outputs["result"], "result.txt", b"hello\n")
    assert outputs["result"]["path"] == str(run_dir / "outputs" / "result.txt")
    assert not (run_dir / "outputs.json.tmp").exists()
    # cwltool still prints the output object on stdout.
    assert json.loads((run_dir / "stdout.log").read_text(encoding="utf-8")) == outputs

    tasks = read_tasks(run_dir)
    assert len(tasks) == 1
    task = tasks[0]
    assert task["id"] == "0001"
    assert task["name"] == "echo.cwl"
    assert task["cmd"][:2] == ["sh", "-c"] and task["cmd"][-1] == "hello"
    assert task["exit_code"] == 0
    assert task["status"] == "success"
    assert_timing(tasks)
    assert task_output(run_dir, "0001", "stdout") == "stdout of echo: hello\n"
    assert task_output(run_dir, "0001", "stderr") == "stderr of echo: hello\n"
    # The tool's output went to the task files, not to the engine's streams.
    # (The logged command line holds "$1", the printed text the expanded word.)
    for log in ("stdout.log", "stderr.log"):
        text = (run_dir / log).read_text(encoding="utf-8")
        assert "stdout of echo: hello" not in text and "stderr of echo: hello" not in text


def test_tool_capturing_its_own_streams(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "captured.cwl", {})
    assert code == 0, stderr_log(run_dir)
    outputs = json.loads((run_dir / "outputs.json").read_text(encoding="utf-8"))
    assert_output_file(run_dir, outputs["out"], "out.txt", b"captured out\n")
    assert_output_file(run_dir, outputs["err"], "err.txt", b"captured err\n")
    [task] = read_tasks(run_dir)
    assert task["exit_code"] == 0 and task["status"] == "success"
    # The task's files exist but stay empty: the tool's streams went to its outputs.
    assert task_output(run_dir, task["id"], "stdout") == ""
    assert task_output(run_dir, task["id"], "stderr") == ""


@needs_node
@pytest.mark.parametrize("options", [[], ["--parallel"]], ids=["serial", "parallel"])
def test_workflow_with_scatter_and_expression(tmp_path: Path, options: List[str]) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "workflow.cwl", {"message": "hello", "words": WORDS}, options)
    assert code == 0, stderr_log(run_dir)

    outputs = json.loads((run_dir / "outputs.json").read_text(encoding="utf-8"))
    assert_output_file(run_dir, outputs["greeting"], "greeting.txt", b"hello\nworld\n")
    for obj, word in zip(outputs["shouted"], WORDS):
        assert_output_file(run_dir, obj, f"{word}.txt", word.upper().encode())
    assert outputs["names"] == [f"{w}.txt" for w in WORDS]
    assert outputs["count"] == 3

    tasks = read_tasks(run_dir)
    assert [t["id"] for t in tasks] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    by_name = {t["name"]: t for t in tasks}
    assert sorted(by_name) == ["first", "second", "shout", "shout_2", "shout_3", "summarize"]
    assert_timing(tasks)
    for name, task in by_name.items():
        assert task["status"] == "success", task
        if name == "summarize":  # the ExpressionTool: no process, no command line
            assert task["cmd"] == [] and task["exit_code"] is None
        else:
            assert task["cmd"][:2] == ["sh", "-c"] and task["exit_code"] == 0, task

    # Each task's files hold exactly what that task printed.
    first, second, summarize = by_name["first"], by_name["second"], by_name["summarize"]
    assert task_output(run_dir, first["id"], "stdout") == "stdout of echo: hello\n"
    assert task_output(run_dir, first["id"], "stderr") == "stderr of echo: hello\n"
    assert task_output(run_dir, second["id"], "stdout") == "hello\n"
    assert task_output(run_dir, second["id"], "stderr") == "stderr of cat\n"
    assert task_output(run_dir, summarize["id"], "stdout") == ""
    assert task_output(run_dir, summarize["id"], "stderr") == ""
    scatter = [by_name[n] for n in ("shout", "shout_2", "shout_3")]
    assert sorted(t["cmd"][-1] for t in scatter) == WORDS
    for task in scatter:
        word = task["cmd"][-1]
        assert task_output(run_dir, task["id"], "stdout") == f"stdout of shout: {word}\n"
        assert task_output(run_dir, task["id"], "stderr") == f"stderr of shout: {word}\n"
    # A dependent job starts only after its input's job was recorded as ended.
    assert parse_time(second["start_time"]) >= parse_time(first["end_time"])
    assert parse_time(summarize["start_time"]) >= max(parse_time(t["end_time"]) for t in scatter)


@needs_node
def test_nested_subworkflow_jobs_are_tasks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "nested.cwl", {"message": "hello", "words": WORDS})
    assert code == 0, stderr_log(run_dir)
    outputs = json.loads((run_dir / "outputs.json").read_text(encoding="utf-8"))
    assert outputs["count"] == 3
    assert_output_file(run_dir, outputs["extra"], "result.txt", b"outer\n")
    tasks = read_tasks(run_dir)
    by_name = {t["name"]: t for t in tasks}
    assert len(tasks) == 7
    assert sorted(by_name) == ["first", "outer_echo", "second", "shout", "shout_2", "shout_3", "summarize"]
    assert all(t["status"] == "success" for t in tasks)
    assert task_output(run_dir, by_name["outer_echo"]["id"], "stdout") == "stdout of echo: outer\n"
    assert task_output(run_dir, by_name["first"]["id"], "stdout") == "stdout of echo: hello\n"


def test_failing_tool(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "fail.cwl", {})
    assert code == 1, stderr_log(run_dir)
    assert not (run_dir / "outputs.json").exists()
    assert not (run_dir / "outputs.json.tmp").exists()
    tasks = read_tasks(run_dir)
    assert len(tasks) == 1
    assert tasks[0]["name"] == "fail.cwl"
    assert tasks[0]["exit_code"] == 1
    assert tasks[0]["status"] == "permanentFail"
    assert_timing(tasks)
    assert task_output(run_dir, "0001", "stdout") == "about to fail\n"
    assert task_output(run_dir, "0001", "stderr") == "failing now\n"


def test_unsupported_requirement_exits_33(tmp_path: Path) -> None:
    # DockerRequirement under `requirements` with --no-container: cwltool's
    # UnsupportedRequirement at job creation, so Docker itself is never used.
    run_dir = tmp_path / "run"
    code = run_runner(run_dir, "needs_docker.cwl", {}, ["--no-container"])
    assert code == 33, stderr_log(run_dir)
    assert "unsupported feature" in stderr_log(run_dir)
    assert not (run_dir / "outputs.json").exists()
    assert read_tasks(run_dir) == []


def test_sigterm_is_cwltools(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    prepare(run_dir, "sleep.cwl", {})
    proc = start_runner(run_dir)
    try:
        deadline = time.monotonic() + 120
        stdout = task_log_path(run_dir, "0001", "stdout")
        while not (stdout.exists() and stdout.read_text()):
            assert proc.poll() is None, stderr_log(run_dir)
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        # cwltool's handler kills the tool, then exits with the signal number.
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == signal.SIGTERM, stderr_log(run_dir)
    [task] = read_tasks(run_dir)
    assert task["end_time"] is not None
    # None when the signal came just as cwltool reaped the tool, losing its status.
    assert task["exit_code"] in (-signal.SIGTERM, None)
    assert task["status"] == "killed"
    assert task_output(run_dir, "0001", "stdout") == "sleeping\n"
    assert not (run_dir / "outputs.json").exists()


def test_bad_engine_json_is_a_runner_failure(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "engine.json").write_text('{"workflow": 1}', encoding="utf-8")
    proc = start_runner(run_dir)
    assert proc.wait(timeout=120) == 70
    lines = stderr_log(run_dir).splitlines()
    assert len(lines) == 1 and "internal error" in lines[0]


# --- arguments -------------------------------------------------------------


def test_cwltool_arguments(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    request = EngineRequest("/w/wf.cwl#main", "/w/job.json", ["--parallel", "--eval-timeout", "30"])
    argsl = cwltool_arguments(run, request)
    assert argsl[:3] == ["--parallel", "--eval-timeout", "30"]
    assert argsl[-2:] == ["/w/wf.cwl#main", "/w/job.json"]
    args = parse_cwltool_arguments(argsl)
    assert args.parallel and args.eval_timeout == 30
    assert args.outdir == str(tmp_path / "outputs")
    assert args.tmpdir_prefix == str(tmp_path / "tmp" / "job-")
    assert args.tmp_outdir_prefix == str(tmp_path / "tmp" / "out-")
    assert args.enable_color is False
    assert args.doc_cache is False
    assert args.enable_ga4gh_tool_registry is False
    assert args.workflow == "/w/wf.cwl#main" and args.job_order == ["/w/job.json"]


def test_client_may_choose_doc_cache(tmp_path: Path) -> None:
    argsl = cwltool_arguments(RunDir(tmp_path), EngineRequest("/w/wf.cwl", "/w/job.json", ["--doc-cache"]))
    assert "--no-doc-cache" not in argsl
    assert parse_cwltool_arguments(argsl).doc_cache is True


# --- the task log ----------------------------------------------------------


def test_read_tasks_tolerates_truncated_last_line(tmp_path: Path) -> None:
    lines = [
        {"event": "start", "id": "0001", "name": "a", "cmd": ["echo", "a"], "start_time": "2026-11-27T18:00:00.000001Z"},
        {"event": "start", "id": "0002", "name": "b", "cmd": [], "start_time": "2026-11-27T18:00:00.000002Z"},
        {"event": "end", "id": "0001", "end_time": "2026-11-27T18:00:01.000000Z", "exit_code": 0, "status": "success"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    text += json.dumps({"event": "end", "id": "0002", "end_time": "x", "exit_code": 3, "status": "permanentFail"})[:30]
    (tmp_path / TASKS_FILE).write_text(text, encoding="utf-8")

    tasks = read_tasks(tmp_path)
    assert tasks == [
        {"id": "0001", "name": "a", "cmd": ["echo", "a"], "start_time": "2026-11-27T18:00:00.000001Z",
         "end_time": "2026-11-27T18:00:01.000000Z", "exit_code": 0, "status": "success"},
        {"id": "0002", "name": "b", "cmd": [], "start_time": "2026-11-27T18:00:00.000002Z",
         "end_time": None, "exit_code": None, "status": None},
    ]

    # A writer reopening the file starts on a fresh line and continues the ids.
    writer = TaskLogWriter(tmp_path)
    try:
        task_id = writer.start("c", ["true"])
        writer.end(task_id, 0, "success")
    finally:
        writer.close()
    assert task_id == "0003"
    assert [t["id"] for t in read_tasks(tmp_path)] == ["0001", "0002", "0003"]
    assert read_tasks(tmp_path)[2]["status"] == "success"


def test_read_tasks_without_file(tmp_path: Path) -> None:
    assert read_tasks(tmp_path) == []


def test_writer_ids_are_unique_across_threads(tmp_path: Path) -> None:
    writer = TaskLogWriter(tmp_path)
    ids: List[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            task_id = writer.start(f"t{n}_{i}", ["x"])
            with lock:
                ids.append(task_id)
            writer.end(task_id, i, "success")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sorted(ids) == [f"{n:04d}" for n in range(1, 201)]
    tasks = read_tasks(tmp_path)
    assert [t["id"] for t in tasks] == sorted(ids)
    assert all(t["end_time"] is not None for t in tasks)
    lines = (tmp_path / TASKS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 400 and all(json.loads(line) for line in lines)


def test_every_cwltool_option_the_server_names_is_one_cwltool_knows() -> None:
    known = arg_parser()._option_string_actions
    table = CWLTOOL
    assert [o for o in [*table.flags, *table.valued, *table.server_controlled, *table.refused] if o not in known] == []
