"""No secret leaks from the local backend: every byte the server wrote and every command line it started, searched.

The secrets of a day's work: a user's bearer token (from the token file), the
registry password of the server's own registry config, a run's X-Registry-Auth
(header and password), an image pull's X-Registry-Auth, and a wrong password
that a run is refused with. While the runs and the pull go on, a watch reads the
command line and environment of every process on the machine but the test's.
Then everything is searched, in every form a secret could be written in: the
state directory (database, run directories, staging, metrics), the server's log,
files written under /tmp during the test, every answer the API gave (RunLogs, task
and engine logs, lists, pulls, errors) and /metrics.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Dict, List

import requests

from ..leaks import Evidence, ProcessWatch, files_under
from ..wes import TERMINAL, WesClient, WesServer
from .builder import ImageFactory
from .docker import DockerDaemon
from .registry import Registry
from .test_server_images import _lines, _pushed, _tool
from .tokenserver import TokenServer


def _x_registry_auth(host: str, user: str, password: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"username": user, "password": password,
                                                "serveraddress": host}).encode()).decode()


def _answers(client: WesClient, run_id: str) -> Dict[str, bytes]:
    """Every answer the API gives about a run: its RunLog, task list, and each log stream of the run and its tasks."""
    texts = {f"GET /runs/{run_id}": client.get(f"/runs/{run_id}").content,
             f"GET /runs/{run_id}/tasks": client.get(f"/runs/{run_id}/tasks").content}
    for stream in ("stdout", "stderr"):
        texts[f"GET /runs/{run_id}/logs/{stream}"] = client.get(f"/runs/{run_id}/logs/{stream}").content
    for task in json.loads(texts[f"GET /runs/{run_id}/tasks"]).get("task_logs", []):
        for stream in ("stdout", "stderr"):
            path = f"/runs/{run_id}/tasks/{task['id']}/logs/{stream}"
            texts[f"GET {path}"] = client.get(path).content
    return texts


def _tmp_files_since(start: float, skip: List[Path]) -> Dict[str, bytes]:
    """Files under /tmp changed since `start`, except under `skip` (the tests' own directories)."""
    found: Dict[str, bytes] = {}
    for root, dirs, files in os.walk("/tmp"):
        dirs[:] = [d for d in dirs if not any(Path(root, d) == s or s in Path(root, d).parents for s in skip)]
        for name in files:
            path = Path(root, name)
            try:
                if not path.is_symlink() and path.stat().st_mtime >= start and path.stat().st_size < 64 << 20:
                    found[str(path)] = path.read_bytes()
            except OSError:
                pass
    return found


def test_no_secret_is_written_shown_or_passed_on_a_command_line(
        tmp_path: Path, token_registry: Registry, token_server: TokenServer, basic_registry: Registry,
        repo: str, docker_daemon: DockerDaemon, image_factory: ImageFactory) -> None:
    start = time.time()
    reader_password = token_server.users["reader"]
    basic_user, basic_password = basic_registry.credentials  # type: ignore[misc]
    bearer = "alice-" + base64.b32encode(os.urandom(20)).decode()
    run_auth = _x_registry_auth(basic_registry.host, basic_user, basic_password)
    wrong_auth = _x_registry_auth(basic_registry.host, basic_user, "Wrong-Password-7f3a9")
    secrets = {"the bearer token": bearer, "the server's registry password": reader_password,
               "its basic form": f"reader:{reader_password}", "the run's registry password": basic_password,
               "the run's X-Registry-Auth": run_auth, "the wrong password": "Wrong-Password-7f3a9",
               "the wrong X-Registry-Auth": wrong_auth}

    (tmp_path / "tokens").write_text(f"{bearer} alice\n")
    registry_config = tmp_path / "registry-config.json"
    registry_config.write_text(json.dumps({"auths": {token_registry.host: {
        "auth": base64.b64encode(f"reader:{reader_password}".encode()).decode()}}}))
    private = _pushed(token_registry, repo, docker_daemon, image_factory)
    personal = _pushed(basic_registry, repo, docker_daemon, image_factory)
    pulled = _pushed(basic_registry, repo + "-pull", docker_daemon, image_factory)

    server = WesServer(tmp_path / "state", extra_args=["--registry-config", str(registry_config)],
                       env={"DOCKER_HOST": docker_daemon.host,
                            "WES_ARVADOS_AUTH_TOKEN_FILE": str(tmp_path / "tokens")})
    evidence = Evidence()
    with ProcessWatch() as watch:
        server.start()
        try:
            client = WesClient(server.url)
            client.http.headers["Authorization"] = f"Bearer {bearer}"
            runs = [client.run(_tool(tmp_path, private)),
                    client.run(_tool(tmp_path, personal), headers={"X-Registry-Auth": run_auth})]
            refused = client.run(_tool(tmp_path, personal), headers={"X-Registry-Auth": wrong_auth})
            pull = client.post("/images", json={"image": pulled}, headers={"X-Registry-Auth": run_auth})
            assert pull.status_code == 202, pull.text
            pull_id = pull.json()["pull_id"]
            logs = [client.wait(run_id) for run_id in runs + [refused]]
            deadline = time.monotonic() + 120
            while client.get(f"/images/{pull_id}").json()["state"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [log["state"] for log in logs] == ["COMPLETE", "COMPLETE", "SYSTEM_ERROR"], [_lines(l) for l in logs]
            assert any("401" in line for line in _lines(logs[2])), _lines(logs[2])
            assert client.get(f"/images/{pull_id}").json()["state"] == "COMPLETE"

            for run_id in runs + [refused]:
                evidence.add_all(_answers(client, run_id))
            evidence.add("GET /runs", client.get("/runs").content)
            evidence.add(f"GET /images/{pull_id}", client.get(f"/images/{pull_id}").content)
            evidence.add("GET /images", client.get("/images").content)
            evidence.add("GET /service-info", client.get("/service-info").content)
            evidence.add("GET /metrics", requests.get(server.url.split("/ga4gh")[0] + "/metrics", timeout=30).content)
            evidence.add("a malformed X-Registry-Auth's error", client.submit(
                _tool(tmp_path, personal), headers={"X-Registry-Auth": run_auth[:-6] + "%%%"}).content)
            evidence.add("an unknown token's error", requests.get(server.url + "/runs", timeout=30, headers={
                "Authorization": f"Bearer {bearer}x"}).content)
        finally:
            server.stop()
            server.kill_runs()
    evidence.add_all(files_under(server.state_dir), "file ")
    evidence.add("the server's log", server.log_path.read_bytes())
    evidence.add_all(_tmp_files_since(start, [tmp_path.parents[1]]), "file ")
    evidence.add_all(watch.texts("cmdline"), "process ")
    evidence.add_all(watch.texts("environ"), "process ")

    # The search can find: the server's processes, its state and its answers were all read.
    assert any(str(server.state_dir) in where for where in evidence.texts), "no file of the state directory"
    assert any("wes_arvados serve" in where or "gunicorn" in where for where in evidence.texts), "no server process"
    assert any("wes_arvados.local.runner" in where for where in evidence.texts), "no run's process"
    assert Evidence.leaks(evidence, {"a run id": runs[0]}), "a run's id is in its answers and files"
    print(f"searched {evidence.size:,} bytes in {len(evidence.texts)} places for {len(secrets)} secrets")
    assert evidence.leaks(secrets) == []
