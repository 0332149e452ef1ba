"""WES on Arvados end to end: a real server with --backend arvados, the double, a-c-r, and no docker anywhere."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psutil
import pytest
import requests

from ..conformance.suite import PEERS_BIN, TOIL_WES_RUNNER
from ..images.builder import ImageFactory, _marker, build_image, busybox_rootfs_layer, push
from ..images.conftest import basic_registry, fault_proxy, image_factory, registry  # noqa: F401  (fixtures)
from ..images.registry import Delay, FaultProxy, Registry
from ..threaded import ThreadedServer
from ..wes import WesClient, WesServer, free_port
from .double import ArvadosDouble
from .test_double import (
    WORKFLOW,
    Client,
    _installed,
    container_request,
    make_image,
    new_user,
    unique,
)

RUNNER_IMAGE = f"arvados/jobs:{_installed('arvados-cwl-runner')}"


@pytest.fixture
def server(arvados_double: ArvadosDouble, registry: Registry, image_factory: ImageFactory,  # noqa: F811
           tmp_path: Path) -> Iterator[WesServer]:
    repo, tag = RUNNER_IMAGE.split(":")
    push(registry, repo, tag, image_factory.oci())  # arvados/jobs, served as docker.io's mirror
    wes = WesServer(tmp_path / "state", extra_args=["--backend", "arvados", "--registry-mirror",
                                                    f"docker.io=http://{registry.host}"],
                    env={"ARVADOS_API_HOST": arvados_double.host, "ARVADOS_API_HOST_INSECURE": "1",
                         "PATH": str(Path(sys.executable).parent)}).start()  # no docker on PATH
    try:
        yield wes
    finally:
        wes.stop()


def _tool_workflow(registry: Any, image_factory: ImageFactory, path: Path, new_image: bool = False) -> str:  # noqa: F811
    """A tool image pushed to `registry` (a Registry or FaultProxy) under a name of its own, and a workflow using it.

    The image is the factory's schema2 image, or with `new_image` one made for this call (not in Keep yet).
    """
    repo = unique("tools/echo")
    image_data = build_image([busybox_rootfs_layer(), _marker(repo)]) if new_image else image_factory.docker_schema2()
    push(registry, repo, "1", image_data)
    image = f"{registry.host}/{repo}:1"
    path.write_text(WORKFLOW.format(image=image))
    return image


def _client(server: WesServer, token: str) -> WesClient:
    client = WesClient(server.url)
    client.http.headers["Authorization"] = f"Bearer {token}"
    return client


def _committed(double: ArvadosDouble, run_id: str, timeout: float = 120) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = double.record(run_id)
        if record and record["state"] != "Uncommitted":
            return record
        assert not (record or {}).get("properties", {}).get("wes_arvados_preparation", {}).get("state") == "failed", \
            record
        time.sleep(0.3)
    raise AssertionError(f"{run_id} was not committed: {double.record(run_id)}")


def test_a_run_goes_from_submission_to_outputs_through_wes(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, hello_world_image: Dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    owner, other = new_user(arvados_double, arvados_client, "wes"), new_user(arvados_double, arvados_client, "wes")
    tool = _tool_workflow(registry, image_factory, tmp_path / "wf.cwl")
    client = _client(server, owner["token"])
    refused = client.submit(tmp_path / "wf.cwl", {"message": "hi"}, workflow_engine_parameters={"--local": None})
    assert refused.status_code == 400 and "--local is not allowed" in refused.json()["msg"]
    assert arvados_double.records("container_requests", owner_uuid=owner["uuid"]) == []  # nothing half-made
    run_id = client.run(tmp_path / "wf.cwl", {"message": "hi"}, tags={"project": "demo"},
                        workflow_engine_parameters={"priority": "7", "--output-name": "greeting",
                                                    "--outdir": "/elsewhere"})

    record = _committed(arvados_double, run_id)
    assert record["command"][0] == "arvados-cwl-runner" and record["owner_uuid"] == owner["uuid"]
    assert record["priority"] == 7 and "--output-name=greeting" in record["command"]  # a-c-r took the options
    assert "dockerCollectionPDH" in json.dumps(record["mounts"]["/var/lib/cwl/workflow.json"]["content"])
    assert client.status(run_id) == "QUEUED"
    log = client.log(run_id)
    assert log["request"]["workflow_params"] == {"message": "hi"} and log["request"]["tags"] == {"project": "demo"}
    # The preparation's lines outlive a-c-r's commit (carried in the ProcessProperties hint).
    assert any(f"image {tool}: pulled" in line for line in log["system_logs"]), log["system_logs"]
    assert any(f"image {RUNNER_IMAGE}:" in line for line in log["system_logs"]), log["system_logs"]
    assert any("--outdir ignored: the server sets it" in line for line in log["system_logs"]), log["system_logs"]

    arvados_double.set_container_state(record["container_uuid"], "Running")
    arvados_double.write_live_log(record["container_uuid"], "stderr.txt", "INFO working\n")
    assert client.status(run_id) == "RUNNING"
    assert client.http.get(client.log(run_id)["run_log"]["stderr"], timeout=30).text == "INFO working\n"

    # The runner submits a step: a child request, made with its container's token, is the run's task.
    image = make_image(owner["api"], hello_world_image, [])["portable_data_hash"]
    runner_api = arvados_client(arvados_double.container_token(record["container_uuid"]))
    step = runner_api.container_requests().create(body=container_request(image, name="echo")).execute()
    tasks = client.get(f"/runs/{run_id}/tasks").json()["task_logs"]
    assert [(t["id"], t["name"]) for t in tasks] == [(step["uuid"], "echo")]
    arvados_double.set_container_state(step["container_uuid"], "Complete", exit_code=0,
                                       log={"stdout.txt": "hi\n", "stderr.txt": ""})
    task = client.get(f"/runs/{run_id}/tasks/{step['uuid']}").json()
    assert task["exit_code"] == 0 and client.http.get(task["stdout"], timeout=30).text == "hi\n"

    arvados_double.set_container_state(record["container_uuid"], "Complete", exit_code=0,
                                       log={"stderr.txt": "INFO done\n"}, output={
                                           "cwl.output.json": json.dumps({"out": {"class": "File",
                                                                                  "location": "out.txt"}}),
                                           "out.txt": "hello\n"})
    done = client.wait(run_id, timeout=30)
    assert done["state"] == "COMPLETE" and done["run_log"]["exit_code"] == 0
    assert client.http.get(done["run_log"]["stderr"], timeout=30).text == "INFO done\n"
    assert client.http.get(done["outputs"]["out"]["location"], timeout=30).text == "hello\n"

    # Another user sees none of it; no token is a 401.
    stranger = _client(server, other["token"])
    assert stranger.get(f"/runs/{run_id}").status_code == 404
    assert stranger.get("/runs").json()["runs"] == []
    assert sum(stranger.get("/service-info").json()["system_state_counts"].values()) == 0
    assert client.get("/service-info").json()["system_state_counts"]["COMPLETE"] == 1
    assert client.get("/runs").json()["runs"][0]["run_id"] == run_id
    assert requests.get(f"{server.url}/runs/{run_id}", timeout=30).status_code == 401
    secret = owner["token"].rsplit("/", 1)[-1]
    assert secret not in server.log_path.read_text(errors="replace")  # tokens are never logged
    assert secret not in json.dumps(arvados_double.record(run_id))  # nor put in a property


def test_the_wes_states_follow_the_containers_the_dispatcher_drives(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    owner = new_user(arvados_double, arvados_client, "states")
    _tool_workflow(registry, image_factory, tmp_path / "wf.cwl")
    client = _client(server, owner["token"])
    failing, canceled, preempted, held = (client.run(tmp_path / "wf.cwl", {"message": m}) for m in "abcd")

    _committed(arvados_double, held)  # canceled while its container is Queued: Final, not left on hold
    assert client.http.post(f"{client.url}/runs/{held}/cancel", timeout=30).status_code == 200
    assert client.status(held) == "CANCELED"
    assert arvados_double.record(held)["state"] == "Final"

    container = _committed(arvados_double, failing)["container_uuid"]
    assert client.status(failing) == "QUEUED"
    arvados_double.set_container_state(container, "Locked")
    assert client.status(failing) == "INITIALIZING"
    arvados_double.set_container_state(container, "Running")
    assert client.status(failing) == "RUNNING"
    arvados_double.set_container_state(container, "Complete", exit_code=3, log={"stderr.txt": "failed\n"})
    log = client.log(failing)
    assert (log["state"], log["run_log"]["exit_code"]) == ("EXECUTOR_ERROR", 3)

    container = _committed(arvados_double, canceled)["container_uuid"]
    arvados_double.set_container_state(container, "Running")
    assert client.http.post(f"{client.url}/runs/{canceled}/cancel", timeout=30).status_code == 200
    assert client.status(canceled) == "CANCELING"  # priority 0; the container still runs
    arvados_double.set_container_state(container, "Cancelled")  # the dispatcher stops it
    assert client.status(canceled) == "CANCELED"

    record = _committed(arvados_double, preempted)
    notice = {"preemptionNotice": "spot instance reclaimed"}
    for attempt in range(record["container_count_max"]):
        arvados_double.set_container_state(record["container_uuid"], "Running")
        arvados_double.set_container_state(record["container_uuid"], "Cancelled", runtime_status=notice)
        record = arvados_double.record(preempted)
        if record["state"] == "Committed":  # Arvados retried: the run follows the new container
            assert client.status(preempted) == "QUEUED", attempt
    assert record["state"] == "Final" and client.status(preempted) == "PREEMPTED"


def test_an_image_named_by_digest_on_a_registry_with_a_port_is_pinned_to_its_collection(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        tmp_path: Path) -> None:
    owner = new_user(arvados_double, arvados_client, "digest")
    repo = unique("tools/digest")
    digest = push(registry, repo, "1", build_image([busybox_rootfs_layer(), _marker(repo)]))
    image = f"{registry.host}/{repo}@{digest}"  # a port and a digest: a-c-r's own parsing gets both wrong
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=image))
    client = _client(server, owner["token"])
    # Sent as an http workflow_url, which a-c-r mishandles: the server downloads it and submits the file.
    with ThreadedServer(functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))) as files:
        url = f"http://127.0.0.1:{files.port}/wf.cwl"
        answer = client.http.post(f"{client.url}/runs", timeout=60, data={
            "workflow_url": url, "workflow_type": "CWL", "workflow_type_version": "v1.2",
            "workflow_params": json.dumps({"message": "hi"})})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["run_id"]
    record = _committed(arvados_double, run_id)
    assert client.log(run_id)["request"]["workflow_url"] == url
    stored = owner["api"].collections().list(filters=[["properties.wes_arvados_manifest_digest", "=", digest]]) \
        .execute()["items"]
    assert len(stored) == 1
    workflow = json.dumps(record["mounts"]["/var/lib/cwl/workflow.json"]["content"])
    assert f'dockerCollectionPDH": "{stored[0]["portable_data_hash"]}"' in workflow, workflow


def test_a_run_whose_image_cannot_be_had_is_a_system_error_that_names_it(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        tmp_path: Path) -> None:
    owner = new_user(arvados_double, arvados_client, "wes")
    missing = f"{registry.host}/{unique('not/there')}:1"
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=missing))
    client = WesClient(server.url)  # HTTP Basic with the token as password, as toil-wes-cwl-runner sends it
    client.http.auth = ("anyone", owner["token"])
    run_id = client.run(tmp_path / "wf.cwl", {"message": "hi"})
    log = client.wait(run_id, timeout=120)
    assert log["state"] == "SYSTEM_ERROR", log
    assert any("preparation failed" in line and missing in line for line in log["system_logs"]), log["system_logs"]
    assert arvados_double.record(run_id)["state"] == "Uncommitted"  # a-c-r never ran; nothing was half-submitted


def _client_run(argv: List[str], env: Dict[str, str], workdir: Path, double: ArvadosDouble, owner: Dict[str, Any],
                output: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, Any], str]:
    """Run a WES client command in `workdir` as `owner`, playing Arvados' dispatcher for its run.

    Once a-c-r has committed the run, its container completes with `output` (files of the output
    collection; none by default). Returns the committed runner request and the client's stdout;
    fails unless the client exits 0. The client's PATH holds no docker.
    """
    assert shutil.which("docker", path=env["PATH"]) is None
    before = {r["uuid"] for r in double.records("container_requests", owner_uuid=owner["uuid"])}
    runner = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (committed := [r for r in double.records("container_requests", owner_uuid=owner["uuid"],
                                                           state="Committed") if r["uuid"] not in before]):
            assert time.monotonic() < deadline and runner.poll() is None, runner.communicate(timeout=5)
            time.sleep(0.3)
        double.set_container_state(committed[0]["container_uuid"], "Complete", exit_code=0,
                                   log={"stderr.txt": "done\n"}, output=output or {"cwl.output.json": "{}"})
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, stderr
    return committed[0], stdout


def _toil_run(server: WesServer, double: ArvadosDouble, owner: Dict[str, Any], workdir: Path) -> Dict[str, Any]:
    """Run wf.cwl with job.yml in `workdir` through toil-wes-cwl-runner as `owner`; the committed runner request."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TOIL_WES_USER="anyone", TOIL_WES_PASSWORD=owner["token"],  # HTTP Basic, the token as password
               PATH=str(PEERS_BIN))  # its cwltool --print-deps, and no docker anywhere on the client either
    endpoint = server.url.split("/ga4gh/")[0]
    committed, stdout = _client_run([str(TOIL_WES_RUNNER), f"--wes_endpoint={endpoint}", "wf.cwl", "job.yml"], env,
                                    workdir, double, owner)
    assert json.loads(stdout) == {}
    return committed


