"""The server's image (Dockerfile, deploy/build_image.py): built here offline, run as the chart runs it.

Real components: debootstrap for the base, pip's wheelhouse, the tests' Docker daemon
for the build and the container, and the README's quick-start run against it.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from ..images.conftest import docker_daemon  # noqa: F401  (a fixture)
from ..images.docker import DockerDaemon
from ..wes import ROOT, WesClient, free_port, require

pytestmark = [pytest.mark.timeout(1800)]
TAG = "wes-arvados:test"
HELLO = ROOT / "examples" / "hello.cwl"


@pytest.fixture(scope="module")
def image(docker_daemon: DockerDaemon) -> Iterator[str]:  # noqa: F811
    """The image, built by deploy/build_image.py into the tests' daemon."""
    require(os.geteuid() == 0, "building the base with debootstrap needs root")
    require(subprocess.run(["which", "debootstrap"], capture_output=True).returncode == 0,
            "debootstrap is missing (apt-get install debootstrap)")
    env = {**os.environ, "DOCKER_HOST": docker_daemon.host}
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "build_image.py"), "--tag", TAG], env=env,
                          capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stderr[-4000:]
    print(done.stdout.strip().splitlines()[-1])  # the image's size, for the record (-s shows it)
    docker_daemon.track(TAG)
    yield TAG


def test_the_image_is_labelled_and_has_no_docker_and_no_compiler(image: str,
                                                                   docker_daemon: DockerDaemon) -> None:  # noqa: F811
    labels = docker_daemon.docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert f'"org.opencontainers.image.version":"{config["metadata"]["version"]}"' in labels
    assert f'"org.opencontainers.image.revision":"{head}' in labels
    assert '"org.opencontainers.image.source":"https://' in labels
    user = docker_daemon.docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "10001:10001"
    found = docker_daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                                 "for c in docker dockerd gcc cc make; do command -v $c; done; "
                                 "ls /var/run/docker.sock 2>/dev/null; true").stdout
    assert found.strip() == ""


def test_a_container_run_as_the_chart_runs_it_serves_and_completes_the_quick_start(
        image: str, docker_daemon: DockerDaemon, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    name = f"wes-image-test-{port}"
    # As the chart: non-root, read-only root filesystem, no capabilities, volumes for state, cache and /tmp.
    docker_daemon.docker("run", "--detach", "--name", name, "--network", "host", "--read-only",
                         "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                         "--tmpfs", "/tmp", "--volume", f"{name}-state:/var/lib/wes-arvados",
                         "--volume", f"{name}-cache:/var/cache/wes-arvados",
                         image, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/ga4gh/wes/v1/service-info", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, docker_daemon.docker("logs", name, check=False).stderr[-3000:]
            time.sleep(0.5)
        assert requests.get(base + "/readyz", timeout=10).json() == {"status": "ready"}
        client = WesClient(base + "/ga4gh/wes/v1")
        log = client.wait(client.run(HELLO, {"name": "world"}))
        assert log["state"] == "COMPLETE", log
        greeting = requests.get(log["outputs"]["greeting"]["location"], timeout=30).text
        assert greeting == "hello world\n"
    finally:
        docker_daemon.docker("rm", "--force", "--volumes", name, check=False)
        docker_daemon.docker("volume", "rm", f"{name}-state", f"{name}-cache", check=False)
