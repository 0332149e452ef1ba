"""Acceptance: wes-client (PyPI wes-service) can submit, poll and read logs of a run.

The real `wes-client` command and its Python API (`wes_client.util.WESClient`),
both from .venv-peers (`make peers`), talk to a real server.  The workflow is
tests/conformance/data/wes_client/workflow.cwl: two steps whose tools are sent
as attachments.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import requests

from ..conformance.suite import PEERS_BIN, PEERS_PYTHON, start_server
from ..wes import TERMINAL, WesServer, require

DATA = Path(__file__).resolve().parents[1] / "conformance" / "data" / "wes_client"
WES_CLIENT = PEERS_BIN / "wes-client"
SHOUTED = b"HELLO WES-CLIENT\n"
WES_STATES = {"UNKNOWN", "QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "COMPLETE", "EXECUTOR_ERROR",
              "SYSTEM_ERROR", "CANCELED", "CANCELING", "PREEMPTED"}
ATTACHMENTS = ",".join(str(DATA / "tools" / name) for name in ("shout.cwl", "count.cwl"))

# Submits with WESClient.run (which returns at once), then polls the status
# until the run ends, the way a program using the library would; prints the
# states it saw and the final RunLog as JSON.
POLL_SCRIPT = r"""
import json, sys, time
from wes_client.util import WESClient
host, workflow, params, attachments = sys.argv[1:5]
client = WESClient({"auth": {}, "proto": "http", "host": host})
run_id = client.run(workflow, params, attachments.split(","))["run_id"]
states = []
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    state = client.get_run_status(run_id)["state"]
    if not states or states[-1] != state:
        states.append(state)
    if state in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"):
        break
    time.sleep(0.2)
listed = [r["run_id"] for r in client.list_runs()["runs"]]
json.dump({"run_id": run_id, "states": states, "log": client.get_run_log(run_id), "listed": listed}, sys.stdout)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WesServer]:
    """A server of its own for this module's runs."""
    require(WES_CLIENT.exists() and PEERS_PYTHON.exists(), f"{WES_CLIENT} is missing: run `make peers`")
    srv = start_server(WesServer(tmp_path_factory.mktemp("wes-client") / "state", workers=2))
    try:
        yield srv
    finally:
        srv.stop()
        srv.kill_runs()


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WES_API_") and k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(PEERS_BIN), env.get("PATH", "")])
    return env


