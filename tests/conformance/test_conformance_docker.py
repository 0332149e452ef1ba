"""CI part of the CWL v1.2 conformance comparison with containers: docker tests, the four images.

A few tests chosen to cover the four Docker Hub images the suite names and what
containers change (an image's entrypoint, dockerOutputDirectory, files staged
into a container, writable directories in it), run with containers
(containers.py): with the project's plain cwltool while the stand-ins are
loaded in the Docker daemon under their docker.io names, then, after they are
removed again, through a WES server whose mirror of docker.io is the loopback
registry holding them, so that the server pulls each image itself.  Every test
that plain cwltool passes must pass through WES, and the server must have
pulled every image.  The counts are printed at the end of pytest's output
(tests/conformance/conftest.py); `make conformance` runs the whole suite so.

Under CI=true a missing Docker or registry fails these tests instead of
skipping them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import requests

from ..images.standins import STANDINS
from ..wes import require
from . import suite
from .containers import Containers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Each test and the image its tool names.
DOCKER_SUBSET: Dict[str, str] = {
    "docker_entrypoint": "docker.io/bash:4.4",  # docker; the command goes through the image's ENTRYPOINT
    "dockeroutputdir": "docker.io/debian:stable-slim",  # docker; dockerOutputDirectory
    "initial_workdir_output": "docker.io/debian:stable-slim",  # docker, initial_work_dir
    "stdout_redirect_docker": "docker.io/debian:stable-slim",  # docker; stdout captured from a container
    "inlinejs_req_expressions": "docker.io/python:3-slim",  # the image's python runs a staged script
    "initial_workdir_empty_writable_docker": "docker.io/alpine:latest",  # a writable directory in the container
}

CWLTOOL_JOBS = 2  # two cores
WES_JOBS = 4  # the server runs 2 at once; the other clients are busy attaching and polling
TIMEOUT = 240  # per test

# cwltool's, toil-wes-cwl-runner's and wes-arvados run's results, and the server's system_logs lines.
Outcomes = Tuple[Dict[str, suite.Result], Dict[str, suite.Result], Dict[str, suite.Result], List[str]]


@pytest.fixture(scope="module")
def docker_subset() -> List[suite.ConformanceTest]:
    """The subset's tests, from the suite beside the project."""
    missing = suite.missing_prerequisites()
    require(not missing, "missing: " + "; ".join(missing))
    return suite.pick(suite.load_tests(), DOCKER_SUBSET)


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    """The stand-ins in a loopback registry, and a Docker daemon."""
    reason = Containers.unavailable_reason()
    require(reason is None, reason or "")
    with Containers(tmp_path_factory.mktemp("containers")) as world:
        yield world


def _system_logs(server_url: str) -> List[str]:
    """The system_logs lines of every run the server has."""
    lines: List[str] = []
    runs = requests.get(server_url + "/runs", params={"page_size": 100}, timeout=30).json()["runs"]
    for run in runs:
        lines += requests.get(f"{server_url}/runs/{run['run_id']}", timeout=30).json().get("system_logs") or []
    return lines


@pytest.fixture(scope="module")
def docker_outcomes(docker_subset: List[suite.ConformanceTest], containers: Containers,
                    tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Plain cwltool with the stand-ins loaded, then a fresh server that must pull them: results, server logs."""
    work = Path(tmp_path_factory.mktemp("conformance-docker"))
    options = suite.engine_options(containers=True)
    clock = suite.Stopwatch()
    containers.load_standins()
    plain = suite.run_cwltest(docker_subset, suite.cwltool_runner(options), work / "cwltool", jobs=CWLTOOL_JOBS,
                              timeout=TIMEOUT, env=containers.env)
    plain_seconds = clock.seconds
    containers.remove_standins()
    server = suite.start_server(containers.wes_server(work / "state", workers=2, max_concurrent_runs=2))
    try:
        clock = suite.Stopwatch()
        wes = suite.run_cwltest(docker_subset, suite.wes_runner(server.url, options), work / "wes", jobs=WES_JOBS,
                                timeout=TIMEOUT)
        wes_seconds = clock.seconds
        clock = suite.Stopwatch()
        # Our client, with no docker on its PATH (only the venvs' scripts): the server has the images.
        ours = suite.run_cwltest(docker_subset, suite.client_runner(server.url, options), work / "client",
                                 jobs=WES_JOBS, timeout=TIMEOUT, env={"PATH": str(Path(sys.executable).parent)})
        ours_seconds = clock.seconds
        logs = _system_logs(server.url)
    finally:
        server.stop()
        server.kill_runs()
    different = suite.differences(docker_subset, plain, wes)
    suite.add_summary([
        f"with containers, images through a mirror of docker.io ({len(docker_subset)} tests):",
        f"{suite.count_line('cwltool', plain)}  [{plain_seconds:.0f} s, stand-ins loaded]",
        f"{suite.count_line('WES', wes)}  [{wes_seconds:.0f} s, the server pulled them]",
        f"{suite.count_line('wes-arvados run', ours)}  [{ours_seconds:.0f} s, no docker on the client]",
    ])
    different = list({t.id: t for t in different + suite.differences(docker_subset, plain, ours)}.values())
    if different:
        suite.SUMMARY += ["", suite.outcome_table(different, [("cwltool", plain), ("WES", wes),
                                                             ("wes-arvados run", ours)])]
    suite.SUMMARY.append(f"reports: {work}/{{cwltool,wes,client}}/junit.xml; server log: {server.log_path}")
    return plain, wes, ours, logs


def test_docker_subset_covers_the_four_images(docker_subset: List[suite.ConformanceTest]) -> None:
    assert set(DOCKER_SUBSET.values()) == set(STANDINS)
    for test in docker_subset:
        tool = Path(test.tool.split("#")[0]).read_text(encoding="utf-8")
        assert f"dockerPull: {DOCKER_SUBSET[test.id]}" in tool, test.id
    assert sum("docker" in t.tags for t in docker_subset) >= 4


def test_plain_cwltool_passes_the_docker_subset(docker_subset: List[suite.ConformanceTest],
                                                docker_outcomes: Outcomes) -> None:
    # The stand-ins must be good enough for cwltool; else the comparison says little.
    plain, _, _, _ = docker_outcomes
    failing = [t.id for t in docker_subset if plain[t.id].outcome != suite.PASSED]
    assert not failing, "plain cwltool does not pass:\n" + suite.failure_details(
        [t for t in docker_subset if t.id in failing], plain)


def test_the_server_pulled_every_docker_image_through_the_mirror(docker_outcomes: Outcomes) -> None:
    _, _, _, logs = docker_outcomes
    for image in sorted(set(DOCKER_SUBSET.values())):
        assert any(f"image {image}: pulled" in line for line in logs), (image, logs)


@pytest.mark.parametrize("runner", ["WES", "wes-arvados run"])
@pytest.mark.parametrize("test_id", list(DOCKER_SUBSET))
def test_each_client_passes_in_docker_what_cwltool_passes(test_id: str, runner: str,
                                                          docker_subset: List[suite.ConformanceTest],
                                                          docker_outcomes: Outcomes) -> None:
    plain, wes, ours, _ = docker_outcomes
    missed = suite.shortfall(next(t for t in docker_subset if t.id == test_id), plain,
                             wes if runner == "WES" else ours, runner)
    if missed:
        pytest.fail(missed, pytrace=False)
