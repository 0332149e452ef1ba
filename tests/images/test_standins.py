"""The stand-ins for the conformance suite's Docker Hub images: pushed, pulled by docker, run."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List

import pytest

from ..wes import ROOT
from .builder import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    PATH_ENV,
    RegistryClient,
)
from .docker import DockerDaemon
from .registry import Registry
from .standins import STANDINS, build_standin, push_standins

DEBIAN, PYTHON, BASH, ALPINE = STANDINS


@pytest.fixture(scope="module")
def pulled(registry: Registry, docker_daemon: DockerDaemon) -> Dict[str, str]:
    """Stand-in name -> its reference in `registry`, pushed there and pulled from there by docker."""
    push_standins(registry.url)
    refs = {name: f"{registry.host}/{repository}" for name, repository in STANDINS.items()}
    for ref in refs.values():
        docker_daemon.track(ref)
        docker_daemon.docker("pull", ref)
    return refs


def run(docker_daemon: DockerDaemon, ref: str, *args: str) -> List[str]:
    """The output lines of `docker run ref args` with no network, as cwltool's containers have none here."""
    return docker_daemon.docker("run", "--rm", "--network", "none", ref, *args).stdout.splitlines()


def test_push_answers_the_digests_of_the_built_manifests(registry: Registry) -> None:
    digests = push_standins(registry.url)
    assert digests == {name: build_standin(name).digest for name in STANDINS}
    client = RegistryClient(registry.url)
    for name, repository in STANDINS.items():
        repo, tag = repository.rsplit(":", 1)
        response = client.get_manifest(repo, tag)
        assert response.status_code == 200 and response.content == build_standin(name).manifest


def test_another_process_builds_byte_identical_images() -> None:
    code = ("import json; from tests.images.standins import STANDINS, build_standin; "
            "print(json.dumps({name: build_standin(name).digest for name in STANDINS}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                         check=True).stdout
    assert json.loads(out) == {name: build_standin(name).digest for name in STANDINS}


@pytest.mark.parametrize("name", list(STANDINS))
def test_standins_are_linux_amd64_with_gzip_layers_and_the_usual_path(name: str) -> None:
    image = build_standin(name)
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == DOCKER_MANIFEST and manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert {lay["mediaType"] for lay in manifest["layers"]} == {DOCKER_LAYER + ".gzip"}
    config = image.config_json
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert PATH_ENV in config["config"]["Env"]


def test_debian_and_python_share_their_base_layer_as_alpine_and_bash_do() -> None:
    assert build_standin(PYTHON).layers[0].digest == build_standin(DEBIAN).layers[0].digest
    assert [lay.digest for lay in build_standin(BASH).layers[:-1]] == [lay.digest for lay in build_standin(ALPINE).layers]


def test_debian_runs_the_commands_of_the_conformance_tools(pulled: Dict[str, str],
                                                           docker_daemon: DockerDaemon) -> None:
    script = ("echo hi | wc -c; printf 'b\\na\\n' | sort | paste -sd' '; echo abc | rev; "
              "awk 'BEGIN{print 1+1}'; echo x | sed s/x/y/; echo grape | grep -c gr; "
              "tar --version | head -n1 | cut -d' ' -f1; echo z | gzip | gzip -d; "
              "cd /tmp && mkdir d && touch d/f && find d | sort | paste -sd' '; "
              "diff /etc/passwd /etc/passwd && echo same; env | grep -c '^PATH='; bash -c 'echo $0'; "
              "ls / | grep -c '^usr$'; test -x /bin/sh && echo sh; command -v python3 || echo no-python")
    assert run(docker_daemon, pulled[DEBIAN], "sh", "-c", script) == [
        "3", "a b", "cba", "2", "y", "1", "tar", "z", "d d/f", "same", "1", "bash", "1", "sh", "no-python"]


def test_debian_runs_as_an_unprivileged_user_as_cwltool_may_ask(pulled: Dict[str, str],
                                                                docker_daemon: DockerDaemon) -> None:
    out = docker_daemon.docker("run", "--rm", "--network", "none", "--user", "65534:65534", pulled[DEBIAN],
                               "sh", "-c", "id -u; cat /etc/debian_version >/dev/null && echo read").stdout
    assert out.splitlines() == ["65534", "read"]


def test_python_runs_python3_with_the_modules_the_conformance_scripts_import(pulled: Dict[str, str],
                                                                             docker_daemon: DockerDaemon) -> None:
    code = "import json, os, sys, urllib.request; print(sys.version_info[0]); print(os.environ['LANG'])"
    assert run(docker_daemon, pulled[PYTHON], "python", "-c", code) == ["3", "C.UTF-8"]
    assert run(docker_daemon, pulled[PYTHON], "sh", "-c", "command -v python; command -v python3") == [
        "/usr/local/bin/python", "/usr/local/bin/python3"]
    assert run(docker_daemon, pulled[PYTHON], "python3", "-c", "print('é'.upper())") == ["É"]


def test_bash_reports_a_bash_version(pulled: Dict[str, str], docker_daemon: DockerDaemon) -> None:
    major = run(docker_daemon, pulled[BASH], "bash", "-c", "echo ${BASH_VERSION%%.*}")
    assert len(major) == 1 and major[0].isdigit()
    assert run(docker_daemon, pulled[BASH], "sh", "-c", "command -v bash; test -x /bin/bash && echo bin") == [
        "/usr/local/bin/bash", "bin"]


def test_bash_entrypoint_runs_a_leading_option_with_bash_as_the_real_image_does(pulled: Dict[str, str],
                                                                                docker_daemon: DockerDaemon) -> None:
    # The conformance test docker_entrypoint gives only `-c "echo 'moo' > cow"` as the command.
    assert run(docker_daemon, pulled[BASH], "-c", "echo moo; echo ${BASH_VERSION:+bash}") == ["moo", "bash"]


def test_alpine_runs_busybox_sh_and_the_applets_the_symlink_tests_use(pulled: Dict[str, str],
                                                                      docker_daemon: DockerDaemon) -> None:
    script = "echo ok; mkdir /tmp/a && echo x > /tmp/a/f && ln -s /tmp/a/f /tmp/l && cat /tmp/l; touch /tmp/t"
    assert run(docker_daemon, pulled[ALPINE], "sh", "-c", script) == ["ok", "x"]
    assert run(docker_daemon, pulled[ALPINE], "/usr/bin/env", "true") == []