def test_wes_arvados_run_submits_follows_and_downloads_with_the_arvados_token(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    owner = new_user(arvados_double, arvados_client, "client")
    _tool_workflow(registry, image_factory, tmp_path / "wf.cwl")
    (tmp_path / "job.yml").write_text("message: hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "WES_")) and k != "PYTHONPATH"}
    env.update(ARVADOS_API_TOKEN=owner["token"], WES_ARVADOS_SERVER=server.url, PATH=str(Path(sys.executable).parent))
    output = {"cwl.output.json": json.dumps({"out": {"class": "File", "location": "out.txt", "size": 6}}),
              "out.txt": "hello\n"}  # no basename: the client takes it from the location
    committed, stdout = _client_run([sys.executable, "-m", "wes_arvados", "run", "--outdir", "got", "wf.cwl",
                                     "job.yml"], env, tmp_path, arvados_double, owner, output)
    printed = json.loads(stdout)["out"]
    assert (tmp_path / "got" / "out.txt").read_text() == "hello\n"
    assert (printed["path"], printed["size"]) == (str(tmp_path / "got" / "out.txt"), 6)
    assert committed["uuid"] in {r["run_id"] for r in _client(server, owner["token"]).get("/runs").json()["runs"]}


def test_toil_wes_cwl_runner_runs_a_workflow_on_arvados_with_an_arvados_token(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    from arvados.commands.keepdocker import list_images_in_arv

    owner = new_user(arvados_double, arvados_client, "toil")
    tool = _tool_workflow(registry, image_factory, tmp_path / "wf.cwl")
    (tmp_path / "job.yml").write_text("message: hi\n")
    committed = _toil_run(server, arvados_double, owner, tmp_path)
    assert committed["uuid"] in {r["run_id"] for r in _client(server, owner["token"]).get("/runs").json()["runs"]}

    # Both images are in Keep as arv-keepdocker leaves them, and the run uses them by portable data hash.
    pdh = {}
    for image in (tool, RUNNER_IMAGE):
        found = list_images_in_arv(owner["api"], 3, *image.rsplit(":", 1))
        assert len(found) == 1, (image, found)
        pdh[image] = owner["api"].collections().get(uuid=found[0][0]).execute()["portable_data_hash"]
    workflow = json.dumps(committed["mounts"]["/var/lib/cwl/workflow.json"]["content"])
    assert f'dockerCollectionPDH": "{pdh[tool]}"' in workflow, workflow
    assert committed["container_image"] == pdh[RUNNER_IMAGE]

    # The same workflow again: its images are found in Keep, and no image byte is uploaded.
    arvados_double.reset_counters()
    again = _toil_run(server, arvados_double, owner, tmp_path)
    assert again["uuid"] != committed["uuid"] and again["container_image"] == pdh[RUNNER_IMAGE]
    assert arvados_double.keep_put_bytes < 64 << 10, arvados_double.keep_put_bytes  # the workflow's own files


def test_two_servers_share_the_runs_and_a_dead_preparation_ends_in_a_system_error(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        fault_proxy: FaultProxy, image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    repo, tag = RUNNER_IMAGE.split(":")
    push(registry, repo, tag, image_factory.oci())
    env = {"ARVADOS_API_HOST": arvados_double.host, "ARVADOS_API_HOST_INSECURE": "1",
           "WES_ARVADOS_ARVADOS_HEARTBEAT_TIMEOUT": "3", "PATH": str(Path(sys.executable).parent)}
    args = ["--backend", "arvados", "--registry-mirror", f"docker.io=http://{registry.host}"]
    one = WesServer(tmp_path / "one", extra_args=args, env=env).start()
    two = WesServer(tmp_path / "two", extra_args=args, env=env).start()
    try:
        owner = new_user(arvados_double, arvados_client, "two")
        via_one, via_two = _client(one, owner["token"]), _client(two, owner["token"])
        _tool_workflow(registry, image_factory, tmp_path / "fast.cwl")
        run_id = via_one.run(tmp_path / "fast.cwl", {"message": "hi"})
        _committed(arvados_double, run_id)
        assert via_two.status(run_id) == "QUEUED"  # followed through the other server
        assert via_two.http.post(f"{via_two.url}/runs/{run_id}/cancel", timeout=30).status_code == 200
        assert via_one.status(run_id) == "CANCELED"

        # A preparation whose process dies (its machine restarted) is reported, within bounds, by either.
        _tool_workflow(fault_proxy, image_factory, tmp_path / "slow.cwl", new_image=True)  # its blobs are needed
        fault_proxy.add_rule("/blobs/", Delay(60, after_bytes=10), method="GET", times=None)
        stuck = via_one.run(tmp_path / "slow.cwl", {"message": "hi"})
        deadline = time.monotonic() + 60
        while via_two.status(stuck) != "INITIALIZING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # Preparations run side by side: another run's images go into Keep while this one's wait.
        other = via_one.run(tmp_path / "fast.cwl", {"message": "meanwhile"})
        _committed(arvados_double, other)
        assert via_two.status(stuck) == "INITIALIZING", arvados_double.record(stuck)
        preparers = _preparers(stuck)
        assert len(preparers) == 1
        preparers[0].kill()
        log = via_two.wait(stuck, timeout=30)  # 3 s of silence, then the first reader records it
        assert log["state"] == "SYSTEM_ERROR", log
        assert any("stopped before it was submitted" in line for line in log["system_logs"]), log["system_logs"]
        assert via_one.status(stuck) == "SYSTEM_ERROR"
        assert arvados_double.record(stuck)["properties"]["wes_arvados_preparation"]["state"] == "failed"
    finally:
        one.stop()
        two.stop()


def _preparers(run_id: str) -> List[psutil.Process]:
    """The preparation processes of a run (its id is in their command line)."""
    return [p for p in psutil.process_iter(["cmdline"]) if run_id in (p.info["cmdline"] or [])]


def test_preparations_beyond_the_machines_limit_wait_queued_for_a_turn(
        arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        fault_proxy: FaultProxy, image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    repo, tag = RUNNER_IMAGE.split(":")
    push(registry, repo, tag, image_factory.oci())
    server = WesServer(tmp_path / "state", extra_args=[
        "--backend", "arvados", "--registry-mirror", f"docker.io=http://{registry.host}"], env={
        "ARVADOS_API_HOST": arvados_double.host, "ARVADOS_API_HOST_INSECURE": "1",
        "WES_ARVADOS_ARVADOS_MAX_CONCURRENT_PREPARATIONS": "1", "WES_ARVADOS_ARVADOS_HEARTBEAT_TIMEOUT": "4",
        "PATH": str(Path(sys.executable).parent)}).start()
    try:
        client = _client(server, new_user(arvados_double, arvados_client, "turns")["token"])
        _tool_workflow(fault_proxy, image_factory, tmp_path / "slow.cwl", new_image=True)
        fault_proxy.add_rule("/blobs/", Delay(60, after_bytes=10), method="GET", times=None)
        _tool_workflow(registry, image_factory, tmp_path / "fast.cwl")
        stuck = client.run(tmp_path / "slow.cwl", {"message": "hi"})
        deadline = time.monotonic() + 60
        while client.status(stuck) != "INITIALIZING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        waiting, dropped = (client.run(tmp_path / "fast.cwl", {"message": m}) for m in ("wait", "drop"))
        time.sleep(3)  # time enough to be committed, had it had a turn
        assert [client.status(r) for r in (stuck, waiting, dropped)] == ["INITIALIZING", "QUEUED", "QUEUED"]
        # A run canceled while it waits for its turn stops waiting, and is never submitted.
        assert client.http.post(f"{client.url}/runs/{dropped}/cancel", timeout=30).status_code == 200
        deadline = time.monotonic() + 30
        while _preparers(dropped):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.status(dropped) == "CANCELED" and arvados_double.record(dropped)["state"] == "Uncommitted"
        # The turn goes with its process, however that ends.
        for process in _preparers(stuck):
            process.kill()
        _committed(arvados_double, waiting)
        assert client.status(waiting) == "QUEUED" and arvados_double.record(waiting)["state"] == "Committed"
    finally:
        server.stop()


def test_a_private_image_is_pulled_with_the_runs_own_registry_credentials_which_are_never_kept(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client,
        basic_registry: Registry, image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    owner = new_user(arvados_double, arvados_client, "private")
    repo = unique("private/tool")
    push(basic_registry, repo, "1", image_factory.docker_schema2())
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=f"{basic_registry.host}/{repo}:1"))
    user, password = basic_registry.credentials  # type: ignore[misc]
    header = base64.urlsafe_b64encode(json.dumps({"username": user, "password": password,
                                                  "serveraddress": basic_registry.host}).encode()).decode()
    client = _client(server, owner["token"])
    answer = client.submit(tmp_path / "wf.cwl", {"message": "hi"}, headers={"X-Registry-Auth": header})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["run_id"]
    _committed(arvados_double, run_id)
    without = client.wait(client.run(tmp_path / "wf.cwl", {"message": "hi"}), timeout=120)
    assert without["state"] == "SYSTEM_ERROR" and any("401" in line for line in without["system_logs"]), without
    assert password not in server.log_path.read_text(errors="replace")
    assert password not in json.dumps(arvados_double.records("container_requests", owner_uuid=owner["uuid"]))


def test_readiness_is_the_api_servers_discovery_document_answering(server: WesServer, tmp_path: Path) -> None:
    root = server.url.split("/ga4gh")[0]
    for _ in range(3):  # probe after probe, on the one client the process keeps
        assert requests.get(root + "/readyz", timeout=30).status_code == 200
    dead = WesServer(tmp_path / "dead", extra_args=["--backend", "arvados"],
                     env={"ARVADOS_API_HOST": f"127.0.0.1:{free_port()}", "ARVADOS_API_HOST_INSECURE": "1"}).start()
    try:
        answer = requests.get(dead.url.split("/ga4gh")[0] + "/readyz", timeout=30)
    finally:
        dead.stop()
    assert answer.status_code == 503 and "the Arvados API server does not answer" in answer.text, answer.text
