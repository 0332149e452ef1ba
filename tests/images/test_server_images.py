"""Server-side image resolution: runs whose tools need images that only a loopback registry has.

Real components: the WES server (gunicorn, scheduler, supervisors, cwltool), the
Debian docker-registry, the fault proxy that counts requests, and a Docker daemon
that the server loads images into and cwltool runs containers in.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from ..conformance.suite import PEERS_BIN, TOIL_WES_RUNNER
from ..leaks import grep_tree, process_texts
from ..threaded import ThreadedServer
from ..processes import kill_process_tree
from ..tmpfs import fill, tmpfs
from ..wes import WesClient, WesServer, require, sample, scrape
from .builder import ImageFactory, build_image, busybox_rootfs_layer, layer, push
from .docker import DockerDaemon
from .registry import Delay, FaultProxy, Registry, Reset, Status
from .tokenserver import TokenServer

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {image}
baseCommand: [sh, -c, "cat /etc/wes-test/{marker}; echo $0", from-the-image]
inputs: []
outputs:
  out:
    type: stdout
stdout: out.txt
"""

HINT_TOOL = TOOL.replace("requirements:", "hints:")

DOCKERFILE_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerFile: |
      FROM debian:stable-slim
    dockerImageId: built-here
baseCommand: [echo, hi]
inputs: []
outputs: []
"""


def _tool(tmp_path: Path, image: str, marker: str = "docker-schema2", text: str = TOOL) -> Path:
    path = tmp_path / f"tool-{len(list(tmp_path.glob('tool-*.cwl')))}.cwl"
    path.write_text(text.format(image=image, marker=marker))
    return path


def _server(tmp_path: Path, docker_daemon: DockerDaemon, *args: str, runs: int = 2) -> WesServer:
    return WesServer(tmp_path / "state", max_concurrent_runs=runs, extra_args=list(args),
                     env={"DOCKER_HOST": docker_daemon.host}).start()


def _run_once(tmp_path: Path, docker_daemon: DockerDaemon, workflow: Path, *args: str) -> dict:
    """Run `workflow` on a server of its own started with `args`; its RunLog."""
    wes = _server(tmp_path, docker_daemon, *args)
    try:
        client = WesClient(wes.url)
        return client.wait(client.run(workflow))
    finally:
        wes.stop()


@pytest.fixture
def server(tmp_path: Path, docker_daemon: DockerDaemon) -> Iterator[WesServer]:
    wes = _server(tmp_path, docker_daemon)
    try:
        yield wes
    finally:
        wes.stop()


def _forget(docker_daemon: DockerDaemon, name: str) -> None:
    """Make sure the daemon does not have `name`, so that the server must get it."""
    docker_daemon.docker("rmi", "-f", name, check=False)
    docker_daemon.track(name)


def _pushed(target: Any, repo: str, docker_daemon: DockerDaemon, image_factory: ImageFactory) -> str:
    """Push the docker-schema2 test image to `target` (a registry or proxy) as `repo:1`, and make sure the
    daemon lacks it; its name."""
    push(target, repo, "1", image_factory.docker_schema2())
    image = f"{target.host}/{repo}:1"
    _forget(docker_daemon, image)
    return image


def _blob_gets(proxy: FaultProxy) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for request in proxy.requests:
        if request.method == "GET" and "/blobs/sha256:" in request.path:
            digest = request.path.rsplit("/", 1)[1]
            counts[digest] = counts.get(digest, 0) + 1
    return counts


def _lines(log: dict) -> List[str]:
    return log.get("system_logs") or []


def test_a_run_gets_its_image_from_the_registry_and_completes(server: WesServer, registry: Registry, repo: str,
                                                              docker_daemon: DockerDaemon, tmp_path: Path,
                                                              image_factory: ImageFactory) -> None:
    image = f"{registry.host}/{repo}:1"
    push(registry, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    assert log["state"] == "COMPLETE", log
    assert requests.get(log["outputs"]["out"]["location"]).text == "docker-schema2\nfrom-the-image\n"
    lines = _lines(log)
    assert any(f"image {image}: resolving" in line for line in lines), lines
    assert any(f"image {image}: pulled" in line and image_factory.docker_schema2().config_digest in line
               for line in lines), lines
    assert "--disable-pull" in log["run_log"]["cmd"]


def _path_without_docker(tmp_path: Path) -> str:
    """A PATH whose directories hold no `docker` or `podman`: the peers' bin, and a copy of the rest minus those."""
    shadow = tmp_path / "bin-without-docker"
    shadow.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory) or Path(directory) == PEERS_BIN:
            continue
        for entry in os.scandir(directory):
            if entry.name in ("docker", "podman") or (shadow / entry.name).exists():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                (shadow / entry.name).symlink_to(entry.path)
    return os.pathsep.join([str(PEERS_BIN), str(shadow)])


