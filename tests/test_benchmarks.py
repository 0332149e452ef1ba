"""Every benchmark script still runs end to end: each one's `--smoke` mode, as a subprocess.

A smoke run builds a tiny image in a throw-away loopback registry and runs every case
once, the peer included. These tests pin that it exits 0 and prints a row for every
case of its table; never how fast anything was.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from typing import List

import pytest

from .images.docker import DockerDaemon
from .images.registry import REGISTRY_BIN
from .wes import IN_CI, ROOT, require

BENCHMARKS = ROOT / "benchmarks"
# A smoke run takes seconds; this only stops a hung one from holding the suite.
TIMEOUT = 100

PULL_CASES = [
    "skopeo copy docker:// docker-archive:",
    "wes-arvados pull (uncompressed, cold cache)",
    "wes-arvados pull --layers=compressed (cold)",
    "wes-arvados pull, re-pull of the unchanged image",
    "wes-arvados start-up alone (pull --help)",
]
KEEP_CASES = [
    "wes-arvados pull --arvados (cold cache, empty Keep)",
    "wes-arvados pull --arvados again (unchanged)",
]
SUBMIT_CASES = [
    "POST /runs -> committed, images not in Keep",
    "POST /runs -> committed, images in Keep",
    "arvados-cwl-runner --submit --no-wait (in Keep)",
]
KEEP_PEER_CASES = [
    "(docker pull, before arv-keepdocker)",
    "arv-keepdocker (docker save + arv-put)",
]
API_SCRIPT = "api/api_benchmark.py"
API_ENDPOINTS = ["GetRunStatus", "GetRunLog", "ListRuns", "service-info"]
API_SERVERS = ["wes-arvados", "sapporo"]  # the smoke run's peer; wes-service only in the full run
# Making the peer's virtualenv (pip install sapporo and cwltool) is not the smoke run's time.
INSTALL_TIMEOUT = 900


def run_smoke(script: str, flag: str = "--smoke", timeout: float = TIMEOUT) -> str:
    """Run `benchmarks/<script> --smoke` with this interpreter; fail unless it exits 0; return its stdout."""
    argv = [sys.executable, str(BENCHMARKS / script), flag]
    # Its own session, so that a hung run's registry goes with it.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{script} {flag} did not finish in {timeout} s:\n{stdout}\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{script} {flag} exited {proc.returncode}:\n{stdout}\n{stderr[-3000:]}"
    return stdout


def assert_table_rows(stdout: str, cases: List[str], header: str = r"^case\s+wall s\s+CPU s\s+RSS MB") -> None:
    """Each case has a row of the table: its name, then figures (whatever they are)."""
    assert re.search(header, stdout, re.M), f"no table header in:\n{stdout}"
    missing = [case for case in cases if not re.search(rf"^\s*{re.escape(case)}\s+\d+\.\d+\s", stdout, re.M)]
    assert missing == [], f"no table row for {missing} in:\n{stdout}"


def require_registry() -> None:
    """Skip without the loopback registry's binary, except in CI where that fails."""
    require(REGISTRY_BIN.exists(), f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")


def test_pull_benchmark_smoke_run_prints_a_row_for_every_case_skopeo_included() -> None:
    require_registry()
    require(shutil.which("skopeo") is not None, "skopeo is missing (apt-get install skopeo)")
    stdout = run_smoke("pull_benchmark.py")
    assert_table_rows(stdout, PULL_CASES)
    assert "gzip inflaters on the first layer" in stdout


def test_keep_benchmark_smoke_run_prints_a_row_for_every_case_arv_keepdocker_included() -> None:
    require_registry()
    no_docker = DockerDaemon.unavailable_reason()
    if no_docker is not None and IN_CI:
        pytest.fail(f"CI cannot run arv-keepdocker, the keep benchmark's peer: {no_docker}")
    stdout = run_smoke("keep_benchmark.py")
    # Without a Docker daemon (outside CI) the script leaves out the peer, and so does this check.
    assert_table_rows(stdout, KEEP_CASES + (KEEP_PEER_CASES if no_docker is None else []))


def test_submit_benchmark_smoke_run_prints_a_row_for_every_case_arvados_cwl_runner_included() -> None:
    require_registry()
    stdout = run_smoke("submit_benchmark.py")
    assert_table_rows(stdout, SUBMIT_CASES, header=r"^case\s+wall s\s+x peer")


def test_api_benchmark_smoke_run_prints_every_endpoint_for_wes_arvados_and_sapporo_and_each_other_table() -> None:
    run_smoke(API_SCRIPT, "--install-only", INSTALL_TIMEOUT)  # Sapporo's virtualenv and wrk, once
    stdout = run_smoke(API_SCRIPT)
    assert re.search(r"^endpoint\s+server\s+req/s\s+p50 ms\s+p99 ms", stdout, re.M), stdout
    missing = [(e, s) for e in API_ENDPOINTS for s in API_SERVERS
               if not re.search(rf"^{re.escape(e)}\s+{re.escape(s)}\s+\d+\.\d\s", stdout, re.M)]
    assert missing == [], f"no row for {missing} in:\n{stdout}"
    rows = ["ListRuns, first page of 50", "GetRunStatus", "RunWorkflow, 4 clients at once",
            "submission to RUNNING, one at a time", "GetRunStatus", "all"]
    # Without a Docker daemon and the registry (outside CI: in CI the script fails) the cached-image row is left out.
    if DockerDaemon.unavailable_reason() is None and REGISTRY_BIN.exists():
        rows.append("submission to RUNNING, image cached")
    for row in rows:
        assert re.search(rf"^{re.escape(row)}\s+\d", stdout, re.M), f"no row {row!r} in:\n{stdout}"
