"""RunWorkflow request checks, before anything reaches a backend."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from wes_arvados.errors import BadRequest, TooLarge
from wes_arvados.fetch_guard import FetchGuard
from wes_arvados.wes.limits import Limits
from wes_arvados.wes.submission import (
    Attachment,
    check_attachment_name,
    parse_submission,
    resolve_locations,
)

WORKFLOW = b"cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\ninputs: []\noutputs: []\n"


def _form(**kw):
    form = {"workflow_type": "CWL", "workflow_type_version": "v1.2", "workflow_url": "wf.cwl", "workflow_params": "{}"}
    form.update(kw)
    return {k: v for k, v in form.items() if v is not None}


def _submit(tmp_path: Path, form, names=("wf.cwl",), content=WORKFLOW, allowed=()):
    attachments = [Attachment(n, io.BytesIO(content)) for n in names]
    return parse_submission(form, attachments, tmp_path / "stage", list(allowed), lambda url, dest: None)


@pytest.mark.parametrize("name", ["../x.cwl", "a/../../x", "/etc/passwd", "a\x00b", "a\\b", "", "..", "./..", "_workflow_url/x"])
def test_dangerous_attachment_names_are_refused(name):
    with pytest.raises(BadRequest):
        check_attachment_name(name)


def test_attachment_names_are_normalized():
    assert check_attachment_name("./a//b/c.cwl") == "a/b/c.cwl"


def test_refused_attachment_writes_nothing(tmp_path):
    with pytest.raises(BadRequest, match="leaves the run directory"):
        _submit(tmp_path, _form(), names=("wf.cwl", "sub/../../evil"))
    assert not (tmp_path / "stage").exists()
    assert not (tmp_path / "evil").exists()


def test_subdirectories_are_kept(tmp_path):
    sub = _submit(tmp_path, _form(workflow_url="tools/wf.cwl"), names=("tools/wf.cwl", "data/in.txt"))
    assert (sub.staging_dir / "tools" / "wf.cwl").read_bytes() == WORKFLOW
    assert (sub.staging_dir / "data" / "in.txt").exists()
    assert sub.workflow == "tools/wf.cwl"


def test_fragment_is_kept(tmp_path):
    sub = _submit(tmp_path, _form(workflow_url="wf.cwl#main"))
    assert sub.workflow == "wf.cwl#main"


@pytest.mark.parametrize("field,value,message", [
    ("workflow_params", "{not json", "workflow_params is not valid JSON"),
    ("workflow_params", "[1, 2]", "workflow_params must be a JSON object"),
    ("tags", '{"a": 1}', "tags must map strings to strings"),
    ("tags", "nope", "tags is not valid JSON"),
    ("workflow_engine_parameters", '"x"', "workflow_engine_parameters must be a JSON object"),
    ("workflow_type", "WDL", "workflow_type 'WDL' is not supported"),
    ("workflow_type", None, "workflow_type is required"),
    ("workflow_type_version", "v9.9", "workflow_type_version 'v9.9' is not supported"),
    ("workflow_type_version", "v1.0", "does not match the document's cwlVersion 'v1.2'"),
    ("workflow_url", None, "workflow_url is required"),
    ("workflow_url", "other.cwl", "not among the workflow_attachment files"),
    ("workflow_url", "file:///etc/passwd", "names a file on the server"),
    ("workflow_url", "/etc/passwd", "names a file on the server"),
    ("workflow_url", "ftp://example.org/x.cwl", "scheme 'ftp' is not supported"),
])
def test_bad_fields_are_refused_with_a_precise_message(tmp_path, field, value, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        _submit(tmp_path, _form(**{field: value}))
    assert not (tmp_path / "stage").exists()


def test_workflow_type_is_case_insensitive_and_echoed_as_sent(tmp_path):
    sub = _submit(tmp_path, _form(workflow_type="cwl"))
    assert sub.request.workflow_type == "cwl"


def test_document_without_cwl_version_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="has no cwlVersion"):
        _submit(tmp_path, _form(), content=b"class: Workflow\n")


def test_allowed_directory_permits_server_workflow(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "wf.cwl").write_bytes(WORKFLOW)
    sub = _submit(tmp_path, _form(workflow_url=(shared / "wf.cwl").as_uri()), names=(), allowed=[str(shared)])
    assert (sub.staging_dir / sub.workflow).read_bytes() == WORKFLOW


def test_relative_input_locations_resolve_against_attachments(tmp_path):
    params = {"a": {"class": "File", "location": "data/in.txt"}, "b": [{"class": "Directory", "path": "d"}]}
    resolved = resolve_locations(json.loads(json.dumps(params)), tmp_path, [])
    assert resolved["a"]["location"] == (tmp_path / "data" / "in.txt").as_uri()
    assert resolved["b"][0]["path"] == str(tmp_path / "d")


@pytest.mark.parametrize("location", ["../secret", "file:///etc/passwd", "/etc/passwd", "a/../../b"])
def test_input_locations_outside_attachments_are_refused(tmp_path, location):
    with pytest.raises(BadRequest, match="outside the attachments"):
        resolve_locations({"a": {"class": "File", "location": location}}, tmp_path, [])


def test_remote_input_locations_are_left_to_the_engine(tmp_path):
    params = {"a": {"class": "File", "location": "https://example.org/x.txt"}}
    assert resolve_locations(params, tmp_path, [])["a"]["location"] == "https://example.org/x.txt"


@pytest.mark.parametrize("location, said", [
    ("http://10.1.2.3/x.txt", "10.1.2.3:80 is refused: 10.1.2.3 is a private address (RFC 1918)"),
    ("https://[::1]:8443/x", "[::1]:8443 is refused: ::1 is a loopback address"),
    ("http://[::ffff:169.254.169.254]/", "is a cloud metadata address"),
    ("http://example.org:99999/x", "has an invalid port"),
    ("https:///x", "names no host"),
])
def test_remote_input_locations_the_server_may_not_fetch_are_refused(tmp_path, location, said):
    with pytest.raises(BadRequest, match="^input location " + re.escape(repr(location))) as caught:
        resolve_locations({"a": {"class": "File", "location": location}}, tmp_path, [], guard=FetchGuard())
    assert said in str(caught.value)
    allowed = FetchGuard(["10.0.0.0/8", "::1", "169.254.169.254", "example.org"])
    if "port" not in said and "host" not in said:
        assert resolve_locations({"a": {"class": "File", "location": location}}, tmp_path, [], guard=allowed)


def test_a_remote_name_that_does_not_resolve_is_left_to_the_engine(tmp_path):
    params = {"a": {"class": "File", "location": "https://no-such-host.invalid/x.txt"}}
    assert resolve_locations(params, tmp_path, [], guard=FetchGuard())["a"]["location"] == params["a"]["location"]


def test_a_name_sent_twice_with_the_same_bytes_is_accepted(tmp_path):
    sub = _submit(tmp_path, _form(), names=("wf.cwl", "wf.cwl"))
    assert (sub.staging_dir / "wf.cwl").read_bytes() == WORKFLOW
    assert sorted(p.name for p in sub.staging_dir.iterdir()) == ["wf.cwl"]


def test_a_name_sent_twice_with_different_bytes_is_refused(tmp_path):
    attachments = [Attachment("wf.cwl", io.BytesIO(WORKFLOW)), Attachment("wf.cwl", io.BytesIO(b"other"))]
    with pytest.raises(BadRequest, match="sent twice with different contents"):
        parse_submission(_form(), attachments, tmp_path / "stage", [], lambda url, dest: None)
    assert not (tmp_path / "stage").exists()


def test_a_name_that_is_both_file_and_directory_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="both a file and a directory"):
        _submit(tmp_path, _form(), names=("wf.cwl", "data", "data/x.txt"))
    assert not (tmp_path / "stage").exists()


SMALL = Limits(attachments=3, attachment_bytes=1000, json_bytes=2000, json_depth=5, tags=2, tag_chars=10)


@pytest.mark.parametrize("form,names,content,error,message", [
    ({}, ("wf.cwl", "a", "b", "c"), WORKFLOW, TooLarge, "4 workflow_attachment files; this server takes at most 3"),
    ({}, ("wf.cwl", "big"), WORKFLOW + b"#" * 1000, TooLarge, "'wf.cwl' is larger than this server's limit of 1000"),
    ({"workflow_params": json.dumps({"x": "y" * 2000})}, ("wf.cwl",), WORKFLOW, TooLarge,
     "workflow_params is larger than this server's limit of 2000 bytes"),
    ({"workflow_params": '{"a": [[[[[1]]]]]}'}, ("wf.cwl",), WORKFLOW, BadRequest,
     "workflow_params is nested deeper than this server's limit of 5"),
    ({"workflow_engine_parameters": "[" * 100_000 + "]" * 100_000}, ("wf.cwl",), WORKFLOW, TooLarge,
     "workflow_engine_parameters is larger"),
    ({"tags": json.dumps({"a": "1", "b": "2", "c": "3"})}, ("wf.cwl",), WORKFLOW, BadRequest,
     "3 tags; this server takes at most 2"),
    ({"tags": json.dumps({"project": "x" * 11})}, ("wf.cwl",), WORKFLOW, BadRequest,
     "keys and values may have at most 10 characters"),
])
def test_a_request_over_a_limit_is_refused_with_its_limit_and_leaves_nothing(tmp_path, form, names, content, error,
                                                                              message):
    attachments = [Attachment(n, io.BytesIO(content)) for n in names]
    with pytest.raises(error, match=message) as refused:
        parse_submission(_form(**form), attachments, tmp_path / "stage", [], lambda url, dest: None, SMALL)
    assert refused.value.status_code == (413 if error is TooLarge else 400)
    assert not (tmp_path / "stage").exists()
    # At the limits, the same request is taken.
    ok = parse_submission(_form(tags=json.dumps({"a": "x" * 10, "b": ""}), workflow_params='{"a": [[[1]]]}'),
                          [Attachment(n, io.BytesIO(WORKFLOW)) for n in ("wf.cwl", "a", "b")],
                          tmp_path / "ok", [], lambda url, dest: None, SMALL)
    ok.discard()


def test_json_nested_past_pythons_own_recursion_limit_is_a_400_not_a_crash(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(BadRequest, match="nested deeper"):
        parse_submission(_form(workflow_params=deep), [Attachment("wf.cwl", io.BytesIO(WORKFLOW))], tmp_path / "s", [],
                         lambda url, dest: None)
