"""`wes-arvados pull --arvados`: images into Keep as arv-keepdocker stores them, against the Arvados double.

Real components: the Debian docker-registry (images built by the tests), the
Arvados double over HTTPS with the unmodified arvados-python-client and
arvados-cwl-runner, and a Docker daemon that loads what is read back from Keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ..images.builder import (
    ImageFactory,
    build_image,
    busybox_rootfs_layer,
    layer,
    push,
)
from ..images.conftest import docker_daemon, image_factory, registry, repo  # noqa: F401  (fixtures)
from ..images.docker import DockerDaemon
from ..images.registry import Registry
from .double import ArvadosDouble
from .test_double import Client, new_user

Result = Dict[str, Any]


def _pull(double: ArvadosDouble, token: str, image: str, *args: str, check: bool = True,
          env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`wes-arvados pull IMAGE --arvados --json ARGS` with the double's settings and no docker on PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "DOCKER_"))}
    environ.update(double.env(token), PATH=str(Path(sys.executable).parent), **(env or {}))
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "pull", image, "--arvados", "--json", *args],
                          capture_output=True, text=True, timeout=600, env=environ)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _stored(done: subprocess.CompletedProcess) -> Result:
    return json.loads(done.stdout)


def test_a_pulled_image_is_found_as_arv_keepdocker_images_are_and_loads_back(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry, repo: str,  # noqa: F811
        docker_daemon: DockerDaemon, image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    from arvados.collection import CollectionReader
    from arvados.commands.keepdocker import list_images_in_arv

    user = new_user(arvados_double, arvados_client, "keep")
    built = image_factory.docker_schema2()
    push(registry, repo, "1", built)
    name = f"{registry.host}/{repo}"
    result = _stored(_pull(arvados_double, user["token"], f"{name}:1", "--cache-dir", str(tmp_path / "cache")))
    assert result["image_id"] == built.config_digest and result["uploaded"] is True
    found = list_images_in_arv(user["api"], 3, name, "1")
    assert [(info["dockerhash"], info["collection"]) for _, info in found] == \
        [(built.config_digest, result["collection_uuid"])]
    collection = user["api"].collections().get(uuid=result["collection_uuid"]).execute()
    assert collection["portable_data_hash"] == result["portable_data_hash"]
    assert collection["name"] == f"Docker image {name.replace('/', ' ')}:1 {built.config_digest[:12]}"
    assert collection["properties"]["docker-image-repo-tag"] == f"{name}:1"
    hash_links = user["api"].links().list(filters=[["head_uuid", "=", collection["uuid"]]]).execute()["items"]
    assert {(link["link_class"], link["name"]) for link in hash_links} == {
        ("docker_image_hash", built.config_digest), ("docker_image_repo+tag", f"{name}:1")}
    created = json.loads(built.config)["created"]
    assert all(link["properties"]["image_timestamp"] == created for link in hash_links)
    reader = CollectionReader(collection["uuid"], api_client=user["api"])
    assert list(reader.keys()) == [f"{built.config_digest}.tar"]
    archive = tmp_path / "from-keep.tar"
    with reader.open(f"{built.config_digest}.tar", "rb") as src, open(archive, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    loaded = docker_daemon.load(archive)
    assert loaded == [f"{name}:1"]
    loaded_id = docker_daemon.docker("image", "inspect", "--format", "{{.Id}}", f"{name}:1").stdout.strip()
    assert f"{loaded_id}.tar" == list(reader.keys())[0]


def test_the_collection_passes_the_api_servers_image_rule(arvados_double: ArvadosDouble, arvados_client: Client,
                                                         registry: Registry, repo: str,  # noqa: F811
                                                         image_factory: ImageFactory,  # noqa: F811
                                                         tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "rule")
    push(registry, repo, "1", image_factory.oci())
    result = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:1", "--cache-dir",
                           str(tmp_path / "cache")))
    request = user["api"].container_requests().create(body={
        "name": "uses the image", "state": "Committed", "priority": 1, "command": ["true"],
        "container_image": result["portable_data_hash"], "output_path": "/out",
        "mounts": {"/out": {"kind": "tmp", "capacity": 1 << 20}},
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 26}}).execute()
    assert request["state"] == "Committed" and request["container_uuid"]


def test_shared_layers_are_not_uploaded_again_and_a_second_pull_puts_nothing(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry, repo: str,  # noqa: F811
        tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "dedup")
    base = [busybox_rootfs_layer(), layer({"opt/base.bin": os.urandom(3 << 20)})]
    first = build_image(base + [layer({"opt/first.bin": os.urandom(1 << 20)})])
    second = build_image(base + [layer({"opt/second.bin": os.urandom(2 << 20)})])
    push(registry, repo, "1", first)
    push(registry, repo, "2", second)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    arvados_double.reset_counters()
    one = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:1", *cache))
    assert arvados_double.keep_put_bytes >= sum(len(lay.tar) for lay in first.layers)
    arvados_double.reset_counters()
    two = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:2", *cache))
    assert two["uploaded"] is True
    assert arvados_double.keep_put_bytes <= len(second.layers[-1].tar) + (1 << 20), arvados_double.keep_put_bytes
    arvados_double.reset_counters()
    again = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:1", *cache))
    assert arvados_double.keep_put_bytes == 0 and again["uploaded"] is False
    assert again["portable_data_hash"] == one["portable_data_hash"]
    # The same image stored afresh by someone who cannot see the first copy gives the same bytes, the same PDH.
    other = new_user(arvados_double, arvados_client, "dedup-other")
    fresh = _stored(_pull(arvados_double, other["token"], f"{registry.host}/{repo}:1", "--cache-dir",
                          str(tmp_path / "cache-2")))
    assert fresh["portable_data_hash"] == one["portable_data_hash"] and fresh["uploaded"] is True


def test_a_missing_image_fails_cleanly_and_leaves_nothing_in_arvados(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry, repo: str,  # noqa: F811
        tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "missing")
    done = _pull(arvados_double, user["token"], f"{registry.host}/{repo}:nope", "--cache-dir",
                 str(tmp_path / "cache"), check=False)
    assert done.returncode == 1 and "404" in json.loads(done.stdout)["error"]
    assert arvados_double.records("collections", owner_uuid=user["uuid"]) == []
    assert arvados_double.records("links", owner_uuid=user["uuid"]) == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_arvados_cwl_runner_submits_with_images_imported_by_pull_and_no_docker(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    """The tool image and the runner image arvados/jobs:<a-c-r version>, from a docker.io mirror, into Keep."""
    user = new_user(arvados_double, arvados_client, "acr")
    version = metadata.version("arvados-cwl-runner")
    tool_repo = f"wes-test/tool-{user['uuid'][-6:]}"
    push(registry, "arvados/jobs", version, image_factory.docker_schema2())
    push(registry, tool_repo, "1", image_factory.oci())
    mirror = ["--registry-mirror", f"docker.io=http://{registry.host}", "--cache-dir", str(tmp_path / "cache")]
    imported: List[Result] = [_stored(_pull(arvados_double, user["token"], name, *mirror))
                              for name in (f"arvados/jobs:{version}", f"{tool_repo}:1")]
    assert all(result["uploaded"] for result in imported)
    from arvados_cwl.arvdocker import arv_docker_get_image
    from arvados_cwl.context import ArvRuntimeContext

    saved_path = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent)  # no docker for a-c-r to fall back on
    try:
        pdh = arv_docker_get_image(user["api"], {"dockerPull": f"{tool_repo}:1"}, True,
                                   ArvRuntimeContext({"project_uuid": None}))
    finally:
        os.environ["PATH"] = saved_path
    assert pdh == imported[1]["portable_data_hash"]
    (tmp_path / "wf.cwl").write_text(f"""cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {tool_repo}:1
