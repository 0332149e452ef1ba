"""A running server refuses to fetch a workflow_url from loopback, private or metadata addresses unless allow-listed.

The real server (`WesServer`, which otherwise allow-lists loopback for the other
tests), real HTTP servers on loopback serving the workflow, and a dockerLoad URL
through the local backend's own loading step.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

from wes_arvados.fetch_guard import FetchGuard
from wes_arvados.images.cwl import ImageNeed
from wes_arvados.images.errors import ImageError
from wes_arvados.local.images import _load

from ..threaded import redirected
from ..wes import DATA, WesClient, WesServer

FORM = {"workflow_type": "CWL", "workflow_type_version": "v1.2", "workflow_params": '{"name": "web"}'}


class Serving(http.server.SimpleHTTPRequestHandler):
    """Serves tests/data; `/to/<url>` redirects there; every request recorded."""

    seen: List[str] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, directory=str(DATA), **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(f"{self.server.server_address[1]} {self.path}")
        if redirected(self):
            return
        super().do_GET()


def _serve() -> http.server.ThreadingHTTPServer:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serving)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def allowed() -> Iterator[http.server.ThreadingHTTPServer]:
    """The one web server the server may fetch from."""
    httpd = _serve()
    yield httpd
    httpd.shutdown()


@pytest.fixture(scope="module")
def other() -> Iterator[http.server.ThreadingHTTPServer]:
    """A web server on loopback that the server may not fetch from."""
    httpd = _serve()
    yield httpd
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           allowed: http.server.ThreadingHTTPServer) -> Iterator[WesServer]:
    """A server whose fetch_allow names one host:port only."""
    wes = WesServer(tmp_path_factory.mktemp("fetch") / "state",
                    env={"WES_ARVADOS_FETCH_ALLOW": f"127.0.0.1:{allowed.server_address[1]}"}).start()
    yield wes
    wes.stop()
    wes.kill_runs()


def _submit(server: WesServer, url: str) -> dict:
    client = WesClient(server.url)
    response = client.http.post(client.url + "/runs", data={"workflow_url": url, **FORM}, timeout=60)
    return {"status": response.status_code, **response.json()}


def _runs(server: WesServer) -> list:
    return WesClient(server.url).get("/runs").json()["runs"]


def _nothing_left(server: WesServer, runs: int = 0) -> None:
    """Nothing staged, and no more than the `runs` the server had before."""
    staging = server.state_dir / "staging"
    assert not staging.exists() or os.listdir(staging) == []
    assert len(_runs(server)) == runs


@pytest.mark.parametrize("host, said", [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "it resolves to "),
])
def test_a_loopback_workflow_url_is_refused_with_a_400_naming_the_host_and_nothing_is_left(
        server: WesServer, other: http.server.ThreadingHTTPServer, host: str, said: str) -> None:
    Serving.seen = []
    port = other.server_address[1]
    url = f"http://{host}:{port}/hello.cwl"
    answer = _submit(server, url)
    assert answer["status"] == 400 and answer["status_code"] == 400
    assert answer["msg"].startswith(f"workflow_url {url!r} could not be fetched: {host}:{port} is refused: {said}")
    assert "the operator may allow-list it in the fetch_allow setting" in answer["msg"]
    assert Serving.seen == []
    _nothing_left(server)


def test_a_metadata_workflow_url_is_refused_at_once(server: WesServer) -> None:
    answer = _submit(server, "http://169.254.169.254/latest/meta-data/")
    assert answer["status"] == 400
    assert "169.254.169.254:80 is refused: 169.254.169.254 is a cloud metadata address" in answer["msg"]
    _nothing_left(server)


def test_a_redirect_from_the_allowed_host_to_another_is_refused(server: WesServer,
                                                                allowed: http.server.ThreadingHTTPServer,
                                                                other: http.server.ThreadingHTTPServer) -> None:
    Serving.seen = []
    target = f"http://127.0.0.1:{other.server_address[1]}/hello.cwl"
    answer = _submit(server, f"http://127.0.0.1:{allowed.server_address[1]}/to/{target}")
    assert answer["status"] == 400
    assert f"127.0.0.1:{other.server_address[1]} is refused: 127.0.0.1 is a loopback address" in answer["msg"]
    assert Serving.seen == [f"{allowed.server_address[1]} /to/{target}"]  # the other server was never asked
    _nothing_left(server)


def test_an_allow_listed_workflow_url_is_fetched_and_runs(server: WesServer,
                                                          allowed: http.server.ThreadingHTTPServer) -> None:
    client = WesClient(server.url)
    answer = _submit(server, f"http://127.0.0.1:{allowed.server_address[1]}/hello.cwl")
    assert answer["status"] == 200, answer
    assert client.wait(answer["run_id"])["state"] == "COMPLETE"


class NoRuntime:
    """A container runtime that must not be reached."""

    name = "none"

    def load(self, path: Path) -> None:
        raise AssertionError("nothing may be loaded")


def test_a_docker_load_url_at_a_private_address_is_refused_and_nothing_is_downloaded(
        tmp_path: Path, other: http.server.ThreadingHTTPServer) -> None:
    Serving.seen = []
    url = f"http://127.0.0.1:{other.server_address[1]}/hello.cwl"
    need = ImageNeed("img", "load", True, ("tool",), url)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ImageError) as caught:
        _load(NoRuntime(), need, tmp_path, work, FetchGuard())  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"dockerLoad {url} could not be fetched: 127.0.0.1:{other.server_address[1]} is refused: 127.0.0.1 is a "
        "loopback address; this server does not fetch from loopback, link-local, private or cloud metadata "
        "addresses (the operator may allow-list it in the fetch_allow setting)")
    assert Serving.seen == [] and os.listdir(work) == []


SIZE_TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [wc, -c]
inputs:
  f: {type: File, inputBinding: {position: 1}}
stdout: size.txt
outputs:
  size: {type: stdout}
"""


