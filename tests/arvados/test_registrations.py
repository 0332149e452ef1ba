"""A workflow registered on Arvados (arvados/registrations.py): images into Keep in its project, pinned, a-c-r, no docker.

The tool's image exists only in a loopback registry and the runner image comes through
that registry as the docker.io mirror; no docker is on PATH. Then the workflow is
launched as Workbench 2 launches it (its runProcess): the container request commits
for a user who can read the project, and answers 422 naming the image for one who cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import arvados.collection
import pytest
import requests
import yaml
from arvados.errors import ApiError

from wes_arvados.arvados.registrations import (
    COMPLETE,
    REGISTRATION_LINK,
    SYSTEM_ERROR,
    RegistrationJob,
    run,
)
from wes_arvados.images.service import ImageService
from wes_arvados.images.stores.keep import KeepImageStore

from ..images.builder import ImageFactory, push
from ..images.conftest import image_factory, registry  # noqa: F401  (fixtures)
from ..images.registry import Registry
from ..wes import WesClient, WesServer
from .double import ArvadosDouble
from .test_backend import _client, _tool_workflow, server  # noqa: F401  (a fixture)
from .test_double import WORKFLOW, Client, container_request, make_image, new_user, share, unique
from .test_prepare import RUNNER_IMAGE, _settings

PINNED = "http://arvados.org/cwl#dockerCollectionPDH"
RUNNER_HINT = "http://arvados.org/cwl#WorkflowRunnerResources"


def _author(double: ArvadosDouble, client: Client) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A new user, and a project of theirs for workflows."""
    owner = new_user(double, client, "author")
    project = owner["api"].groups().create(body={"group": {"name": unique("pipelines"),
                                                           "group_class": "project"}}).execute()
    return owner, project


def _job(double: ArvadosDouble, api: Any, token: str, tmp_path: Path, image: str, project: str,
         **fields: Any) -> RegistrationJob:
    link = api.links().create(body={"link": {"link_class": REGISTRATION_LINK, "name": "wf.cwl",
                                             "owner_uuid": project, "properties": {"state": "QUEUED"}}}).execute()
    staged = tmp_path / link["uuid"]
    staged.mkdir()
    (staged / "wf.cwl").write_text(WORKFLOW.format(image=image))
    return RegistrationJob(registration_id=link["uuid"], staged=staged, workflow="wf.cwl", runner_image=RUNNER_IMAGE,
                           api_host=double.host, token=token, insecure=True, project_uuid=project,
                           runner=str(Path(sys.executable).parent / "arvados-cwl-runner"), **fields)


def _launch(api: Any, workflow: Dict[str, Any], project: str) -> Dict[str, Any]:
    """The container request Workbench 2 (3.2.1, runProcess) commits for a registered workflow."""
    definition = json.loads(workflow["definition"])
    main = next(p for p in definition["$graph"] if p["id"] == "#main")
    hint = next((h for h in main.get("hints", []) if h["class"] == RUNNER_HINT), {})
    return api.container_requests().create(body={"container_request": {
        "owner_uuid": project, "name": workflow["name"], "state": "Committed",
        "mounts": {"/var/spool/cwl": {"kind": "collection", "writable": True},
                   "stdout": {"kind": "file", "path": "/var/spool/cwl/cwl.output.json"},
                   "/var/lib/cwl/workflow.json": {"kind": "json", "content": definition},
                   "/var/lib/cwl/cwl.input.json": {"kind": "json", "content": {"message": "hi"}}},
        "secret_mounts": {}, "runtime_constraints": {"API": True, "vcpus": 1, "ram": 1342177280},
        "scheduling_parameters": {}, "container_image": hint.get("acrContainerImage", "arvados/jobs"),
        "cwd": "/var/spool/cwl",
        "command": ["arvados-cwl-runner", "--local", "--api=containers", "--no-log-timestamps", "--disable-color",
                    f"--project-uuid={project}", "/var/lib/cwl/workflow.json#main", "/var/lib/cwl/cwl.input.json"],
        "output_path": "/var/spool/cwl", "priority": 500, "output_name": f"Output from {workflow['name']}",
        "properties": {"template_uuid": workflow["uuid"], "workflowName": workflow["name"]},
        "use_existing": False}}).execute()


