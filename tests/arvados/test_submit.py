"""The real arvados-cwl-runner commits our placeholder request, keeping the WES properties (arvados/submit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import arvados.collection
import arvados_cwl
import pytest
import yaml

from wes_arvados.arvados.pin import pin_images
from wes_arvados.arvados.runs import RUN_PROPERTY, list_runs, run_properties, tags_of
from wes_arvados.arvados.submit import (
    ARVADOS_CWL_RUNNER,
    add_properties_hint,
    pin_runner_image,
    placeholder,
    register_command,
    runner_image_hint,
    submit_command,
)
from wes_arvados.errors import BadRequest

from .double import ArvadosDouble
from .test_double import (
    WORKFLOW,
    Client,
    _installed,
    _no_docker_path,
    make_image,
    new_user,
    unique,
)


def test_a_c_r_commits_the_placeholder_with_the_pinned_image_and_the_properties_as_written(
        arvados_double: ArvadosDouble, arvados_client: Client, hello_world_image: Dict[str, Any],
        tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "wes")
    api = user["api"]
    runner_image = f"arvados/jobs:{_installed('arvados-cwl-runner')}"
    pdh = make_image(api, hello_world_image, [runner_image])["portable_data_hash"]
    tool_image = "127.0.0.1:5000/tools/hello@sha256:" + "c" * 64  # a port and a digest: names a-c-r misparses
    tags = {"project": "demo", "odd": "$(inputs.message) and ${ return 1; } \\ kept"}
    properties = {key: str(value) for key, value in run_properties(tags, {}).items() if isinstance(value, str)}
    run = api.container_requests().create(body={"container_request": placeholder(
        unique("wes run"), runner_image, run_properties(tags, {}))}).execute()
    assert run["state"] == "Uncommitted"

    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=tool_image))
    (tmp_path / "job.yml").write_text("message: hi\n")
    assert pin_images(tmp_path, {tool_image: pdh}) == ["wf.cwl"]
    add_properties_hint(tmp_path / "wf.cwl", "", properties)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(arvados_double.env(user["token"]), PATH=_no_docker_path(tmp_path), HOME=str(tmp_path))
    env.pop("XDG_CACHE_HOME", None)
    runner = str(Path(sys.executable).parent / "arvados-cwl-runner")
    done = subprocess.run(submit_command(runner, "wf.cwl", "job.yml", run["uuid"], runner_image),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == run["uuid"]

    committed = api.container_requests().get(uuid=run["uuid"]).execute()
    assert committed["state"] == "Committed" and committed["container_image"] == pdh
    assert committed["properties"][RUN_PROPERTY] and tags_of(committed["properties"]) == tags
    assert [r.run_id for r in list_runs(api, 10, None, tags={"odd": tags["odd"]}).items] == [run["uuid"]]
    workflow = committed["mounts"]["/var/lib/cwl/workflow.json"]["content"]
    assert "http://arvados.org/cwl#dockerCollectionPDH" in str(workflow) and pdh in str(workflow)


def test_engine_parameters_pass_to_a_c_r_when_allowed_and_every_option_named_is_a_c_rs_own() -> None:
    options, notes = ARVADOS_CWL_RUNNER.options({"disable-reuse": None, "--priority": "7", "--enable-preemptible":
                                                 "false", "--submit-request-uuid": "x", "--no-such": "1"})
    assert options == ["--disable-reuse", "--priority", "7"]
    assert [n.split(": ")[1] for n in notes] == ["--no-such ignored", "--submit-request-uuid ignored"]
    for bad in ({"--priority": "0"}, {"--priority": "high"}, {"--on-error": "maybe"}, {"--name": None}):
        with pytest.raises(BadRequest, match="workflow_engine_parameters"):
            ARVADOS_CWL_RUNNER.options(bad)
    with pytest.raises(BadRequest, match="Docker"):
        ARVADOS_CWL_RUNNER.options({"--match-submitter-images": None})
    # Every option the table names is one the installed a-c-r knows: a renamed option would be caught here.
    known = arvados_cwl.arg_parser()._option_string_actions  # some (--disable-color) are hidden from --help
    table = ARVADOS_CWL_RUNNER
    assert [o for o in [*table.flags, *table.valued, *table.server_controlled, *table.refused] if o not in known] == []


def test_a_c_r_registers_a_pinned_workflow_without_docker_and_an_update_keeps_its_uuid(
        arvados_double: ArvadosDouble, arvados_client: Client, hello_world_image: Dict[str, Any],
        tmp_path: Path) -> None:
    # Issue 19's registration, as the server will run it: every image and the runner image pinned by
    # collection (pin.py, pin_runner_image), then a-c-r --create-workflow with no docker on PATH.
    user = new_user(arvados_double, arvados_client, "registrar")
    api = user["api"]
    project = api.groups().create(body={"group": {"name": unique("workflows"), "group_class": "project"}}).execute()
    pdh = make_image(api, hello_world_image, [f"arvados/jobs:{_installed('arvados-cwl-runner')}"],
                     owner_uuid=project["uuid"])["portable_data_hash"]
    tool_image = "127.0.0.1:5000/tools/hello@sha256:" + "c" * 64
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=tool_image))
    assert pin_images(tmp_path, {tool_image: pdh}) == ["wf.cwl"]
    assert runner_image_hint(tmp_path / "wf.cwl", "") is None
    pin_runner_image(tmp_path / "wf.cwl", "", pdh)
    assert runner_image_hint(tmp_path / "wf.cwl", "") == pdh
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(arvados_double.env(user["token"]), PATH=_no_docker_path(tmp_path), HOME=str(tmp_path))
    env.pop("XDG_CACHE_HOME", None)
    runner = str(Path(sys.executable).parent / "arvados-cwl-runner")

    def register(**options: Any) -> str:
        done = subprocess.run(register_command(runner, "wf.cwl", pdh, **options), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    uuid = register(project_uuid=project["uuid"], name="greeter")
    record = api.workflows().get(uuid=uuid).execute()
    assert (record["name"], record["owner_uuid"]) == ("greeter", project["uuid"])
    (main,) = json.loads(record["definition"])["$graph"]
    runner_hint = next(h for h in main["hints"] if h["class"] == "http://arvados.org/cwl#WorkflowRunnerResources")
    assert runner_hint["acrContainerImage"] == pdh
    (step,) = main["steps"]
    collection_pdh, _, main_file = step["run"][len("keep:"):].partition("/")
    (collection,) = api.collections().list(filters=[["portable_data_hash", "=", collection_pdh],
                                                    ["owner_uuid", "=", project["uuid"]]]).execute()["items"]
    assert collection["properties"] == {"type": "workflow", "arv:workflowMain": main_file}
    stored = arvados.collection.CollectionReader(collection["uuid"], api_client=api).open(main_file).read()
    pinned = yaml.safe_load(stored)["requirements"]["DockerRequirement"]
    assert pinned["http://arvados.org/cwl#dockerCollectionPDH"] == pdh, stored

    assert register(update_uuid=uuid, name="greeter, again") == uuid
    assert api.workflows().get(uuid=uuid).execute()["name"] == "greeter, again"
    assert len(api.workflows().list(filters=[["owner_uuid", "=", project["uuid"]]]).execute()["items"]) == 1
