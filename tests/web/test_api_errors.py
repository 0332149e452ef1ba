"""Every refused request gets a WES ErrorResponse with the right status, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ..wes import DATA, WesClient, WesServer

HELLO = (DATA / "hello.cwl").read_bytes()


def _post(client: WesClient, data: dict, files: list) -> requests.Response:
    return client.http.post(client.url + "/runs", data=data, files=files, timeout=60)


def _fields(**kw):
    fields = {"workflow_url": "hello.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
              "workflow_params": json.dumps({"name": "x"})}
    fields.update(kw)
    return {k: v for k, v in fields.items() if v is not None}


def _assert_error(response: requests.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"msg", "status_code"}
    assert body["status_code"] == status
    assert fragment in body["msg"], body["msg"]
    assert "Traceback" not in body["msg"] and "<html" not in response.text.lower()


def _nothing_stored(server: WesServer, client: WesClient) -> None:
    assert client.get("/runs").json()["runs"] == []
    runs = server.state_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    staging = server.state_dir / "staging"
    assert not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "./a/./../../escape.txt", "x\x00y"])
def test_path_traversal_in_attachment_names_is_refused(server, client, name):
    response = _post(client, _fields(), [("workflow_attachment", ("hello.cwl", HELLO)),
                                         ("workflow_attachment", (name, b"data"))])
    _assert_error(response, 400, "workflow_attachment name")
    _nothing_stored(server, client)
    assert not (server.state_dir.parent / "escape.txt").exists()


@pytest.mark.parametrize("field", ["workflow_params", "tags", "workflow_engine_parameters"])
def test_malformed_json_fields_are_refused(server, client, field):
    response = _post(client, _fields(**{field: '{"unterminated": '}), [("workflow_attachment", ("hello.cwl", HELLO))])
    _assert_error(response, 400, f"{field} is not valid JSON")
    _nothing_stored(server, client)


@pytest.mark.parametrize("workflow_type", ["WDL", "nextflow", ""])
def test_wrong_workflow_type_is_refused(server, client, workflow_type):
    response = _post(client, _fields(workflow_type=workflow_type), [("workflow_attachment", ("hello.cwl", HELLO))])
    _assert_error(response, 400, "workflow_type")
    _nothing_stored(server, client)


def test_workflow_type_version_must_match_the_document(server, client):
    response = _post(client, _fields(workflow_type_version="v1.0"), [("workflow_attachment", ("hello.cwl", HELLO))])
    _assert_error(response, 400, "does not match the document's cwlVersion 'v1.2'")


@pytest.mark.parametrize("url,fragment", [(None, "workflow_url is required"),
                                          ("missing.cwl", "not among the workflow_attachment files"),
                                          ("file:///etc/hostname", "names a file on the server")])
def test_missing_or_unusable_workflow_url_is_refused(server, client, url, fragment):
    response = _post(client, _fields(workflow_url=url), [("workflow_attachment", ("hello.cwl", HELLO))])
    _assert_error(response, 400, fragment)
    _nothing_stored(server, client)


@pytest.mark.parametrize("path", ["/runs/{id}", "/runs/{id}/status", "/runs/{id}/tasks", "/runs/{id}/tasks/0001",
                                  "/runs/{id}/logs/stdout", "/runs/{id}/outputs/x.txt",
                                  "/runs/{id}/tasks/0001/logs/stderr"])
def test_unknown_run_id_is_404(client, path):
    _assert_error(client.get(path.format(id="no-such-run")), 404, "no run with id 'no-such-run'")


def test_cancel_of_unknown_run_is_404(client):
    _assert_error(client.http.post(client.url + "/runs/nope/cancel"), 404, "no run with id 'nope'")


def test_unknown_task_and_output_of_a_real_run_are_404(client):
    run_id = client.run(DATA / "hello.cwl", {"name": "t"})
    client.wait(run_id)
    _assert_error(client.get(f"/runs/{run_id}/tasks/9999"), 404, "has no task '9999'")
    _assert_error(client.get(f"/runs/{run_id}/outputs/nothing.txt"), 404, "has no output 'nothing.txt'")
    for escape in ("../request.json", "..%2Frequest.json", "%2E%2E/%2E%2E/wes.sqlite"):
        response = client.get(f"/runs/{run_id}/outputs/{escape}")
        assert response.status_code == 404, (escape, response.text)
        assert "workflow_params" not in response.text
    # Names no file system holds (over 255 bytes): 404s, not the 500 of ENAMETOOLONG.
    long_name = "T\u0301o" * 120
    _assert_error(client.get(f"/runs/{run_id}/tasks/{long_name}/logs/stderr"), 404, "has no task")
    _assert_error(client.get(f"/runs/{run_id}/tasks/0001.stdout/logs/stderr"), 404, "has no task")
    _assert_error(client.get(f"/runs/{run_id}/outputs/{long_name}"), 404, "has no output")
    _assert_error(client.get(f"/runs/{run_id}/outputs/{long_name}/x"), 404, "has no output")


def test_oversized_upload_is_413_and_stores_nothing(tmp_path: Path):
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_MAX_UPLOAD_BYTES": "100000"}).start()
    try:
        client = WesClient(server.url)
        big = b"x" * 200_000
        response = _post(client, _fields(), [("workflow_attachment", ("hello.cwl", HELLO)),
                                             ("workflow_attachment", ("big.bin", big))])
        _assert_error(response, 413, "too large")
        _nothing_stored(server, client)
        ok = _post(client, _fields(), [("workflow_attachment", ("hello.cwl", HELLO))])
        assert ok.status_code == 200
    finally:
        server.stop()
        server.kill_runs()


def test_the_request_limits_answer_413_and_400_through_the_server_and_store_nothing(tmp_path: Path):
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_MAX_ATTACHMENTS": "2", "WES_ARVADOS_MAX_TAGS": "1",
                                                "WES_ARVADOS_MAX_JSON_DEPTH": "3"}).start()
    try:
        client = WesClient(server.url)
        hello = ("workflow_attachment", ("hello.cwl", HELLO))
        many = [hello] + [("workflow_attachment", (f"f{n}.txt", b"x")) for n in range(2)]
        _assert_error(_post(client, _fields(), many), 413, "3 workflow_attachment files; this server takes at most 2")
        _assert_error(_post(client, {**_fields(), "tags": json.dumps({"a": "1", "b": "2"})}, [hello]), 400,
                      "2 tags; this server takes at most 1")
        _assert_error(_post(client, {**_fields(), "workflow_params": json.dumps({"name": [["x"]]})}, [hello]), 400,
                      "workflow_params is nested deeper than this server's limit of 3")
        _nothing_stored(server, client)
        assert _post(client, {**_fields(), "tags": json.dumps({"a": "1"})}, many[:2]).status_code == 200
    finally:
        server.stop()
        server.kill_runs()


def test_bad_paging_arguments_are_400(client):
    _assert_error(client.get("/runs", params={"page_token": "garbage!"}), 400, "page_token")
    _assert_error(client.get("/runs", params={"page_size": 0}), 400, "page_size")
    _assert_error(client.get("/runs", params={"page_size": 1001}), 400, "page_size")
    _assert_error(client.get("/runs", params={"page_size": 1001}), 400, "maximum of 1000")
    _assert_error(client.get("/runs/x/tasks", params={"page_size": 10**9}), 400, "maximum of 1000")
    assert client.get("/runs", params={"page_size": 1000}).status_code == 200
    _assert_error(client.get("/runs", params={"state": "SLEEPING"}), 400, "SLEEPING")
    _assert_error(client.get("/runs", params={"tag": "novalue"}), 400, "key:value")


def test_unknown_endpoint_and_method_are_json_errors(client):
    _assert_error(client.get("/nothing-here"), 404, "no such endpoint")
    _assert_error(client.http.delete(client.url + "/runs"), 405, "method not allowed")
