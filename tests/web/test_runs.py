"""Runs through the real server: states, logs, tasks, outputs, cancel, filters."""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path

import psutil
import requests

from ..wes import DATA, WesClient, WesServer

WF = Path(__file__).resolve().parents[1] / "local" / "data"


def test_service_info_reports_wes_1_1_and_live_counts(client: WesClient):
    info = client.get("/service-info").json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "wes", "version": "1.1.0"}
    assert info["workflow_type_versions"]["CWL"]["workflow_type_version"] == ["v1.0", "v1.1", "v1.2"]
    assert info["workflow_engine_versions"] == {"cwltool": {"workflow_engine_version": [version("cwltool")]}}
    assert info["system_state_counts"]["COMPLETE"] == 0
    run_id = client.run(DATA / "hello.cwl", {"name": "x"})
    client.wait(run_id)
    info = client.get("/service-info").json()
    assert info["system_state_counts"]["COMPLETE"] == 1


def test_run_completes_and_its_output_downloads_through_the_outputs_url(client: WesClient):
    run_id = client.run(DATA / "hello.cwl", {"name": "world"}, tags={"project": "demo"})
    log = client.wait(run_id)
    assert log["state"] == "COMPLETE"
    assert log["run_log"]["exit_code"] == 0
    assert log["request"]["workflow_params"] == {"name": "world"}
    assert log["request"]["tags"] == {"project": "demo"}
    output = log["outputs"]["greeting"]
    assert output["location"].startswith(client.url + f"/runs/{run_id}/outputs/")
    assert "path" not in output
    assert requests.get(output["location"]).content == b"hello world\n"
    assert output["size"] == len(b"hello world\n")
    stderr = requests.get(log["run_log"]["stderr"])
    assert stderr.status_code == 200 and "Final process status is success" in stderr.text
    assert stderr.headers["Content-Type"].startswith("text/plain") and len(stderr.raw.headers.getlist("Date")) == 1
    part = requests.get(log["run_log"]["stderr"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == stderr.content[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(stderr.content)}"
    unchanged = requests.get(output["location"], headers={"If-Modified-Since": stderr.headers["Last-Modified"]})
    assert unchanged.status_code == 304
    assert log["run_log"]["start_time"] <= log["run_log"]["end_time"]
    assert log["run_log"]["cmd"][0] == "cwltool"


def test_every_cwl_job_is_a_task_with_its_own_logs(client: WesClient):
    run_id = client.run(WF / "workflow.cwl", {"message": "hi", "words": ["a", "b", "c"]},
                        attachments=[WF / n for n in ("echo.cwl", "cat.cwl", "shout.cwl", "summarize.cwl")])
    log = client.wait(run_id)
    assert log["state"] == "COMPLETE", log
    tasks = client.get(f"/runs/{run_id}/tasks").json()["task_logs"]
    # first, second, three scatter jobs of shout, summarize
    assert len(tasks) == 6
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks)
    shouts = [t for t in tasks if t["name"].startswith("shout")]
    assert len(shouts) == 3 and all(t["exit_code"] == 0 for t in shouts)
    page1 = client.get(f"/runs/{run_id}/tasks", params={"page_size": 4}).json()
    page2 = client.get(f"/runs/{run_id}/tasks", params={"page_size": 4, "page_token": page1["next_page_token"]}).json()
    assert [t["id"] for t in page1["task_logs"] + page2["task_logs"]] == [t["id"] for t in tasks]
    assert page2["next_page_token"] == ""
    one = client.get(f"/runs/{run_id}/tasks/{tasks[0]['id']}").json()
    assert one == tasks[0]
    assert one["cmd"] and requests.get(one["stderr"]).status_code == 200


def test_failing_tool_is_executor_error_with_its_exit_code(client: WesClient):
    log = client.wait(client.run(WF / "fail.cwl"))
    assert log["state"] == "EXECUTOR_ERROR"
    assert log["run_log"]["exit_code"] == 1
    assert log["outputs"] == {}
    task = client.get(f"/runs/{log['run_id']}/tasks").json()["task_logs"][0]
    assert task["exit_code"] == 1
    assert requests.get(task["stderr"]).text == "failing now\n"


def test_unsupported_requirement_keeps_exit_code_33(client: WesClient):
    run_id = client.run(WF / "needs_docker.cwl", workflow_engine_parameters={"--no-container": None})
    log = client.wait(run_id)
    assert log["state"] == "EXECUTOR_ERROR"
    assert log["run_log"]["exit_code"] == 33


def _engine_processes(state_dir: Path, run_id: str):
    return [p for p in psutil.process_iter(["cmdline"]) if any(run_id in a for a in (p.info["cmdline"] or []))]


def test_cancel_stops_the_engine_and_every_process_it_started(client: WesClient, server: WesServer):
    run_id = client.run(WF / "sleep.cwl")
    client.wait(run_id, timeout=60, states=["RUNNING"])
    deadline = time.monotonic() + 30
    while not [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-2:] == ["sleep", "600"]]:
        assert time.monotonic() < deadline, "the tool never started"
        time.sleep(0.2)
    assert client.http.post(f"{client.url}/runs/{run_id}/cancel").json() == {"run_id": run_id}
    log = client.wait(run_id, timeout=60)
    assert log["state"] == "CANCELED"
    time.sleep(0.5)
    assert not [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-2:] == ["sleep", "600"]]
    assert not _engine_processes(server.state_dir, run_id)
    again = client.http.post(f"{client.url}/runs/{run_id}/cancel")
    assert again.status_code == 200