baseCommand: echo
inputs:
  message: {{type: string, inputBinding: {{position: 1}}}}
outputs: {{}}
""")
    (tmp_path / "job.yml").write_text("message: hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "DOCKER_"))}
    env.update(arvados_double.env(user["token"]), PATH=str(Path(sys.executable).parent), HOME=str(tmp_path))
    runner = Path(sys.executable).parent / "arvados-cwl-runner"
    done = subprocess.run([str(runner), "--submit", "--no-wait", "--api=containers", str(tmp_path / "wf.cwl"),
                           str(tmp_path / "job.yml")], capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    request = arvados_double.record(done.stdout.strip())
    assert request is not None and request["state"] == "Committed"
    assert request["container_image"] == imported[0]["portable_data_hash"]


def test_an_image_already_in_keep_under_another_tag_gets_only_its_repo_tag_link(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry, repo: str,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    from arvados.commands.keepdocker import list_images_in_arv

    user = new_user(arvados_double, arvados_client, "retag")
    built = image_factory.docker_schema2()
    push(registry, repo, "1", built)
    push(registry, repo, "2", built)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    first = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:1", *cache))
    arvados_double.reset_counters()
    second = _stored(_pull(arvados_double, user["token"], f"{registry.host}/{repo}:2", *cache))
    assert arvados_double.keep_put_bytes == 0 and second["uploaded"] is False
    assert second["collection_uuid"] == first["collection_uuid"]
    found = list_images_in_arv(user["api"], 3, f"{registry.host}/{repo}", "2")
    assert [info["collection"] for _, info in found] == [first["collection_uuid"]]
    assert len(arvados_double.records("collections", owner_uuid=user["uuid"])) == 1