def test_a_workflow_is_registered_without_docker_launched_as_workbench_does_and_registered_again_for_free(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no docker to fall back on
    owner, project = _author(arvados_double, arvados_client)
    api = owner["api"]
    repo = unique("tools/hello")
    tool = f"{registry.host}/{repo}:1"
    push(registry, repo, "1", image_factory.docker_schema2())
    runner_repo, runner_tag = RUNNER_IMAGE.split(":")
    push(registry, runner_repo, runner_tag, image_factory.oci())  # docker.io/arvados/jobs, through the mirror
    service = ImageService(KeepImageStore(api, project_uuid=project["uuid"]), _settings(registry, tmp_path))
    lines: List[str] = []

    first = _job(arvados_double, api, owner["token"], tmp_path, tool, project["uuid"], name="greeter")
    arvados_double.reset_counters()
    done = run(api, service, first, heartbeat_seconds=0.2, log=lines.append)
    assert done["state"] == COMPLETE, done
    assert arvados_double.keep_put_bytes > 1 << 20  # both images' archives
    assert not first.staged.exists()  # the staged files go with the work
    workflow = api.workflows().get(uuid=done["workflow_uuid"]).execute()
    assert (workflow["name"], workflow["owner_uuid"]) == ("greeter", project["uuid"])
    # Both images in Keep, in the project, in the arv-keepdocker form; pinned in the wrapper and the files.
    for name in (tool, RUNNER_IMAGE):
        (link,) = api.links().list(filters=[["link_class", "=", "docker_image_repo+tag"], ["name", "=", name],
                                            ["owner_uuid", "=", project["uuid"]]]).execute()["items"]
        collection = api.collections().get(uuid=link["head_uuid"]).execute()
        assert collection["portable_data_hash"] == done["images"][name]
    definition = workflow["definition"]
    assert done["images"][RUNNER_IMAGE] in definition and PINNED in definition
    (main,) = json.loads(definition)["$graph"]
    assert next(h for h in main["hints"] if h["class"] == RUNNER_HINT)["acrContainerImage"] == \
        done["images"][RUNNER_IMAGE]
    assert any(f"image {tool}" in line for line in lines), lines

    # Launched as Workbench launches it: by the author, and by a reader of the project; not by a stranger.
    request = _launch(api, workflow, project["uuid"])
    assert request["state"] == "Committed" and request["container_image"] == done["images"][RUNNER_IMAGE]
    reader, stranger = new_user(arvados_double, arvados_client, "reader"), new_user(arvados_double, arvados_client,
                                                                                   "stranger")
    share(owner, reader, project["uuid"], "can_read")
    home = reader["api"].users().current().execute()["uuid"]
    assert _launch(reader["api"], workflow, home)["state"] == "Committed"
    stranger_home = stranger["api"].users().current().execute()["uuid"]
    with pytest.raises(ApiError) as refused:
        _launch(stranger["api"], dict(workflow), stranger_home)
    assert refused.value.resp.status == 422 and done["images"][RUNNER_IMAGE] in str(refused.value)

    # Registered again: no image bytes uploaded; an update keeps the uuid.
    again = _job(arvados_double, api, owner["token"], tmp_path, tool, project["uuid"], name="greeter 2",
                 update_uuid=workflow["uuid"])
    arvados_double.reset_counters()
    redone = run(api, service, again, heartbeat_seconds=0.2)
    assert redone["state"] == COMPLETE and redone["workflow_uuid"] == workflow["uuid"], redone
    assert arvados_double.keep_put_bytes < 64 << 10  # the workflow's files, no image
    assert api.workflows().get(uuid=workflow["uuid"]).execute()["name"] == "greeter 2"


def test_an_image_that_cannot_be_had_ends_the_registration_naming_it_and_registers_nothing(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    owner, project = _author(arvados_double, arvados_client)
    api = owner["api"]
    missing = f"{registry.host}/{unique('tools/absent')}:1"
    service = ImageService(KeepImageStore(api, project_uuid=project["uuid"]), _settings(registry, tmp_path))
    job = _job(arvados_double, api, owner["token"], tmp_path, missing, project["uuid"])
    done = run(api, service, job, heartbeat_seconds=0.2)
    assert done["state"] == SYSTEM_ERROR and missing in done["error"], done
    assert api.workflows().list(filters=[["owner_uuid", "=", project["uuid"]]]).execute()["items"] == []
    assert not job.staged.exists()


def _registered(client: WesClient, answer: requests.Response, timeout: float = 180) -> Dict[str, Any]:
    assert answer.status_code == 202, answer.text
    registration_id = answer.json()["registration_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        registration = client.get(f"/workflows/{registration_id}").json()
        if registration["state"] in (COMPLETE, SYSTEM_ERROR):
            return registration
        time.sleep(0.3)
    raise AssertionError(f"registration {registration_id} did not end: {registration}")


def test_post_and_put_workflows_register_through_the_server_and_answer_the_workbench_url(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, hello_world_image: Dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    owner, project = _author(arvados_double, arvados_client)
    tool = _tool_workflow(registry, image_factory, tmp_path / "wf.cwl")
    client = _client(server, owner["token"])
    workbench = arvados_double.cluster.exported_config["Services"]["Workbench2"]
    workbench["ExternalURL"] = "https://workbench.zzzzz.example.org/"  # what a cluster with Workbench 2 exports
    try:
        registration = _registered(client, client.post("/workflows", files=[
            ("workflow_attachment", ("wf.cwl", (tmp_path / "wf.cwl").read_bytes()))], data={
            "workflow_url": "wf.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
            "name": "greeter", "description": "says hi", "project_uuid": project["uuid"]}))
    finally:
        workbench["ExternalURL"] = ""
    assert registration["state"] == COMPLETE, registration
    uuid = registration["workflow_uuid"]
    assert registration["workbench_url"] == f"https://workbench.zzzzz.example.org/workflows/{uuid}"
    assert set(registration["images"]) == {tool, RUNNER_IMAGE}
    workflow = owner["api"].workflows().get(uuid=uuid).execute()
    assert (workflow["name"], workflow["description"], workflow["owner_uuid"]) == \
        ("greeter", "says hi", project["uuid"])

    again = _registered(client, client.http.put(f"{client.url}/workflows/{uuid}", files=[
        ("workflow_attachment", ("wf.cwl", (tmp_path / "wf.cwl").read_bytes()))], data={
        "workflow_url": "wf.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2", "name": "greeter 2"},
        timeout=60))
    assert again["state"] == COMPLETE and again["workflow_uuid"] == uuid and "workbench_url" not in again, again
    assert owner["api"].workflows().get(uuid=uuid).execute()["name"] == "greeter 2"

    # Launched from Workbench: the gateway shows the run by its uuid, with its tasks, and does not list it.
    launch = _launch(owner["api"], owner["api"].workflows().get(uuid=uuid).execute(), project["uuid"])
    arvados_double.set_container_state(launch["container_uuid"], "Running")
    image = make_image(owner["api"], hello_world_image, [])["portable_data_hash"]
    runner_api = arvados_client(arvados_double.container_token(launch["container_uuid"]))
    step = runner_api.container_requests().create(body=container_request(image, name="echo")).execute()
    arvados_double.set_container_state(step["container_uuid"], "Complete", exit_code=0,
                                       log={"stdout.txt": "hi\n", "stderr.txt": ""})
    arvados_double.set_container_state(launch["container_uuid"], "Complete", exit_code=0,
                                       log={"stderr.txt": "INFO done\n"},
                                       output={"cwl.output.json": json.dumps({})})
    shown = client.wait(launch["uuid"], timeout=30)
    assert shown["state"] == "COMPLETE" and shown["run_log"]["exit_code"] == 0, shown
    assert (shown["request"]["workflow_url"], shown["request"]["workflow_params"]) == (uuid, {"message": "hi"})
    assert [t["name"] for t in client.get(f"/runs/{launch['uuid']}/tasks").json()["task_logs"]] == ["echo"]
    assert launch["uuid"] not in [r["run_id"] for r in client.get("/runs").json()["runs"]]

    stranger = _client(server, new_user(arvados_double, arvados_client, "stranger")["token"])
    assert stranger.get(f"/workflows/{registration['id']}").status_code == 404
    refused = stranger.http.put(f"{stranger.url}/workflows/{uuid}", files=[
        ("workflow_attachment", ("wf.cwl", (tmp_path / "wf.cwl").read_bytes()))], data={
        "workflow_url": "wf.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2"}, timeout=60)
    assert refused.status_code == 404 and uuid in refused.json()["msg"], refused.text
    with_params = client.post("/workflows", files=[("workflow_attachment", ("wf.cwl", b"cwlVersion: v1.2\n"))],
                              data={"workflow_url": "wf.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
                                    "workflow_params": "{}"})
    assert with_params.status_code == 400 and "workflow_params is for runs" in with_params.json()["msg"]


TWO_STEPS = """cwlVersion: v1.2
class: Workflow
label: two greetings
inputs:
  message: string
outputs: []
steps:
  first:
    run: tools/first.cwl
    in: {message: message}
    out: []
  second:
    run: tools/second.cwl
    in: {message: message}
    out: []
"""


def test_wes_arvados_register_pins_two_images_from_two_registries_with_no_docker_on_the_client(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    # Issue 19, acceptance 1: one image only in a loopback registry, one only behind the docker.io mirror.
    owner, project = _author(arvados_double, arvados_client)
    local_repo, mirrored_repo = unique("tools/first"), unique("team/second")
    push(registry, local_repo, "1", image_factory.docker_schema2())
    push(registry, mirrored_repo, "1", image_factory.oci())
    images = {"first": f"{registry.host}/{local_repo}:1", "second": f"{mirrored_repo}:1"}  # docker.io/team/…
    (tmp_path / "tools").mkdir()
    for step, image in images.items():
        (tmp_path / "tools" / f"{step}.cwl").write_text(WORKFLOW.format(image=image))
    (tmp_path / "wf.cwl").write_text(TWO_STEPS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WES_", "ARVADOS_", "DOCKER_"))}
    env.update(PATH=str(Path(sys.executable).parent), WES_ARVADOS_TOKEN=owner["token"])
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "register", "wf.cwl", "--server",
                           server.url.split("/ga4gh")[0], "--project-uuid", project["uuid"]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    uuid = done.stdout.strip()
    assert "registration COMPLETE" in done.stderr and f"image {images['first']}" in done.stderr, done.stderr

    api = owner["api"]
    workflow = api.workflows().get(uuid=uuid).execute()
    assert (workflow["name"], workflow["owner_uuid"]) == ("two greetings", project["uuid"])
    pdhs = {}
    for name in [images["first"], images["second"], RUNNER_IMAGE]:
        links = api.links().list(filters=[["link_class", "=", "docker_image_repo+tag"],
                                          ["owner_uuid", "=", project["uuid"]]]).execute()["items"]
        match = [link for link in links if link["name"] in (name, f"docker.io/{name}")]
        assert match, (name, [link["name"] for link in links])
        pdhs[name] = api.collections().get(uuid=match[0]["head_uuid"]).execute()["portable_data_hash"]
    (main,) = json.loads(workflow["definition"])["$graph"]
    assert next(h for h in main["hints"] if h["class"] == RUNNER_HINT)["acrContainerImage"] == pdhs[RUNNER_IMAGE]
    collection_pdh = main["steps"][0]["run"][len("keep:"):].split("/", 1)[0]
    files = arvados.collection.CollectionReader(collection_pdh, api_client=api)
    for step, image in images.items():
        document = yaml.safe_load(files.open(f"tools/{step}.cwl").read())
        assert document["requirements"]["DockerRequirement"][PINNED] == pdhs[image], document