def test_cancel_of_a_queued_run_is_immediate_and_finished_runs_refuse(tmp_path: Path):
    server = WesServer(tmp_path / "state", max_concurrent_runs=1).start()
    try:
        client = WesClient(server.url)
        blocker = client.run(WF / "sleep.cwl")
        queued = client.run(DATA / "hello.cwl", {"name": "q"})
        client.wait(blocker, timeout=60, states=["RUNNING"])
        assert client.status(queued) == "QUEUED"
        client.http.post(f"{client.url}/runs/{queued}/cancel")
        assert client.status(queued) == "CANCELED"
        client.http.post(f"{client.url}/runs/{blocker}/cancel")
        client.wait(blocker)
        done = client.run(DATA / "hello.cwl", {"name": "d"})
        assert client.wait(done)["state"] == "COMPLETE"
        refused = client.http.post(f"{client.url}/runs/{done}/cancel")
        assert refused.status_code == 400
        assert refused.json() == {"msg": f"run '{done}' has already finished (COMPLETE); it cannot be canceled",
                                  "status_code": 400}
    finally:
        server.stop()
        server.kill_runs()


def test_list_runs_filters_by_state_and_tag(client: WesClient):
    ok = client.run(DATA / "hello.cwl", {"name": "a"}, tags={"team": "red", "kind": "hello"})
    bad = client.run(WF / "fail.cwl", tags={"team": "blue"})
    client.wait(ok), client.wait(bad)
    def ids(**params):
        return [r["run_id"] for r in client.get("/runs", params=params).json()["runs"]]
    assert ids() == [bad, ok]
    assert ids(state="COMPLETE") == [ok]
    assert ids(state=["COMPLETE", "EXECUTOR_ERROR"]) == [bad, ok]
    assert ids(tag="team:blue") == [bad]
    assert ids(tag=["team:red", "kind:hello"]) == [ok]
    assert ids(tag=["team:red", "kind:other"]) == []
    summary = client.get("/runs").json()["runs"][1]
    assert summary["tags"] == {"team": "red", "kind": "hello"} and summary["state"] == "COMPLETE"
    assert summary["start_time"] and summary["end_time"]


def test_engine_parameters_are_applied_ignored_with_a_note_or_refused(client: WesClient):
    run_id = client.run(DATA / "hello.cwl", {"name": "p"},
                        workflow_engine_parameters={"--outdir": "/somewhere", "--logDebug": None, "--timestamps": None})
    log = client.wait(run_id)
    assert log["state"] == "COMPLETE"
    assert "--timestamps" in log["run_log"]["cmd"]
    assert any("--outdir ignored: the server sets it" in line for line in log["system_logs"])
    assert any("--logDebug ignored" in line for line in log["system_logs"])
    refused = client.submit(DATA / "hello.cwl", {"name": "p"}, workflow_engine_parameters={"--cachedir": "/tmp/x"})
    assert refused.status_code == 400
    assert "--cachedir is not allowed" in refused.json()["msg"]


def _serve_directory(directory: Path):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_http_workflow_url_is_fetched_by_the_server(client: WesClient):
    httpd = _serve_directory(DATA)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hello.cwl"
        response = client.http.post(client.url + "/runs", data={
            "workflow_url": url, "workflow_type": "cwl", "workflow_type_version": "v1.2",
            "workflow_params": '{"name": "web"}'}, files=[])
        assert response.status_code == 200, response.text
        log = client.wait(response.json()["run_id"])
        assert log["state"] == "COMPLETE"
        assert log["request"]["workflow_url"] == url
        assert requests.get(log["outputs"]["greeting"]["location"]).content == b"hello web\n"
        missing = client.http.post(client.url + "/runs", data={
            "workflow_url": url.replace("hello", "absent"), "workflow_type": "CWL", "workflow_type_version": "v1.2"})
        assert missing.status_code == 400 and "answered HTTP 404" in missing.json()["msg"]
    finally:
        httpd.shutdown()


def test_http_workflow_url_over_the_size_limit_is_refused(tmp_path: Path):
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_FETCH_MAX_BYTES": "100"}).start()
    httpd = _serve_directory(DATA)
    try:
        client = WesClient(server.url)
        response = client.http.post(client.url + "/runs", data={
            "workflow_url": f"http://127.0.0.1:{httpd.server_address[1]}/hello.cwl",
            "workflow_type": "CWL", "workflow_type_version": "v1.2"})
        assert response.status_code == 400
        assert "is larger than 100 bytes" in response.json()["msg"]
        assert client.get("/runs").json()["runs"] == []
    finally:
        httpd.shutdown()
        server.stop()
        server.kill_runs()


def test_output_directories_and_odd_names_are_served(client: WesClient, tmp_path: Path):
    tool = tmp_path / "dirs.cwl"
    tool.write_text("""cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'mkdir -p "A:B dir/sub" && echo one > "A:B dir/one.txt" && echo two > "A:B dir/sub/two.txt"']
inputs: []
outputs:
  out:
    type: Directory
    outputBinding: {glob: "A:B dir"}
""")
    log = client.wait(client.run(tool))
    assert log["state"] == "COMPLETE", log
    directory = log["outputs"]["out"]
    assert directory["location"].startswith(client.url), directory["location"]
    listing = requests.get(directory["location"]).json()
    assert listing["class"] == "Directory" and listing["basename"] == "A:B dir"
    entries = {e["basename"]: e for e in listing["listing"]}
    assert entries["one.txt"]["class"] == "File" and entries["one.txt"]["size"] == 4
    assert requests.get(entries["one.txt"]["location"]).content == b"one\n"
    sub = requests.get(entries["sub"]["location"]).json()
    assert [e["basename"] for e in sub["listing"]] == ["two.txt"]
