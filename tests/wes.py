"""Test helpers: a real `wes-arvados serve` process and a small WES client."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}
IN_CI = os.environ.get("CI", "").lower() == "true"
# The fetch_allow the test servers get: every loopback address (`WesServer(env={"WES_ARVADOS_FETCH_ALLOW": ""})`
# for the default, nothing).
LOOPBACK = "127.0.0.0/8,::1"


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, except in CI where that is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI cannot run this test: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(server_url: str) -> Samples:
    """The server's /metrics, parsed: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(server_url.split("/ga4gh/")[0] + "/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there yet, as a counter not yet counted)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class WesServer:
    """`wes-arvados serve` in a subprocess, on its own port and state directory."""

    def __init__(self, state_dir: Path, port: Optional[int] = None, workers: int = 1,
                 max_concurrent_runs: int = 2, extra_args: Iterable[str] = (), env: Optional[dict] = None) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.workers = workers
        self.max_concurrent_runs = max_concurrent_runs
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = state_dir.parent / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        """The WES base URL."""
        return f"http://127.0.0.1:{self.port}/ga4gh/wes/v1"

    def start(self, timeout: float = 60) -> "WesServer":
        """Start the server and wait until service-info answers."""
        cmd = [sys.executable, "-m", "wes_arvados", "serve", "--port", str(self.port), "--state-dir", str(self.state_dir),
               "--workers", str(self.workers), "--max-concurrent-runs", str(self.max_concurrent_runs), *self.extra_args]
        # The tests' registries, token servers and workflow_urls are on loopback: allow-listed unless a test says.
        env = dict(os.environ, WES_ARVADOS_VALIDATE_RESPONSES="true", WES_ARVADOS_FETCH_ALLOW=LOOPBACK)
        env.update(self.env or {})
        env.pop("WES_ARVADOS_RESOLVED_CONFIG", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/service-info", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or a worker still booting
                pass
            time.sleep(0.2)
        self.stop()  # never leave a half-started server behind
        raise RuntimeError(f"server did not answer in {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Stop the server process (not the runs' supervisors); return its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill_runs(self) -> None:
        """Kill every run supervisor and its engine left running (test clean-up)."""
        db = self.state_dir / "wes.sqlite"
        if not db.exists():
            return
        with sqlite3.connect(str(db)) as conn:
            rows = conn.execute("SELECT supervisor_pid, engine_pid FROM runs").fetchall()
        for pgid in {p for row in rows for p in row if p}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class WesClient:
    """Just enough of a WES client for tests, with plain requests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def submit(self, workflow: Path, params: Optional[Dict[str, Any]] = None, attachments: Iterable[Path] = (),
               base: Optional[Path] = None, headers: Optional[Dict[str, str]] = None,
               **fields: Any) -> requests.Response:
        """POST /runs with the workflow and attachments named relative to `base`."""
        base = base or workflow.parent
        files: List[Tuple[str, Tuple[str, bytes]]] = []
        for path in [workflow, *attachments]:
            files.append(("workflow_attachment", (str(path.relative_to(base)), path.read_bytes())))
        data = {
            "workflow_url": str(workflow.relative_to(base)),
            "workflow_type": "CWL",
            "workflow_type_version": "v1.2",
            "workflow_params": json.dumps(params or {}),
        }
        data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
        data = {k: v for k, v in data.items() if v is not None}
        return self.http.post(self.url + "/runs", data=data, files=files, headers=headers, timeout=60)

    def run(self, workflow: Path, params: Optional[Dict[str, Any]] = None, **kw: Any) -> str:
        """Submit and return the run id, failing the test on an error response."""
        response = self.submit(workflow, params, **kw)
        assert response.status_code == 200, response.text
        return response.json()["run_id"]

    def get(self, path: str, **kw: Any) -> requests.Response:
        """GET a path below the WES base URL."""
        return self.http.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        """POST to a path below the WES base URL."""
        return self.http.post(self.url + path, timeout=30, **kw)

    def status(self, run_id: str) -> str:
        """The run's state."""
        response = self.get(f"/runs/{run_id}/status")
        assert response.status_code == 200, response.text
        return response.json()["state"]

    def log(self, run_id: str) -> Dict[str, Any]:
        """The RunLog."""
        response = self.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, run_id: str, timeout: float = 180, states: Iterable[str] = TERMINAL) -> Dict[str, Any]:
        """Poll until the run reaches one of `states`; return its RunLog."""
        states = set(states)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status(run_id) in states:
                return self.log(run_id)
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} still {self.status(run_id)} after {timeout} s: {self.log(run_id)}")
