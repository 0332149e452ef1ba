"""One run cannot read another run's directory through what it names: inputs, workflow_url, the document's references.

A first run keeps a secret among its attachments; a second run then names that
file in every way a request can (``file://``, an absolute path, ``..`` from its
own attachments, a symlink in an allowed directory, the workflow document's
``$include`` / ``run`` / defaults / ``dockerLoad``). Each is refused at
submission, and the secret is in no answer. An allowed directory that holds the
state directory is refused when the server starts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Tuple

import pytest
import requests

from wes_arvados.config import Config
from wes_arvados.errors import ConfigError

from ..wes import DATA, WesClient, WesServer, require

SECRET = b"SECRET-OF-RUN-A"
HELLO = (DATA / "hello.cwl").read_bytes()
CAT = b"""cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
stdout: out.txt
inputs:
  f: {type: File, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[WesServer, Path, Path]]:
    """A server with an allowed directory, and run A finished with its secret attachment."""
    base = tmp_path_factory.mktemp("isolation")
    allowed = base / "allowed"
    allowed.mkdir()
    (allowed / "shared.txt").write_bytes(b"shared data\n")
    server = WesServer(base / "state", extra_args=["--allowed-dir", str(allowed)]).start()
    try:
        client = WesClient(server.url)
        response = client.http.post(server.url + "/runs", timeout=60, data={
            "workflow_url": "hello.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
            "workflow_params": json.dumps({"name": "a"})},
            files=[("workflow_attachment", ("hello.cwl", HELLO)), ("workflow_attachment", ("secret.txt", SECRET))])
        assert response.status_code == 200, response.text
        run_a = response.json()["run_id"]
        assert client.wait(run_a)["state"] == "COMPLETE"
        secret = server.state_dir / "runs" / run_a / "workdir" / "secret.txt"
        assert secret.read_bytes() == SECRET
        yield server, secret, allowed
    finally:
        server.stop()
        server.kill_runs()


def _submit(server: WesServer, params: dict, document: bytes = CAT, url: str = "tool.cwl") -> requests.Response:
    return requests.post(server.url + "/runs", timeout=60, data={
        "workflow_url": url, "workflow_type": "CWL", "workflow_type_version": "v1.2",
        "workflow_params": json.dumps(params)}, files=[("workflow_attachment", ("tool.cwl", document)),
                                                       ("workflow_attachment", ("mine.txt", b"mine\n"))])


def _runs(server: WesServer) -> int:
    return len(requests.get(server.url + "/runs", timeout=30).json()["runs"])


def _refused(server: WesServer, response: requests.Response, fragment: str, runs_before: int) -> None:
    assert response.status_code == 400, response.text
    assert fragment in response.json()["msg"], response.json()["msg"]
    assert SECRET.decode() not in response.text
    assert _runs(server) == runs_before
    assert not any((server.state_dir / "staging").iterdir())


def _ways_to_name(secret: Path) -> list:
    run_a = secret.parent.parent.name
    return [
        secret.as_uri(),
        str(secret),
        f"file://{secret.parent}/./../workdir/secret.txt",
        # From run B's staging directory (<state>/staging/<id>/) and from its run directory (<state>/runs/<id>/workdir/).
        f"../../runs/{run_a}/workdir/secret.txt",
        f"../../{run_a}/workdir/secret.txt",
        f"mine/../../../runs/{run_a}/workdir/secret.txt",
        f"%2e%2e/%2e%2e/runs/{run_a}/workdir/secret.txt",
    ]


def test_an_input_cannot_name_another_runs_file(two_runs):
    server, secret, _ = two_runs
    before = _runs(server)
    for location in _ways_to_name(secret):
        for key in ("location", "path"):
            if key == "path" and location.startswith(("file:", "%")):
                continue  # a path is a path, not a URI
            response = _submit(server, {"f": {"class": "File", key: location}})
            _refused(server, response, "is outside the attachments and not in an allowed directory", before)


def test_a_workflow_document_cannot_name_another_runs_file(two_runs):
    server, secret, _ = two_runs
    before = _runs(server)
    for reference in _ways_to_name(secret):
        documents = [
            CAT.replace(b"baseCommand: cat", b"baseCommand: [cat, {$include: '" + reference.encode() + b"'}]"),
            CAT.replace(b"inputBinding: {position: 1}}", b"inputBinding: {position: 1}, default: "
                        b"{class: File, location: '" + reference.encode() + b"'}}"),
            CAT + b"requirements:\n  DockerRequirement: {dockerLoad: '" + reference.encode() + b"'}\n",
        ]
        for document in documents:
            _refused(server, _submit(server, {"f": {"class": "File", "location": "mine.txt"}}, document),
                     "outside the attachments and not in a directory the operator allowed", before)
    workflow = (b"cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\nsteps:\n  s:\n    run: '"
                + (secret.parent / "hello.cwl").as_uri().encode() + b"'\n    in: {name: {default: x}}\n    out: []\n")
    _refused(server, _submit(server, {}, workflow), "(run)", before)


