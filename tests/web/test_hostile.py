"""Hostile RunWorkflow requests against a real server: each gets a clear 4xx ErrorResponse and leaves nothing behind.

The bodies are built byte by byte (`_multipart`), so that a request can carry
what a well-behaved client library would not: the same field twice, bytes that
are not UTF-8, names with NULs and backslashes. After every refusal the state
directory is checked: no staged files, no run directory, no run row.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple

import pytest
import requests

from ..wes import DATA, WesServer

HELLO = (DATA / "hello.cwl").read_bytes()
Part = Tuple[str, Optional[bytes], bytes]  # field name, file name (None: a plain field), content
MAX_JSON_BYTES = 1_000_000
MAX_UPLOAD_BYTES = 48 << 20


def _multipart(parts: List[Part]) -> Tuple[bytes, str]:
    """A multipart/form-data body exactly as given, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, content in parts:
        disposition = b'form-data; name="' + name.encode() + b'"'
        if filename is not None:
            # Quoted as RFC 7578 clients quote it (a backslash escapes the next character).
            disposition += b'; filename="' + filename.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        body += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def _fields(**kw: Optional[bytes]) -> List[Part]:
    fields = {"workflow_url": b"hello.cwl", "workflow_type": b"CWL", "workflow_type_version": b"v1.2",
              "workflow_params": json.dumps({"name": "x"}).encode()}
    fields.update(kw)
    return [(k, None, v) for k, v in fields.items() if v is not None]


def _attachment(name: bytes, content: bytes) -> Part:
    return ("workflow_attachment", name, content)


def _post(server: WesServer, parts: List[Part]) -> requests.Response:
    _nothing_left(server, assert_=False)  # what an earlier test left is that test's failure, not this one's
    body, content_type = _multipart(parts)
    return requests.post(server.url + "/runs", data=body, headers={"Content-Type": content_type}, timeout=120)