def test_toil_wes_cwl_runner_with_no_docker_on_its_path_gets_the_image_run(
        server: WesServer, registry: Registry, repo: str, docker_daemon: DockerDaemon, tmp_path: Path,
        image_factory: ImageFactory) -> None:
    require(TOIL_WES_RUNNER.exists(), f"{TOIL_WES_RUNNER} is missing: run `make peers`")
    image = f"{registry.host}/{repo}:1"
    push(registry, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    tool = _tool(tmp_path, image)
    job = tmp_path / "job.json"
    job.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "PYTHONPATH")}
    env["PATH"] = _path_without_docker(tmp_path)
    assert shutil.which("docker", path=env["PATH"]) is None
    outdir = tmp_path / "client-out"
    done = subprocess.run([str(TOIL_WES_RUNNER), f"--wes_endpoint=http://127.0.0.1:{server.port}",
                           f"--outdir={outdir}", str(tool), str(job)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)
    assert requests.get(outputs["out"]["location"], timeout=30).text == "docker-schema2\nfrom-the-image\n"
    client = WesClient(server.url)
    run = client.get("/runs").json()["runs"][0]
    lines = _lines(client.log(run["run_id"]))
    assert any(f"image {image}: resolving" in line for line in lines)
    assert any(f"image {image}: pulled" in line for line in lines), lines


def test_a_second_run_costs_one_manifest_head_and_no_download(server: WesServer, registry: Registry, repo: str,
                                                              fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
                                                              tmp_path: Path, image_factory: ImageFactory) -> None:
    image = f"{fault_proxy.host}/{repo}:1"
    push(fault_proxy, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    client = WesClient(server.url)
    assert client.wait(client.run(_tool(tmp_path, image)))["state"] == "COMPLETE"
    fault_proxy.clear()
    log = client.wait(client.run(_tool(tmp_path, image)))
    assert log["state"] == "COMPLETE", log
    assert any(f"image {image}: cached" in line for line in _lines(log)), _lines(log)
    # The registry API check, then one manifest HEAD: nothing downloaded.
    assert [(r.method, r.path) for r in fault_proxy.requests] == [("GET", "/v2/"), ("HEAD", f"/v2/{repo}/manifests/1")]


def test_concurrent_runs_needing_one_new_image_download_each_blob_once(
        tmp_path: Path, registry: Registry, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    built = build_image([busybox_rootfs_layer()] + [layer({f"etc/wes-test/l{i}": f"{i}\n".encode() * 1000,
                                                           "etc/wes-test/last": f"{i}\n".encode()}) for i in range(5)])
    image = f"{fault_proxy.host}/{repo}:1"
    push(fault_proxy, repo, "1", built)
    _forget(docker_daemon, image)
    fault_proxy.clear()
    tool = _tool(tmp_path, image, marker="last")
    wes = _server(tmp_path, docker_daemon, runs=10)
    try:
        client = WesClient(wes.url)
        run_ids = [client.run(tool) for _ in range(10)]
        logs = [client.wait(run_id) for run_id in run_ids]
    finally:
        wes.stop()
    assert [log["state"] for log in logs] == ["COMPLETE"] * 10, [_lines(log) for log in logs]
    gets = _blob_gets(fault_proxy)
    assert gets == {digest: 1 for digest, _ in built.blobs()}, gets
    pulled = [log for log in logs if any(f"image {image}: pulled" in line for line in _lines(log))]
    assert len(pulled) == 1


def _ask_pull(base: str, image: str) -> str:
    """POST /images for `image`; the pull's id (the answer must be 202)."""
    answer = requests.post(base + "/images", json={"image": image}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["pull_id"]


def _wait_pull(base: str, pull_id: str, timeout: float = 120) -> dict:
    """GET /images/{pull_id} until the pull ends (or `timeout` passes); its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        pull = requests.get(f"{base}/images/{pull_id}", timeout=30).json()
        if pull["state"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
            return pull
        time.sleep(0.2)


def _fails_before_the_engine(log: dict, *fragments: str) -> None:
    assert log["state"] == "SYSTEM_ERROR", log
    assert log["run_log"]["exit_code"] == 69
    assert not log["run_log"].get("start_time"), "the engine must not start"
    last = _lines(log)[-1]
    for fragment in fragments:
        assert fragment in last, last
    assert "the engine was not started" in last


def test_a_missing_tag_fails_the_run_before_the_engine(server: WesServer, registry: Registry, repo: str,
                                                       tmp_path: Path) -> None:
    image = f"{registry.host}/{repo}:nonexistent"
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    _fails_before_the_engine(log, f"image {image}", "404")


def test_wrong_credentials_fail_the_run_before_the_engine(tmp_path: Path, basic_registry: Registry, repo: str,
                                                          docker_daemon: DockerDaemon,
                                                          image_factory: ImageFactory) -> None:
    push(basic_registry, repo, "1", image_factory.docker_schema2())
    config = tmp_path / "config.json"
    wrong = base64.b64encode(b"alice:not-her-password").decode()
    config.write_text(json.dumps({"auths": {basic_registry.host: {"auth": wrong}}}))
    image = f"{basic_registry.host}/{repo}:1"
    log = _run_once(tmp_path, docker_daemon, _tool(tmp_path, image), "--registry-config", str(config))
    _fails_before_the_engine(log, f"image {image}", "401")
    assert "not-her-password" not in json.dumps(log)


def test_a_registry_refusing_with_429_fails_the_run_after_the_retries(
        server: WesServer, registry: Registry, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        tmp_path: Path, image_factory: ImageFactory) -> None:
    image = _pushed(fault_proxy, repo, docker_daemon, image_factory)
    fault_proxy.add_rule("/manifests/", Status(429, retry_after="0"), times=None)
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    _fails_before_the_engine(log, f"image {image}", "429")
    assert len([r for r in fault_proxy.requests if "/manifests/" in r.path]) >= 5


def test_transient_registry_faults_during_a_run_are_survived_and_the_run_completes(
        server: WesServer, registry: Registry, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        tmp_path: Path, image_factory: ImageFactory) -> None:
    image = _pushed(fault_proxy, repo, docker_daemon, image_factory)
    fault_proxy.clear()
    rules = [fault_proxy.add_rule("/manifests/", Status(503), times=1, method="GET"),
             fault_proxy.add_rule("/blobs/sha256:", Reset(after_bytes=10), times=1, method="GET"),
             fault_proxy.add_rule("/blobs/sha256:", Status(429, retry_after="0"), times=1, method="GET")]
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    assert log["state"] == "COMPLETE", _lines(log)
    assert requests.get(log["outputs"]["out"]["location"], timeout=30).text == "docker-schema2\nfrom-the-image\n"
    assert all(rule.spent for rule in rules), rules


def _partial_cache_entries(cache: Path, work: Path) -> List[str]:
    """What a pull left half-done: temporary entries, archives being written or held, work files."""
    left = [p for p in (cache / "tmp").iterdir()] + [p for p in (cache / "held").glob("*")]
    left += [p for p in work.iterdir()] if work.exists() else []
    return [str(p) for p in left]


def test_a_layer_the_registry_never_serves_ends_the_run_system_error_and_leaves_nothing_partial(
        server: WesServer, registry: Registry, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        tmp_path: Path, image_factory: ImageFactory) -> None:
    image = _pushed(fault_proxy, repo, docker_daemon, image_factory)
    fault_proxy.clear()
    layer = image_factory.docker_schema2().layers[-1].digest
    # Some bytes of the layer arrive, then the registry answers 503 for it whatever the retries.
    fault_proxy.add_rule(f"/blobs/{layer}", Reset(after_bytes=10), times=1, method="GET")
    fault_proxy.add_rule(f"/blobs/{layer}", Status(503, retry_after="0"), times=None, method="GET")
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    _fails_before_the_engine(log, f"image {image}", "503")
    assert fault_proxy.blob_gets(layer) >= 3, fault_proxy.requests  # retried before giving up
    cache = server.state_dir / "images" / "cache"
    assert not (cache / "blobs" / "sha256" / layer.split(":")[1]).exists()
    assert _partial_cache_entries(cache, server.state_dir / "images" / "work") == []
    assert docker_daemon.docker("image", "inspect", image, check=False).returncode != 0


def test_an_image_pull_out_of_space_fails_leaves_nothing_partial_and_succeeds_once_space_returns(
        tmp_path: Path, registry: Registry, repo: str, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    image = _pushed(registry, repo, docker_daemon, image_factory)
    with tmpfs(tmp_path / "disk", "64m") as disk:
        wes = WesServer(disk / "state", env={"DOCKER_HOST": docker_daemon.host}).start()
        try:
            # Room for the pull's record, its manifest and config, and half its layers.
            filler = fill(disk, leave=sum(layer.size for layer in image_factory.docker_schema2().layers) // 2)
            pull = _wait_pull(wes.url, _ask_pull(wes.url, image))
            assert pull["state"] == "SYSTEM_ERROR" and "No space left on device" in pull["error"], pull
            cache, work = disk / "state" / "images" / "cache", disk / "state" / "images" / "work"
            assert _partial_cache_entries(cache, work) == []
            filler.unlink()
            pull = _wait_pull(wes.url, _ask_pull(wes.url, image))
            assert pull["state"] == "COMPLETE", pull
            assert _partial_cache_entries(cache, work) == []
        finally:
            wes.stop()


def test_an_archive_left_by_a_pull_killed_with_the_server_is_removed_by_the_next_pull(
        tmp_path: Path, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    image = _pushed(fault_proxy, repo, docker_daemon, image_factory)
    fault_proxy.clear()
    layer = image_factory.docker_schema2().layers[-1].digest
    fault_proxy.add_rule(f"/blobs/{layer}", Delay(60, after_bytes=10), method="GET")  # the archive is half written
    wes = _server(tmp_path, docker_daemon)
    work = wes.state_dir / "images" / "work"
    try:
        pull_id = _ask_pull(wes.url, image)
        deadline = time.monotonic() + 60
        while not list(work.glob("*.tar")):
            assert time.monotonic() < deadline, _wait_pull(wes.url, pull_id, timeout=0)
            time.sleep(0.05)
    finally:
        assert wes.proc is not None
        kill_process_tree(wes.proc.pid)
    left = list(work.glob("*.tar"))
    assert left, "the killed pull's archive should be there to clean up"
    fault_proxy.clear()
    wes = _server(tmp_path, docker_daemon)
    try:
        assert _wait_pull(wes.url, _ask_pull(wes.url, image))["state"] == "COMPLETE"
        assert [p for p in left if p.exists()] == []
        assert list(work.iterdir()) == []
    finally:
        wes.stop()


def test_an_image_the_policy_denies_fails_the_run_before_the_engine(
        tmp_path: Path, registry: Registry, repo: str, docker_daemon: DockerDaemon) -> None:
    image = f"{registry.host}/{repo}:1"
    log = _run_once(tmp_path, docker_daemon, _tool(tmp_path, image), "--deny-image", f"{registry.host}/*")
    _fails_before_the_engine(log, f"image {image}", "denied by the server's policy")


def test_a_dockerfile_requirement_fails_the_run_before_the_engine(server: WesServer, tmp_path: Path) -> None:
    client = WesClient(server.url)
    path = tmp_path / "build.cwl"
    path.write_text(DOCKERFILE_TOOL)
    log = client.wait(client.run(path))
    _fails_before_the_engine(log, "dockerFile", "builds no images")


def test_the_pull_service_imports_lists_and_serves_a_later_run(server: WesServer, registry: Registry, repo: str,
                                                               fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
                                                               tmp_path: Path, image_factory: ImageFactory) -> None:
    image = f"{fault_proxy.host}/{repo}:1"
    push(fault_proxy, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    base = WesClient(server.url).url
    pull = _wait_pull(base, _ask_pull(base, image))
    assert pull["state"] == "COMPLETE", pull
    assert pull["image_id"] == image_factory.docker_schema2().config_digest and pull["cached"] is False
    listed = requests.get(base + "/images", timeout=30).json()
    assert listed["store"] == "docker"
    assert [i["image_id"] for i in listed["images"] if i["name"] == image] == [pull["image_id"]]
    fault_proxy.clear()
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image)))
    assert log["state"] == "COMPLETE", log
    assert any(f"image {image}: cached" in line for line in _lines(log))
    assert _blob_gets(fault_proxy) == {}


def test_an_image_pull_runs_outside_the_web_workers_and_outlives_a_server_restart(
        tmp_path: Path, repo: str, fault_proxy: FaultProxy, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    image = f"{fault_proxy.host}/{repo}:1"
    push(fault_proxy, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    fault_proxy.add_rule("/blobs/", Delay(4, after_bytes=10), method="GET")  # the pull is under way, and slow
    wes = _server(tmp_path, docker_daemon)
    try:
        base = WesClient(wes.url).url
        pull_id = _ask_pull(base, image)
        deadline = time.monotonic() + 60
        while requests.get(f"{base}/images/{pull_id}", timeout=30).json()["state"] != "RUNNING":
            assert time.monotonic() < deadline, "the pull never started"
            time.sleep(0.1)
    finally:
        wes.stop()  # the web workers and the scheduler go; the pull's own process does not
    wes = _server(tmp_path, docker_daemon)
    try:
        pull = _wait_pull(WesClient(wes.url).url, pull_id)
    finally:
        wes.stop()
    assert pull["state"] == "COMPLETE" and pull["cached"] is False, pull
    assert docker_daemon.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() == pull["image_id"]


def test_a_bounded_cache_loses_its_least_recently_used_blobs_after_a_pull(
        tmp_path: Path, docker_daemon: DockerDaemon, registry: Registry, repo: str,
        image_factory: ImageFactory) -> None:
    from wes_arvados.images.cache import BlobCache

    image = f"{registry.host}/{repo}:1"
    push(registry, repo, "1", image_factory.docker_schema2())
    _forget(docker_daemon, image)
    cache = BlobCache(tmp_path / "state" / "images" / "cache")
    stale = cache.put("sha256:" + hashlib.sha256(b"old layer" * 4096).hexdigest(), b"old layer" * 4096)
    long_ago = time.time() - 3 * 86400
    os.utime(stale, (long_ago, long_ago))
    wes = _server(tmp_path, docker_daemon, "--image-cache-max-size", "1")
    try:
        base = WesClient(wes.url).url
        assert _wait_pull(base, _ask_pull(base, image))["state"] == "COMPLETE"
    finally:
        wes.stop()
    # The stale blob went; the pull's own are recent (used within the hour) and stay, over the bound.
    assert not stale.exists()
    assert all(cache.get(lay.digest) is not None for lay in image_factory.docker_schema2().layers)


def test_the_pull_service_refuses_a_denied_image_and_reports_a_missing_one(
        tmp_path: Path, registry: Registry, repo: str, docker_daemon: DockerDaemon) -> None:
    wes = _server(tmp_path, docker_daemon, "--deny-image", "docker.io/*")
    try:
        base = WesClient(wes.url).url
        denied = requests.post(base + "/images", json={"image": "debian:stable-slim"}, timeout=30)
        assert denied.status_code == 403 and "denied" in denied.json()["msg"]
        bad = requests.post(base + "/images", json={"image": "not a name"}, timeout=30)
        assert bad.status_code == 400
        secret = base64.urlsafe_b64encode(json.dumps({"auths": {registry.host: {
            "auth": base64.b64encode(b"u:s3cret").decode()}}}).encode()).decode()
        answer = requests.post(base + "/images", json={"image": f"{registry.host}/{repo}:missing"},
                               headers={"X-Registry-Auth": secret}, timeout=30)
        assert answer.status_code == 202
        pull = _wait_pull(base, answer.json()["pull_id"])
        assert pull["state"] == "SYSTEM_ERROR" and "404" in pull["error"], pull
        assert "s3cret" not in json.dumps(pull)
        assert requests.get(f"{base}/images/nope", timeout=30).status_code == 404
    finally:
        wes.stop()
    assert "s3cret" not in wes.log_path.read_text(errors="replace")


def test_the_pull_command_can_have_a_running_server_import_the_image(
        tmp_path: Path, basic_registry: Registry, repo: str, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    """Credentials from --registry-config go to the server for this pull only; nothing is written here."""
    image = _pushed(basic_registry, repo, docker_daemon, image_factory)
    user, password = basic_registry.credentials  # type: ignore[misc]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {basic_registry.host: {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    wes = _server(tmp_path, docker_daemon)
    try:
        done = subprocess.run([sys.executable, "-m", "wes_arvados", "pull", image, "--server", wes.url.rsplit(
            "/ga4gh", 1)[0], "--registry-config", str(config), "--json"], capture_output=True, text=True,
            timeout=300, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr
        pull = json.loads(done.stdout)
        assert pull["state"] == "COMPLETE" and pull["image_id"] == image_factory.docker_schema2().config_digest
        assert docker_daemon.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() == \
            pull["image_id"]
        again = subprocess.run([sys.executable, "-m", "wes_arvados", "pull", image, "--server", wes.url, "--json"],
                               capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
        assert again.returncode == 1 and "401" in json.loads(again.stdout)["error"]
    finally:
        wes.stop()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tar") == []
    assert password not in wes.log_path.read_text(errors="replace")


def test_a_run_with_x_registry_auth_pulls_a_private_image_and_stores_no_secret(
        server: WesServer, tmp_path: Path, basic_registry: Registry, repo: str, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    image = _pushed(basic_registry, repo, docker_daemon, image_factory)
    user, password = basic_registry.credentials  # type: ignore[misc]
    header = base64.urlsafe_b64encode(json.dumps({"username": user, "password": password,
                                                  "serveraddress": basic_registry.host}).encode()).decode()
    client = WesClient(server.url)
    tool = _tool(tmp_path, image)
    answer = client.submit(tool, headers={"X-Registry-Auth": header})
    assert answer.status_code == 200, answer.text
    log = client.wait(answer.json()["run_id"])
    assert log["state"] == "COMPLETE", _lines(log)
    assert any(f"image {image}: pulled" in line for line in _lines(log))
    # The credentials served that run only: another run without them cannot use the private image.
    other = client.wait(client.run(tool))
    _fails_before_the_engine(other, f"image {image}", "401")
    bad = client.submit(tool, headers={"X-Registry-Auth": "%%% not base64"})
    assert bad.status_code == 400 and "X-Registry-Auth" in bad.json()["msg"]
    assert grep_tree(server.state_dir, password.encode()) == []
    assert password not in server.log_path.read_text(errors="replace")


SLOW_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {image}
baseCommand: [sh, -c, "sleep 2; cat /etc/wes-test/{marker}"]
inputs: []
outputs:
  out:
    type: stdout
stdout: out.txt
"""


def test_wes_arvados_run_with_registry_config_runs_a_private_image_from_a_token_registry(
        server: WesServer, tmp_path: Path, token_registry: Registry, token_server: TokenServer, repo: str,
        docker_daemon: DockerDaemon, image_factory: ImageFactory) -> None:
    # Issue 16, acceptance 4: `--registry-config` (a docker config.json) carries a pull-only user's password
    # for this run only; the server pulls with it from a registry with token auth; the password is nowhere
    # on the server: not in its state, its log, nor any command line or environment of its processes.
    image = _pushed(token_registry, repo, docker_daemon, image_factory)
    password = token_server.users["reader"]
    basic = base64.b64encode(f"reader:{password}".encode()).decode()
    # The user's config, as on a laptop: a credential helper for the private registry, and an entry for a
    # registry the workflow does not use, which must stay at home.
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    helper = helpers / "docker-credential-wes-test"
    helper.write_text("#!/bin/sh\ncat >/dev/null\n"
                      f"echo '{json.dumps({'ServerURL': token_registry.host, 'Username': 'reader', 'Secret': password})}'\n")
    helper.chmod(0o755)
    config = tmp_path / "client" / "config.json"
    config.parent.mkdir()
    unrelated = base64.b64encode(b"someone:unrelated-secret").decode()
    config.write_text(json.dumps({"auths": {"elsewhere.example:5000": {"auth": unrelated}},
                                  "credHelpers": {token_registry.host: "wes-test"}}))
    _tool(tmp_path / "client", image, text=SLOW_TOOL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WES_", "ARVADOS_", "DOCKER_"))}
    env["PATH"] = os.pathsep.join([str(helpers), _path_without_docker(tmp_path)])
    command = [sys.executable, "-m", "wes_arvados", "run", "--server", server.url, "--registry-config",
               str(config), "--outdir", "out", "tool-0.cwl"]
    client = subprocess.Popen(command, cwd=tmp_path / "client", env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen: List[bytes] = []
    while client.poll() is None:  # what every process but the client and this test was started with
        seen += process_texts(but=(os.getpid(), client.pid))
        time.sleep(0.1)
    out, err = client.communicate()
    assert client.returncode == 0, err
    assert (tmp_path / "client" / "out" / "out.txt").read_text() == "docker-schema2\n"
    assert json.loads(out)["out"]["path"] == str(tmp_path / "client" / "out" / "out.txt")
    assert f"image {image}: pulled" in err
    assert f"registry credentials for {token_registry.host} go with this run" in err, err
    assert any(r.user == "reader" and r.status == 200 for r in token_server.requests), token_server.requests
    assert any(str(server.state_dir).encode() in text for text in seen)  # the server's processes were read
    for secret in (password, basic, "unrelated-secret", unrelated):
        assert not [text for text in seen if secret.encode() in text], secret
        assert grep_tree(server.state_dir, secret.encode()) == [], secret
        assert secret not in server.log_path.read_text(errors="replace"), secret
    # For that run only: the same workflow without the config cannot have the image.
    _forget(docker_daemon, image)
    again = subprocess.run(command[:6] + ["--quiet"] + command[8:], cwd=tmp_path / "client", env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert image in again.stderr and "401" in again.stderr, again.stderr


def test_with_no_container_runtime_a_required_image_fails_and_a_hint_may_run_without(
        tmp_path: Path, registry: Registry, repo: str, docker_daemon: DockerDaemon) -> None:
    image = f"{registry.host}/{repo}:1"
    hinted = tmp_path / "hinted.cwl"
    hinted.write_text(HINT_TOOL.format(image=image, marker="x").replace(
        'baseCommand: [sh, -c, "cat /etc/wes-test/x; echo $0", from-the-image]', "baseCommand: [echo, plain]"))
    wes = _server(tmp_path, docker_daemon, "--container-runtime", "none")
    try:
        client = WesClient(wes.url)
        required = client.wait(client.run(_tool(tmp_path, image)))
        refused_hint = client.wait(client.run(hinted))
    finally:
        wes.stop()
    _fails_before_the_engine(required, f"image {image}", "needs a container runtime, and this server has none")
    _fails_before_the_engine(refused_hint, "hints_without_container")
    config = tmp_path / "wes.yaml"
    config.write_text("images:\n  runtime: none\n  hints_without_container: true\n")
    wes = _server(tmp_path, docker_daemon, "--config", str(config))
    try:
        client = WesClient(wes.url)
        log = client.wait(client.run(hinted))
        assert log["state"] == "COMPLETE", _lines(log)
        assert "--no-container" in log["run_log"]["cmd"]
        assert requests.get(log["outputs"]["out"]["location"], timeout=30).text == "plain\n"
    finally:
        wes.stop()


def test_a_hinted_image_that_cannot_be_pulled_is_reported_and_left_to_the_engine(
        server: WesServer, registry: Registry, repo: str, tmp_path: Path) -> None:
    image = f"{registry.host}/{repo}:absent"
    client = WesClient(server.url)
    log = client.wait(client.run(_tool(tmp_path, image, text=HINT_TOOL)))
    assert any(f"image {image} (hinted by" in line and "not available" in line for line in _lines(log)), _lines(log)
    assert log["state"] == "EXECUTOR_ERROR" and log["run_log"]["exit_code"] not in (None, 69), _lines(log)


@pytest.mark.parametrize("where", ["attached", "url"])
def test_a_docker_load_archive_attached_to_the_run_or_at_a_url_is_loaded(
        where: str, server: WesServer, registry: Registry, repo: str, docker_daemon: DockerDaemon, tmp_path: Path,
        image_factory: ImageFactory) -> None:
    push(registry, repo, "1", image_factory.docker_schema2())
    archive = tmp_path / "image.tar"
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "pull", f"{registry.host}/{repo}:1", "-o",
                           str(archive), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    name = f"{registry.host}/{repo}:1"
    _forget(docker_daemon, name)
    tool = tmp_path / "load.cwl"
    client = WesClient(server.url)
    if where == "attached":
        tool.write_text(TOOL.format(image=name, marker="docker-schema2").replace(
            f"dockerPull: {name}", f"dockerLoad: image.tar\n    dockerImageId: {name}"))
        log = client.wait(client.run(tool, attachments=[archive]))
    else:
        with FileServer(tmp_path) as files:
            url = f"http://127.0.0.1:{files.port}/image.tar"
            tool.write_text(TOOL.format(image=name, marker="docker-schema2").replace(
                f"dockerPull: {name}", f"dockerLoad: {url}\n    dockerImageId: {name}"))
            log = client.wait(client.run(tool))
            assert files.paths == ["/image.tar"]
    assert log["state"] == "COMPLETE", _lines(log)
    assert any(f"image {name}: loaded from" in line for line in _lines(log)), _lines(log)


class FileServer(ThreadedServer):
    """Serves the files of `directory` over http on loopback, recording the paths asked for (`paths`)."""

    def __init__(self, directory: Path) -> None:
        self.paths: List[str] = []
        paths = self.paths

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                paths.append(self.path)
                super().do_GET()

        super().__init__(Handler)


def test_health_readiness_and_metrics_of_a_server_with_two_web_workers(
        tmp_path: Path, registry: Registry, repo: str, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    # Issue 17, acceptance 3: the counters change after an image pull and after a run, summed over both workers.
    server = WesServer(tmp_path / "state", workers=2, env={"DOCKER_HOST": docker_daemon.host}).start()
    try:
        root = server.url.split("/ga4gh/")[0]
        assert requests.get(root + "/healthz", timeout=30).json() == {"status": "ok"}
        assert requests.get(root + "/readyz", timeout=30).json() == {"status": "ready"}
        before = scrape(server.url)
        image = _pushed(registry, repo, docker_daemon, image_factory)
        pull = _wait_pull(server.url, _ask_pull(server.url, image))
        assert pull["state"] == "COMPLETE", pull
        after_pull = scrape(server.url)
        assert sample(after_pull, "wes_arvados_image_pulls_total", outcome="pulled") == \
            sample(before, "wes_arvados_image_pulls_total", outcome="pulled") + 1
        blobs = sum(len(layer.blob) for layer in image_factory.docker_schema2().layers)
        assert sample(after_pull, "wes_arvados_image_pull_bytes_total") - \
            sample(before, "wes_arvados_image_pull_bytes_total") >= blobs > 0
        assert sample(after_pull, "wes_arvados_image_pull_duration_seconds_count", outcome="pulled") == 1

        client = WesClient(server.url)
        log = client.wait(client.run(_tool(tmp_path, image)))  # the image is in the store: a cache hit
        assert log["state"] == "COMPLETE", log
        for _ in range(20):
            assert requests.get(server.url + "/runs", timeout=30).status_code == 200
        assert requests.get(server.url + "/runs/no-such-run", timeout=30).status_code == 404
        after_run = scrape(server.url)
        assert sample(after_run, "wes_arvados_runs", state="COMPLETE") == 1
        assert sample(after_run, "wes_arvados_image_pulls_total", outcome="present") == 1
        assert sample(after_run, "wes_arvados_image_cache_hits_total") == 1
        runs = "/ga4gh/wes/v1/runs"
        assert sample(after_run, "wes_arvados_http_requests_total", route=runs, method="GET", status="200") == 20
        assert sample(after_run, "wes_arvados_http_requests_total", route=runs + "/{run_id}", method="GET",
                      status="404") == 1
        assert sample(after_run, "wes_arvados_http_request_duration_seconds_count", route=runs, method="GET") == 20
        # Both web workers counted (each into files of its own), and /metrics added them up.
        # (Every process has its files from the start, allocated: the workers' are those holding HTTP counts.)
        counted_by = {path.stem.rsplit("_", 1)[-1] for path in (server.state_dir / "metrics").glob("counter_*.db")
                      if b"wes_arvados_http_requests_total" in path.read_bytes()}
        assert len(counted_by) >= 2, counted_by

        # Not ready while the run database cannot be written (its write lock held here); ready again after.
        with sqlite3.connect(str(server.state_dir / "wes.sqlite"), isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            busy = requests.get(root + "/readyz", timeout=30)
            db.execute("ROLLBACK")
        assert busy.status_code == 503 and "not writable" in busy.json()["reason"], busy.text
        assert requests.get(root + "/readyz", timeout=30).status_code == 200
    finally:
        server.stop()


def test_with_log_format_json_every_line_the_server_writes_is_json_and_holds_no_secret(
        tmp_path: Path, basic_registry: Registry, repo: str, docker_daemon: DockerDaemon,
        image_factory: ImageFactory) -> None:
    # Issue 17, acceptance 4: a run and an image pull with a token and registry credentials, two web workers.
    token = "wes-token-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auth_tokens": [token]}))
    server = WesServer(tmp_path / "state", workers=2, extra_args=["--config", str(config), "--log-format", "json"],
                       env={"DOCKER_HOST": docker_daemon.host}).start()
    image = _pushed(basic_registry, repo, docker_daemon, image_factory)
    user, password = basic_registry.credentials  # type: ignore[misc]
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    header = base64.urlsafe_b64encode(json.dumps({"auths": {basic_registry.host: {"auth": basic}}}).encode()).decode()
    try:
        client = WesClient(server.url)
        client.http.headers["Authorization"] = f"Bearer {token}"
        answer = client.submit(_tool(tmp_path, image), headers={"X-Registry-Auth": header})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["run_id"]
        assert client.wait(run_id)["state"] == "COMPLETE"
        pulled = client.http.post(server.url + "/images", json={"image": image}, timeout=30,
                                  headers={"X-Registry-Auth": header})
        assert pulled.status_code == 202, pulled.text
        pull_id = pulled.json()["pull_id"]
        deadline = time.monotonic() + 120
        while client.http.get(f"{server.url}/images/{pull_id}", timeout=30).json()["state"] in ("QUEUED", "RUNNING"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        refused = requests.get(server.url + "/runs", headers={"Authorization": "Bearer not-the-token"}, timeout=30)
        assert refused.status_code == 401
    finally:
        server.stop()
    text = server.log_path.read_text(errors="replace")
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} of the server's log is not JSON: {line!r}")
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
    assert any(e.get("run_id") == run_id and e["logger"] == "wes_arvados.local.supervisor" for e in events), events
    assert any(e.get("run_id") == run_id and e.get("image") == image for e in events), events
    assert any(e.get("pull_id") == pull_id and e.get("image") == image for e in events), events
    assert any(e.get("path") == "/ga4gh/wes/v1/runs" and e.get("status") == 401 for e in events), events
    for secret in (token, password, basic, header):
        assert secret not in text