def test_workflow_url_cannot_name_another_runs_document(two_runs):
    server, secret, _ = two_runs
    before = _runs(server)
    for url in (secret.with_name("hello.cwl").as_uri(), str(secret.with_name("hello.cwl")),
                f"../../runs/{secret.parent.parent.name}/workdir/hello.cwl"):
        response = _submit(server, {"name": "b"}, url=url)
        assert response.status_code == 400, response.text
        assert _runs(server) == before


def test_a_symlink_in_an_allowed_directory_does_not_lead_into_another_run(two_runs):
    server, secret, allowed = two_runs
    link = allowed / "link-to-secret.txt"
    link.symlink_to(secret)
    linked_dir = allowed / "link-to-run"
    linked_dir.symlink_to(secret.parent, target_is_directory=True)
    before = _runs(server)
    for location in (link.as_uri(), str(link), (linked_dir / "secret.txt").as_uri()):
        _refused(server, _submit(server, {"f": {"class": "File", "location": location}}),
                 "is outside the attachments and not in an allowed directory", before)


def test_an_allowed_directory_file_is_read_the_control(two_runs):
    """The same request, naming a file the operator allowed, runs and reads it (so the refusals above are the check)."""
    server, _, allowed = two_runs
    client = WesClient(server.url)
    response = _submit(server, {"f": {"class": "File", "location": (allowed / "shared.txt").as_uri()}})
    assert response.status_code == 200, response.text
    log = client.wait(response.json()["run_id"])
    assert log["state"] == "COMPLETE", log
    assert requests.get(log["outputs"]["out"]["location"], timeout=30).content == b"shared data\n"


def _ends_executor_error_without_the_secret(server: WesServer, response: requests.Response, fragment: str) -> None:
    assert response.status_code == 200, response.text
    run_id = response.json()["run_id"]
    log = WesClient(server.url).wait(run_id)
    assert log["state"] == "EXECUTOR_ERROR", log
    stderr = requests.get(log["run_log"]["stderr"], timeout=30).text
    assert fragment in stderr, stderr
    run_dir = server.state_dir / "runs" / run_id
    assert not list((run_dir / "outputs").iterdir())
    for path in run_dir.rglob("*"):  # no copy of the secret anywhere in the run: logs, outputs, tasks
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_bytes(), path


def test_an_expression_cannot_hand_out_another_runs_file(two_runs):
    require(shutil.which("node") is not None, "JavaScript expressions need Node.js")
    server, secret, _ = two_runs
    expression = (b"cwlVersion: v1.2\nclass: ExpressionTool\nrequirements: {InlineJavascriptRequirement: {}}\n"
                  b"inputs: []\noutputs: {f: File}\nexpression: '$({\"f\": {\"class\": \"File\", \"location\": \""
                  + secret.as_uri().encode() + b"\"}})'\n")
    _ends_executor_error_without_the_secret(
        server, _submit(server, {}, expression),
        f"its outputs name files outside the run and the allowed directories: {secret.as_uri()}")


def test_a_symlink_a_tool_leaves_in_its_output_does_not_lead_into_another_run(two_runs):
    server, secret, _ = two_runs
    # In a container this link would dangle; cwltool, outside it, would copy what it points to.
    tool = (b"cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [ln, -s, '" + str(secret).encode()
            + b"', leak.txt]\ninputs: []\noutputs: {f: {type: File, outputBinding: {glob: leak.txt}}}\n")
    _ends_executor_error_without_the_secret(server, _submit(server, {}, tool),
                                            "its outputs name files outside the run and the allowed directories")


@pytest.mark.parametrize("allowed", ["{state}", "{state}/runs", "{parent}", "/"])
def test_an_allowed_directory_overlapping_the_state_directory_is_refused(tmp_path: Path, allowed: str):
    state = tmp_path / "state"
    directory = allowed.format(state=state, parent=tmp_path)
    with pytest.raises(ConfigError, match="overlaps the state directory"):
        Config(state_dir=str(state), allowed_dirs=[directory]).validate()
    Config(state_dir=str(state), allowed_dirs=[str(tmp_path / "data")]).validate()


def test_a_server_with_its_state_in_an_allowed_directory_does_not_start(tmp_path: Path):
    server = WesServer(tmp_path / "state", extra_args=["--allowed-dir", str(tmp_path)])
    with pytest.raises(RuntimeError, match="overlaps the state directory"):
        server.start(timeout=30)
    assert not os.path.exists(tmp_path / "state" / "wes.sqlite")