def _refused(response: requests.Response, status: int, fragment: str) -> str:
    """Check a WES ErrorResponse with this status whose message says `fragment`; return the message."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"msg", "status_code"} and body["status_code"] == status
    assert fragment in body["msg"], body["msg"]
    assert "root:" not in response.text and "Traceback" not in response.text
    return body["msg"]


_REPORTED: Set[str] = set()  # what an earlier test already failed on, so that one leftover fails one test


def _nothing_left(server: WesServer, assert_: bool = True) -> None:
    """No staged files, no run directory, no run row (none new since the last check)."""
    left = {str(p) for sub in ("staging", "runs") if (server.state_dir / sub).exists()
            for p in (server.state_dir / sub).iterdir()}
    left |= {r["run_id"] for r in requests.get(server.url + "/runs", timeout=30).json()["runs"]}
    new = left - _REPORTED
    _REPORTED.update(left)
    assert not (assert_ and new), f"left behind: {sorted(new)}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WesServer]:
    """One server for every refusal (none of them may leave a run), with a small JSON limit."""
    server = WesServer(tmp_path_factory.mktemp("hostile") / "state",
                       env={"WES_ARVADOS_MAX_JSON_BYTES": str(MAX_JSON_BYTES),
                            "WES_ARVADOS_MAX_ATTACHMENT_BYTES": str(32 << 20),
                            "WES_ARVADOS_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)}).start()
    try:
        yield server
        _nothing_left(server)
    finally:
        server.stop()
        server.kill_runs()


# ---- path traversal --------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    b"../escape.txt", b"a/../../escape.txt", b"/etc/passwd", b"//etc/passwd", b"./a/./../../escape.txt",
    b"..\\escape.txt", b"a\\..\\..\\escape.txt", b"C:\\Windows\\escape.txt", b"x\x00y", b"..", b"../",
    b"_workflow_url/hello.cwl",
])
def test_traversal_in_attachment_names_is_refused(hostile: WesServer, name: bytes):
    response = _post(hostile, _fields() + [_attachment(b"hello.cwl", HELLO), _attachment(name, b"data")])
    _refused(response, 400, "workflow_attachment name")
    _nothing_left(hostile)
    assert not (hostile.state_dir.parent / "escape.txt").exists()


@pytest.mark.parametrize("url,fragment", [
    ("file:///etc/passwd", "names a file on the server"),
    ("file://localhost/etc/passwd", "names a file on the server"),
    ("/etc/passwd", "names a file on the server"),
    ("../../etc/passwd", "is not a valid attachment path"),
    ("%2e%2e/%2e%2e/etc/passwd", "is not a valid attachment path"),
    ("hello.cwl/../../../etc/passwd", "is not a valid attachment path"),
    ("..\\..\\etc\\passwd", "is not a valid attachment path"),
    ("hello.cwl%00.txt", "is not a valid attachment path"),
    ("ftp://example.org/wf.cwl", "scheme 'ftp' is not supported"),
])
def test_traversal_in_workflow_url_is_refused(hostile: WesServer, url: str, fragment: str):
    response = _post(hostile, _fields(workflow_url=url.encode()) + [_attachment(b"hello.cwl", HELLO)])
    _refused(response, 400, fragment)
    _nothing_left(hostile)


@pytest.mark.parametrize("key,location", [
    (key, location) for key in ("location", "path") for location in (
        "file:///etc/passwd", "/etc/passwd", "../../etc/passwd", "a/../../../etc/passwd",
        "file:///etc/%2e%2e/etc/passwd", "/etc/passwd\x00.txt")
] + [("location", "%2e%2e/%2e%2e/etc/passwd")])  # a location is a URI: "%2e%2e" is ".." to the engine
def test_traversal_in_input_locations_is_refused(hostile: WesServer, key: str, location: str):
    params = {"name": "x", "extra": {"class": "File", key: location},
              "dir": {"class": "Directory", "location": "data", "listing": [{"class": "File", key: location}]}}
    response = _post(hostile, _fields(workflow_params=json.dumps(params).encode())
                     + [_attachment(b"hello.cwl", HELLO), _attachment(b"data/in.txt", b"in")])
    _refused(response, 400, "is outside the attachments and not in an allowed directory")
    _nothing_left(hostile)


# ---- the workflow document naming server files ---------------------------------------------------

SERVER_REFERENCES = [
    # (what the document holds, the reference named in the refusal)
    ("inputs:\n  $import: /etc/passwd\n", "/etc/passwd"),
    ("inputs:\n  $import: file:///etc/passwd\n", "file:///etc/passwd"),
    ("inputs: []\narguments:\n  - $include: /etc/passwd\n", "/etc/passwd"),
    ("inputs: []\narguments:\n  - $include: ../../../../../../../../etc/passwd\n", "../../../../../../../../etc/passwd"),
    ("inputs:\n  f:\n    type: File\n    default: {class: File, location: file:///etc/passwd}\n", "file:///etc/passwd"),
    ("inputs:\n  f:\n    type: File\n    default: {class: File, path: /etc/passwd}\n", "/etc/passwd"),
    ("inputs: []\nrequirements:\n  InitialWorkDirRequirement:\n    listing:\n"
     "      - {class: File, location: /etc/passwd}\n", "/etc/passwd"),
    ("inputs: []\nrequirements:\n  DockerRequirement: {dockerLoad: /var/lib/other.tar}\n", "/var/lib/other.tar"),
    ("inputs: []\n$schemas: [https://example.org/x.rdf, file:///etc/passwd]\n", "file:///etc/passwd"),
]


@pytest.mark.parametrize("body,reference", SERVER_REFERENCES)
def test_a_document_naming_a_server_file_is_refused(hostile: WesServer, body: str, reference: str):
    document = f"cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\noutputs: []\n{body}"
    response = _post(hostile, _fields(workflow_url=b"tool.cwl", workflow_params=b"{}")
                     + [_attachment(b"tool.cwl", document.encode())])
    message = _refused(response, 400, f"names {reference!r}")
    assert "outside the attachments" in message
    _nothing_left(hostile)


def test_a_step_running_a_server_document_is_refused(hostile: WesServer):
    workflow = ("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
                "steps:\n  s:\n    run: file:///etc/wes/other.cwl#main\n    in: []\n    out: []\n")
    response = _post(hostile, _fields(workflow_url=b"wf.cwl", workflow_params=b"{}")
                     + [_attachment(b"wf.cwl", workflow.encode())])
    _refused(response, 400, "names 'file:///etc/wes/other.cwl#main' (run)")
    _nothing_left(hostile)


def test_a_server_file_named_by_an_imported_attachment_is_refused(hostile: WesServer):
    # The main document is harmless; the attachment it imports includes /etc/passwd.
    main = ("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
            "steps:\n  s:\n    run: tools/tool.cwl\n    in: []\n    out: []\n")
    tool = "cwlVersion: v1.2\nclass: CommandLineTool\ninputs: []\noutputs: []\nbaseCommand: {$include: ../x/../../secret}\n"
    response = _post(hostile, _fields(workflow_url=b"wf.cwl", workflow_params=b"{}")
                     + [_attachment(b"wf.cwl", main.encode()), _attachment(b"tools/tool.cwl", tool.encode())])
    _refused(response, 400, "workflow document 'tools/tool.cwl' names '../x/../../secret' ($include)")
    _nothing_left(hostile)


def test_references_among_the_attachments_are_accepted(tmp_path: Path):
    """The control: the same kinds of reference, kept among the attachments, pass the check."""
    server = WesServer(tmp_path / "state").start()
    try:
        main = ("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
                "steps:\n  s:\n    run: tools/tool.cwl\n    in: []\n    out: []\n")
        tool = ("cwlVersion: v1.2\nclass: CommandLineTool\noutputs: []\nbaseCommand: {$include: ../cmd.txt}\n"
                "inputs:\n  f:\n    type: File\n    default: {class: File, location: ../data/in.txt}\n")
        response = _post(server, _fields(workflow_url=b"wf.cwl", workflow_params=b"{}")
                         + [_attachment(b"wf.cwl", main.encode()), _attachment(b"tools/tool.cwl", tool.encode()),
                            _attachment(b"cmd.txt", b"true"), _attachment(b"data/in.txt", b"in")])
        assert response.status_code == 200, response.text
    finally:
        server.stop()
        server.kill_runs()


# ---- sizes and shapes ------------------------------------------------------------------------------

def test_a_huge_graph_is_refused_by_the_document_size_limit(hostile: WesServer):
    graph = {"cwlVersion": "v1.2", "$graph": [
        {"class": "CommandLineTool", "id": f"#t{n}", "inputs": [], "outputs": [], "baseCommand": "true"}
        for n in range(100_000)]}
    document = json.dumps(graph).encode()
    assert len(document) > 5 * MAX_JSON_BYTES
    response = _post(hostile, _fields(workflow_url=b"packed.cwl#t0", workflow_params=b"{}")
                     + [_attachment(b"packed.cwl", document)])
    _refused(response, 413, f"this server's limit is {MAX_JSON_BYTES} bytes (max_json_bytes)")
    _nothing_left(hostile)


def test_a_billion_laughs_document_is_refused(hostile: WesServer):
    lines = ["cwlVersion: v1.2", "class: CommandLineTool", "baseCommand: echo", "inputs: []", "outputs: []",
             "doc: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 10)]
    response = _post(hostile, _fields(workflow_url=b"laughs.cwl", workflow_params=b"{}")
                     + [_attachment(b"laughs.cwl", "\n".join(lines).encode())])
    _refused(response, 413, "expands (through YAML aliases) to more than")
    _nothing_left(hostile)


def test_deeply_nested_params_are_refused(hostile: WesServer):
    response = _post(hostile, _fields(workflow_params=b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
                     + [_attachment(b"hello.cwl", HELLO)])
    _refused(response, 400, "workflow_params is nested deeper than this server's limit")
    _nothing_left(hostile)


def test_oversized_params_are_refused(hostile: WesServer):
    params = json.dumps({"name": "x" * (MAX_JSON_BYTES + 1)}).encode()
    response = _post(hostile, _fields(workflow_params=params) + [_attachment(b"hello.cwl", HELLO)])
    _refused(response, 413, f"workflow_params is larger than this server's limit of {MAX_JSON_BYTES} bytes")
    _nothing_left(hostile)


def test_oversized_params_sent_as_a_file_part_are_refused(hostile: WesServer):
    """As some clients send fields: a file part."""
    params = json.dumps({"name": "x" * (8 * MAX_JSON_BYTES)}).encode()
    fields = [part for part in _fields() if part[0] != "workflow_params"]
    response = _post(hostile, fields + [("workflow_params", b"params.json", params), _attachment(b"hello.cwl", HELLO)])
    _refused(response, 413, f"workflow_params is larger than this server's limit of {MAX_JSON_BYTES} bytes")
    _nothing_left(hostile)


def test_an_attachment_over_its_limit_is_refused_midway(hostile: WesServer):
    response = _post(hostile, _fields() + [_attachment(b"hello.cwl", HELLO),
                                           _attachment(b"big.bin", b"\0" * ((32 << 20) + 1))])
    _refused(response, 413, "'big.bin' is larger than this server's limit of 33554432 bytes per file")
    _nothing_left(hostile)


def test_a_body_over_the_upload_limit_is_refused_naming_it(hostile: WesServer):
    parts = _fields() + [_attachment(b"hello.cwl", HELLO)] + [_attachment(f"{n}.bin".encode(), b"\0" * (30 << 20))
                                                              for n in range(2)]
    _refused(_post(hostile, parts), 413, f"this server's limit is {MAX_UPLOAD_BYTES} bytes (max_upload_bytes)")
    _nothing_left(hostile)


def test_a_tag_too_long_is_refused(hostile: WesServer):
    response = _post(hostile, _fields(tags=json.dumps({"k": "v" * 5000}).encode()) + [_attachment(b"hello.cwl", HELLO)])
    _refused(response, 400, "keys and values may have at most 4096 characters")
    _nothing_left(hostile)


def test_a_gzip_bomb_attachment_is_stored_as_sent_never_inflated(tmp_path: Path):
    """Nothing on the server inflates attachments: a bomb is kept at its own (limited) size."""
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    server = WesServer(tmp_path / "state").start()
    try:
        response = _post(server, _fields() + [_attachment(b"hello.cwl", HELLO), _attachment(b"bomb.gz", bomb),
                                              _attachment(b"bomb.tar.gz", bomb)])
        assert response.status_code == 200, response.text
        workdir = server.state_dir / "runs" / response.json()["run_id"] / "workdir"
        assert (workdir / "bomb.gz").read_bytes() == bomb
        assert (workdir / "bomb.tar.gz").stat().st_size == len(bomb)
        assert sum(p.stat().st_size for p in server.state_dir.rglob("*") if p.is_file()) < 64 << 20
    finally:
        server.stop()
        server.kill_runs()


# ---- encodings and duplicates -------------------------------------------------------------------

@pytest.mark.parametrize("field", ["workflow_params", "tags", "workflow_engine_parameters", "workflow_url",
                                   "workflow_type_version"])
def test_a_field_that_is_not_utf8_is_refused(hostile: WesServer, field: str):
    values = {"workflow_params": b'{"name": "\xff\xfe"}', "tags": b'{"k": "\xc3\x28"}',
              "workflow_engine_parameters": b'{"--debug": "\xed\xa0\x80"}', "workflow_url": b"hello\xff.cwl",
              "workflow_type_version": b"v1.2\x80"}
    response = _post(hostile, _fields(**{field: values[field]}) + [_attachment(b"hello.cwl", HELLO)])
    _refused(response, 400, f"{field} is not valid UTF-8")
    _nothing_left(hostile)


def test_a_field_sent_as_a_file_part_that_is_not_utf8_is_refused(hostile: WesServer):
    response = _post(hostile, _fields(workflow_params=None) + [_attachment(b"hello.cwl", HELLO),
                                                              ("workflow_params", b"params.json", b'{"name": "\xff"}')])
    _refused(response, 400, "workflow_params is not valid UTF-8")
    _nothing_left(hostile)


def test_a_workflow_document_that_is_not_utf8_is_refused(hostile: WesServer):
    response = _post(hostile, _fields() + [_attachment(b"hello.cwl", HELLO.replace(b"Writes", b"Wr\xffites"))])
    _refused(response, 400, "workflow document 'hello.cwl' is not valid UTF-8 (byte")
    _nothing_left(hostile)


@pytest.mark.parametrize("field", ["workflow_params", "workflow_url", "workflow_type", "tags"])
def test_a_field_sent_twice_is_refused(hostile: WesServer, field: str):
    values = {"workflow_params": b'{"name": "x"}', "workflow_url": b"hello.cwl", "workflow_type": b"CWL",
              "tags": b"{}"}
    twice = [(field, None, values[field]), (field, None, values[field])]
    parts = [p for p in _fields() if p[0] != field] + twice + [_attachment(b"hello.cwl", HELLO)]
    _refused(_post(hostile, parts), 400, f"{field} was sent 2 times; send each field once")
    _nothing_left(hostile)


def test_a_field_sent_both_as_a_field_and_as_a_file_part_is_refused(hostile: WesServer):
    parts = _fields() + [_attachment(b"hello.cwl", HELLO), ("workflow_url", b"url.txt", b"other.cwl")]
    _refused(_post(hostile, parts), 400, "workflow_url was sent more than once")
    _nothing_left(hostile)


def test_the_same_attachment_twice_with_different_contents_is_refused(hostile: WesServer):
    parts = _fields() + [_attachment(b"hello.cwl", HELLO), _attachment(b"in.txt", b"a"), _attachment(b"in.txt", b"b")]
    _refused(_post(hostile, parts), 400, "'in.txt' was sent twice with different contents")
    _nothing_left(hostile)


def test_an_attachment_without_a_file_name_is_refused(hostile: WesServer):
    parts = _fields() + [_attachment(b"hello.cwl", HELLO), ("workflow_attachment", None, b"data")]
    _refused(_post(hostile, parts), 400, "a workflow_attachment has no file name")
    _nothing_left(hostile)


def test_a_json_body_that_is_not_utf8_is_refused(hostile: WesServer):
    response = requests.post(hostile.url + "/images", data=b'{"image": "\xff"}',
                             headers={"Content-Type": "application/json"}, timeout=30)
    _refused(response, 400, "the request body is not valid UTF-8")


def test_a_path_with_a_newline_is_a_404_not_a_crash(hostile: WesServer):
    for path in ("/runs/%0A", "/runs/x%0A/cancel", "/runs/%0A/tasks/%0A", "/runs/a%0Ab/status"):
        response = requests.request("POST" if path.endswith("cancel") else "GET", hostile.url + path, timeout=30)
        _refused(response, 404, "")