def wes_client(server: WesServer, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `wes-client --host 127.0.0.1:PORT --proto http ARGS...`."""
    cmd = [str(WES_CLIENT), f"--host=127.0.0.1:{server.port}", "--proto=http", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(DATA), env=_env(),
                          stdin=subprocess.DEVNULL)


def _json(proc: subprocess.CompletedProcess) -> Any:
    assert proc.stdout.strip(), f"wes-client printed nothing on stdout; stderr:\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(
            f"wes-client's stdout is not JSON ({exc}):\n{proc.stdout}\nstderr:\n{proc.stderr}") from exc


def _sha1(data: bytes) -> str:
    return "sha1$" + hashlib.sha1(data).hexdigest()


@pytest.fixture(scope="module")
def finished(server: WesServer) -> Dict[str, Any]:
    """`wes-client` submitting workflow.cwl with its tools attached and waiting for the end."""
    proc = wes_client(server, f"--attachments={ATTACHMENTS}", str(DATA / "workflow.cwl"), str(DATA / "job.yaml"))
    match = re.search(r"Workflow run id is (\S+)", proc.stderr)
    assert match, f"wes-client did not say the run id (exit {proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return {"proc": proc, "run_id": match.group(1)}


def test_info_names_cwl(server: WesServer) -> None:
    proc = wes_client(server, "--info")
    assert proc.returncode == 0, proc.stderr
    info = _json(proc)
    assert "v1.2" in info["workflow_type_versions"]["CWL"]["workflow_type_version"]
    assert "1.1.0" in info["supported_wes_versions"]


def test_run_waits_for_completion_and_prints_outputs(server: WesServer, finished: Dict[str, Any]) -> None:
    proc, run_id = finished["proc"], finished["run_id"]
    assert proc.returncode == 0, f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
    assert "State is COMPLETE" in proc.stderr
    outputs = _json(proc)
    assert set(outputs) == {"shouted", "size"}
    shouted = outputs["shouted"]
    assert shouted["class"] == "File"
    assert shouted["basename"] == "shouted.txt"
    assert shouted["size"] == len(SHOUTED)
    assert shouted["checksum"] == _sha1(SHOUTED)
    # Output locations are URLs of the run's files on the server.
    assert shouted["location"].startswith(f"{server.url}/runs/{run_id}/")
    response = requests.get(shouted["location"], timeout=30)
    assert response.status_code == 200
    assert response.content == SHOUTED
    size = requests.get(outputs["size"]["location"], timeout=30)
    assert size.status_code == 200 and size.text.split() == [str(len(SHOUTED))]


def test_run_prints_the_engine_log(finished: Dict[str, Any]) -> None:
    stderr = finished["proc"].stderr
    assert "Run log:" in stderr
    assert "[step shout] completed success" in stderr
    assert "Final process status is success" in stderr


def test_get_returns_the_run_log(server: WesServer, finished: Dict[str, Any]) -> None:
    run_id = finished["run_id"]
    proc = wes_client(server, f"--get={run_id}")
    assert proc.returncode == 0, proc.stderr
    log = _json(proc)
    assert log["run_id"] == run_id
    assert log["state"] == "COMPLETE"
    assert log["run_log"]["exit_code"] == 0
    assert log["run_log"]["start_time"] and log["run_log"]["end_time"]
    assert log["request"]["workflow_url"] == "workflow.cwl"
    assert log["request"]["workflow_type"] == "CWL"
    assert log["request"]["workflow_type_version"] == "v1.2"
    assert log["request"]["workflow_params"] == {"name": "wes-client"}
    assert log["outputs"] == _json(finished["proc"])


def test_log_prints_the_engine_stderr(server: WesServer, finished: Dict[str, Any]) -> None:
    proc = wes_client(server, f"--log={finished['run_id']}")
    assert proc.returncode == 0, proc.stderr
    assert "[step shout] completed success" in proc.stdout
    assert "[step count] completed success" in proc.stdout
    assert "Final process status is success" in proc.stdout


def test_list_shows_the_run(server: WesServer, finished: Dict[str, Any]) -> None:
    proc = wes_client(server, "--list")
    assert proc.returncode == 0, proc.stderr
    runs = {r["run_id"]: r for r in _json(proc)["runs"]}
    assert runs[finished["run_id"]]["state"] == "COMPLETE"


def test_failed_run_is_reported(server: WesServer) -> None:
    proc = wes_client(server, str(DATA / "fail.cwl"), str(DATA / "empty.json"))
    assert proc.returncode == 1, f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
    assert "State is EXECUTOR_ERROR" in proc.stderr
    assert _json(proc) == {}
    run_id = re.search(r"Workflow run id is (\S+)", proc.stderr).group(1)  # type: ignore[union-attr]
    log = _json(wes_client(server, f"--get={run_id}"))
    assert log["state"] == "EXECUTOR_ERROR"
    assert log["run_log"]["exit_code"] not in (None, 0)
    engine_log = wes_client(server, f"--log={run_id}").stdout
    assert "permanentFail" in engine_log
    # The tool's own stderr is in its task's log (WES 1.1 tasks).
    tasks = requests.get(log["task_logs_url"], timeout=30).json()["task_logs"]
    assert len(tasks) == 1 and tasks[0]["exit_code"] == 3
    assert "doomed" in requests.get(tasks[0]["stderr"], timeout=30).text


def test_no_wait_then_python_api_polls(server: WesServer) -> None:
    # The CLI's --no-wait prints only the run id ...
    submitted = wes_client(server, "--no-wait", f"--attachments={ATTACHMENTS}", str(DATA / "workflow.cwl"),
                           str(DATA / "job.yaml"))
    assert submitted.returncode == 0, submitted.stderr
    cli_run_id = submitted.stdout.strip()
    assert re.fullmatch(r"[\w-]+", cli_run_id), submitted.stdout
    # ... and the library submits, polls the status and reads the RunLog.
    params = json.dumps({"name": "python api"})
    proc = subprocess.run([str(PEERS_PYTHON), "-c", POLL_SCRIPT, f"127.0.0.1:{server.port}", str(DATA / "workflow.cwl"),
                           params, ATTACHMENTS], capture_output=True, text=True, timeout=300, env=_env(),
                          cwd=str(DATA), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    states = result["states"]
    assert set(states) <= WES_STATES
    assert states[-1] == "COMPLETE", states
    assert not TERMINAL.intersection(states[:-1]), states
    log = result["log"]
    assert log["run_id"] == result["run_id"] and log["state"] == "COMPLETE"
    loud = b"HELLO PYTHON API\n"
    assert log["outputs"]["shouted"]["checksum"] == _sha1(loud)
    assert requests.get(log["outputs"]["shouted"]["location"], timeout=30).content == loud
    assert {cli_run_id, result["run_id"]} <= set(result["listed"])
    # The run submitted without waiting finishes too, as `--get` shows.
    deadline = time.monotonic() + 240
    log = _json(wes_client(server, f"--get={cli_run_id}"))
    while log["state"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        log = _json(wes_client(server, f"--get={cli_run_id}"))
    assert log["state"] == "COMPLETE", log
    assert log["outputs"]["shouted"]["checksum"] == _sha1(SHOUTED)
