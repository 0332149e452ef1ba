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


def run_smoke(script: str) -> str:
    """Run `benchmarks/<script> --smoke` with this interpreter; fail unless it exits 0; return its stdout."""
    argv = [sys.executable, str(BENCHMARKS / script), "--smoke"]
    # Its own session, so that a hung run's registry goes with it.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{script} --smoke did not finish in {TIMEOUT} s:\n{stdout}\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{script} --smoke exited {proc.returncode}:\n{stdout}\n{stderr[-3000:]}"
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
