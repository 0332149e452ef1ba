"""Which credentials `wes-arvados run` and `pull --server` send (wes_arvados/client/registry_auth.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from wes_arvados.client.dependencies import find
from wes_arvados.client.registry_auth import registries_of, registry_auth_header
from wes_arvados.images.registry.credentials import AuthConfig, parse_registry_auth

WORKFLOW = """cwlVersion: v1.2
class: Workflow
inputs: []
outputs: []
hints:
  DockerRequirement: {dockerPull: "debian:stable-slim"}
steps:
  private:
    run:
      class: CommandLineTool
      requirements:
        DockerRequirement: {dockerPull: "registry.lan:5000/team/tool:1"}
      baseCommand: "true"
      inputs: []
      outputs: []
    in: []
    out: []
  public:
    run: {class: CommandLineTool, baseCommand: "true", inputs: [], outputs: []}
    in: []
    out: []
"""


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_registries_of_every_image_a_workflow_names_inherited_ones_included(tmp_path: Path) -> None:
    (tmp_path / "wf.cwl").write_text(WORKFLOW)
    assert registries_of(find(tmp_path / "wf.cwl").images) == ["docker.io", "registry.lan:5000"]


def test_only_the_registries_asked_for_get_credentials_from_auths_and_helpers(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": _auth("hub", "hub-secret"),
                                           "elsewhere.lan": _auth("x", "not-sent")}}))
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"auths": {"registry.lan:5000": _auth("team", "team-secret")}}))
    header, covered = registry_auth_header(["registry.lan:5000", "docker.io", "quay.io"], [str(first), str(second)])
    assert covered == ["docker.io", "registry.lan:5000"]
    assert header is not None and "not-sent" not in base64.urlsafe_b64decode(header).decode()
    assert parse_registry_auth(header) == {"docker.io": AuthConfig("hub", "hub-secret"),
                                           "registry.lan:5000": AuthConfig("team", "team-secret")}
    assert registry_auth_header(["quay.io"], [str(first)]) == (None, [])
    assert registry_auth_header(["docker.io"], []) == (None, [])
