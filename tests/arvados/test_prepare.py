"""A run prepared on Arvados (arvados/prepare.py): images from a loopback registry into Keep, pinned, committed by a-c-r.

No docker anywhere: the tool's image exists only in the loopback registry, and the runner
image (arvados/jobs:<a-c-r version>) comes through that registry as the docker.io mirror.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from wes_arvados.arvados.prepare import PreparationFailed, PreparationJob, prepare
from wes_arvados.arvados.runs import (
    PREPARATION_PROPERTY,
    request_and_container,
    run_properties,
    run_state,
)
from wes_arvados.arvados.submit import placeholder
from wes_arvados.images.policy import ImagePolicy
from wes_arvados.images.registry import RegistryOptions
from wes_arvados.images.service import ImageSettings
from wes_arvados.wes.states import State

from ..images.builder import ImageFactory, push
from ..images.conftest import image_factory, registry  # noqa: F401  (fixtures)
from ..images.registry import Registry
from .double import ArvadosDouble
from .test_double import WORKFLOW, Client, _installed, new_user, unique

RUNNER_IMAGE = f"arvados/jobs:{_installed('arvados-cwl-runner')}"


def _settings(registry: Registry, tmp_path: Path) -> ImageSettings:  # noqa: F811
    options = RegistryOptions(mirrors={"docker.io": [f"http://{registry.host}"]})
    return ImageSettings(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", registry=options,
                         policy=ImagePolicy())


def _submission(double: ArvadosDouble, api: Any, token: str, tmp_path: Path, image: str) -> PreparationJob:
    run = api.container_requests().create(body={"container_request": placeholder(
        unique("wes run"), RUNNER_IMAGE, dict(run_properties({"project": "demo"}, {}),
                                              **{PREPARATION_PROPERTY: {"state": "queued"}}))}).execute()
    staged = tmp_path / run["uuid"]
    staged.mkdir()
    (staged / "wf.cwl").write_text(WORKFLOW.format(image=image))
    runner = str(Path(sys.executable).parent / "arvados-cwl-runner")
    return PreparationJob(run_id=run["uuid"], staged=staged, workflow="wf.cwl", job={"message": "hi"},
                      api_host=double.host, token=token, insecure=True, runner_image=RUNNER_IMAGE, runner=runner)


def test_a_run_is_prepared_without_docker_and_a_second_one_uploads_no_image_bytes(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no docker to fall back on
    user = new_user(arvados_double, arvados_client, "prep")
    api = user["api"]
    repo = unique("tools/hello")
    tool = f"{registry.host}/{repo}:1"
    push(registry, repo, "1", image_factory.docker_schema2())
    runner_repo, runner_tag = RUNNER_IMAGE.split(":")
    push(registry, runner_repo, runner_tag, image_factory.oci())  # docker.io/arvados/jobs, through the mirror
    lines: List[str] = []
    first = _submission(arvados_double, api, user["token"], tmp_path, tool)
    arvados_double.reset_counters()
    prepare(api, first, _settings(registry, tmp_path), lines.append, heartbeat_seconds=0.2)
    assert arvados_double.keep_put_bytes > 1 << 20  # two images' archives (busybox in each)

    request, container = request_and_container(api, first.run_id)
    assert request["state"] == "Committed" and run_state(request, container) == State.QUEUED
    assert request["properties"]["wes_arvados_tag:project"] == "demo"
    workflow = str(request["mounts"]["/var/lib/cwl/workflow.json"]["content"])
    images: Dict[str, str] = {}
    for name in (tool, RUNNER_IMAGE):
        links = api.links().list(filters=[["link_class", "=", "docker_image_repo+tag"],
                                          ["name", "=", name]]).execute()["items"]
        images[name] = api.collections().get(uuid=links[0]["head_uuid"]).execute()["portable_data_hash"]
    assert request["container_image"] == images[RUNNER_IMAGE]
    assert images[tool] in workflow and "dockerCollectionPDH" in workflow
    assert any(line.startswith(f"image {tool}:") for line in lines), lines

    arvados_double.reset_counters()
    second = _submission(arvados_double, api, user["token"], tmp_path, tool)
    prepare(api, second, _settings(registry, tmp_path / "other"), lines.append, heartbeat_seconds=0.2)
    assert api.container_requests().get(uuid=second.run_id).execute()["state"] == "Committed"
    assert arvados_double.keep_put_bytes < 64 << 10  # the workflow and inputs only: no image bytes again


def test_a_preparation_that_cannot_get_an_image_fails_the_run_with_the_cause(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "prep")
    api = user["api"]
    missing = f"{registry.host}/{unique('not/there')}:1"
    submission = _submission(arvados_double, api, user["token"], tmp_path, missing)
    with pytest.raises(PreparationFailed, match="not/there"):
        prepare(api, submission, _settings(registry, tmp_path), lambda line: None, heartbeat_seconds=0.2)
    request, container = request_and_container(api, submission.run_id)
    assert request["state"] == "Uncommitted" and run_state(request, container) == State.SYSTEM_ERROR
    assert missing in request["properties"][PREPARATION_PROPERTY]["message"]