def _submit_files(server: WesServer, workflow: str, params: dict) -> dict:
    client = WesClient(server.url)
    form = {**FORM, "workflow_url": "main.cwl", "workflow_params": json.dumps(params)}
    response = client.http.post(client.url + "/runs", data=form, files=[("workflow_attachment", ("main.cwl", workflow))],
                                timeout=60)
    return {"status": response.status_code, **response.json()}


def test_a_step_run_from_a_loopback_url_is_refused_at_submission(server: WesServer,
                                                                 other: http.server.ThreadingHTTPServer) -> None:
    Serving.seen = []
    runs = len(_runs(server))
    url = f"http://127.0.0.1:{other.server_address[1]}/hello.cwl"
    workflow = ("cwlVersion: v1.2\nclass: Workflow\ninputs: {name: string}\noutputs: {}\n"
                f"steps:\n  s:\n    run: {url}\n    in: {{name: name}}\n    out: []\n")
    answer = _submit_files(server, workflow, {"name": "x"})
    assert answer["status"] == 400, answer
    assert answer["msg"].startswith(f"workflow document 'main.cwl' (run) {url!r} will not be fetched: "
                                    f"127.0.0.1:{other.server_address[1]} is refused: 127.0.0.1 is a loopback address")
    assert Serving.seen == []
    _nothing_left(server, runs)


@pytest.mark.parametrize("host", ["169.254.169.254", "metadata.google.internal"])
def test_an_input_file_at_a_metadata_address_is_refused_at_submission(server: WesServer, host: str) -> None:
    runs = len(_runs(server))
    url = f"http://{host}/latest/meta-data/iam"
    answer = _submit_files(server, SIZE_TOOL, {"f": {"class": "File", "location": url}})
    assert answer["status"] == 400, answer
    assert answer["msg"].startswith(f"input location {url!r} will not be fetched: {host}:80 is refused: ")
    assert "cloud metadata" in answer["msg"]
    _nothing_left(server, runs)


def test_an_input_file_redirected_to_a_refused_host_is_refused_when_the_engine_fetches_it(
        server: WesServer, allowed: http.server.ThreadingHTTPServer, other: http.server.ThreadingHTTPServer) -> None:
    """The redirect is not known at submission: the runner's own resolver check refuses the second host."""
    Serving.seen = []
    target = f"http://127.0.0.1:{other.server_address[1]}/hello.cwl"
    answer = _submit_files(server, SIZE_TOOL, {"f": {
        "class": "File", "location": f"http://127.0.0.1:{allowed.server_address[1]}/to/{target}"}})
    assert answer["status"] == 200, answer
    client = WesClient(server.url)
    log = client.wait(answer["run_id"])
    assert log["state"] in ("EXECUTOR_ERROR", "SYSTEM_ERROR"), log["state"]
    stderr = " ".join(client.http.get(log["run_log"]["stderr"], timeout=30).text.split())  # cwltool wraps lines
    assert f"127.0.0.1:{other.server_address[1]} is refused: 127.0.0.1 is a loopback address" in stderr, stderr[-3000:]
    assert Serving.seen == [f"{allowed.server_address[1]} /to/{target}"]  # the other server was never asked


def test_an_input_file_at_an_allow_listed_host_is_fetched_by_the_engine(
        server: WesServer, allowed: http.server.ThreadingHTTPServer) -> None:
    answer = _submit_files(server, SIZE_TOOL, {"f": {
        "class": "File", "location": f"http://127.0.0.1:{allowed.server_address[1]}/hello.cwl"}})
    assert answer["status"] == 200, answer
    client = WesClient(server.url)
    log = client.wait(answer["run_id"])
    assert log["state"] == "COMPLETE", client.http.get(log["run_log"]["stderr"], timeout=30).text[-3000:]
    size = client.http.get(log["outputs"]["size"]["location"], timeout=30).text
    assert size.split()[0] == str((DATA / "hello.cwl").stat().st_size)
