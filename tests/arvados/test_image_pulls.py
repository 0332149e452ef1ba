"""The image pull service on the Arvados backend: POST /images imports into Keep as the caller (arvados/image_pulls.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict

import psutil
import requests
from arvados.commands.keepdocker import list_images_in_arv

from ..images.builder import ImageFactory, _marker, build_image, busybox_rootfs_layer, push
from ..images.conftest import fault_proxy, image_factory, registry  # noqa: F401  (fixtures)
from ..images.registry import Delay, FaultProxy, Registry
from ..wes import Samples, WesClient, WesServer, sample, scrape
from .double import ArvadosDouble
from .test_backend import _client, server  # noqa: F401  (a fixture)
from .test_double import Client, new_user, unique


def _wait(client: WesClient, pull_id: str, timeout: float = 120) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pull = client.get(f"/images/{pull_id}").json()
        if pull["state"] not in ("QUEUED", "RUNNING"):
            return pull
        assert time.monotonic() < deadline, pull
        time.sleep(0.3)


def test_an_image_is_pulled_into_keep_as_the_caller_and_seen_by_who_may_read_it(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry,  # noqa: F811
        image_factory: ImageFactory) -> None:  # noqa: F811
    owner, other = new_user(arvados_double, arvados_client, "puller"), new_user(arvados_double, arvados_client)
    repo = unique("tools/pulled")
    push(registry, repo, "1", image_factory.docker_schema2())
    image = f"{registry.host}/{repo}:1"
    client, stranger = _client(server, owner["token"]), _client(server, other["token"])

    answer = client.post("/images", json={"image": image})
    assert answer.status_code == 202, answer.text
    pull_id = answer.json()["pull_id"]
    pull = _wait(client, pull_id)
    assert pull["state"] == "COMPLETE" and pull["store"] == "keep" and pull["cached"] is False, pull
    collection = owner["api"].collections().get(uuid=pull["location"]).execute()
    assert collection["portable_data_hash"] == pull["portable_data_hash"]
    assert collection["owner_uuid"] == owner["uuid"]  # no project named, none configured: the caller's home
    found = list_images_in_arv(owner["api"], 3, f"{registry.host}/{repo}", "1")  # as a-c-r and arv-keepdocker find it
    assert [uuid for uuid, _ in found] == [pull["location"]]
    listed = client.get("/images").json()
    assert listed["store"] == "keep"
    assert [(i["name"], i["portable_data_hash"]) for i in listed["images"]] == [(image, pull["portable_data_hash"])]

    # Another user sees neither the pull nor the image; a second pull of the same image finds it in Keep.
    assert stranger.get(f"/images/{pull_id}").status_code == 404
    assert stranger.get("/images").json()["images"] == []
    again = _wait(client, client.post("/images", json={"image": image}).json()["pull_id"])
    assert (again["state"], again["cached"], again["location"]) == ("COMPLETE", True, pull["location"])

    # Into a project of the caller's; a project they cannot write to is refused before anything starts.
    project = owner["api"].groups().create(body={"group": {"name": unique("images"), "group_class": "project"}}) \
        .execute()
    into = _wait(client, client.post("/images", json={"image": image, "project_uuid": project["uuid"]})
                 .json()["pull_id"])
    assert into["state"] == "COMPLETE", into
    assert owner["api"].collections().get(uuid=into["location"]).execute()["owner_uuid"] == project["uuid"]
    refused = stranger.post("/images", json={"image": image, "project_uuid": project["uuid"]})
    assert refused.status_code in (403, 404) and "msg" in refused.json(), refused.text

    missing = f"{registry.host}/{unique('not/there')}:1"
    failed = _wait(client, client.post("/images", json={"image": missing}).json()["pull_id"])
    assert failed["state"] == "SYSTEM_ERROR" and missing.split(":")[0] in failed["error"], failed
    assert requests.post(f"{server.url}/images", json={"image": image}, timeout=30).status_code == 401


def test_a_pull_whose_process_stops_is_reported_failed_by_any_server(
        arvados_double: ArvadosDouble, arvados_client: Client, fault_proxy: FaultProxy,  # noqa: F811
        tmp_path: Path) -> None:
    env = {"ARVADOS_API_HOST": arvados_double.host, "ARVADOS_API_HOST_INSECURE": "1",
           "WES_ARVADOS_ARVADOS_HEARTBEAT_TIMEOUT": "4", "PATH": str(Path(sys.executable).parent)}
    one = WesServer(tmp_path / "one", extra_args=["--backend", "arvados"], env=env).start()
    two = WesServer(tmp_path / "two", extra_args=["--backend", "arvados"], env=env).start()
    try:
        owner = new_user(arvados_double, arvados_client, "stuck")
        repo = unique("tools/slow")
        push(fault_proxy, repo, "1", build_image([busybox_rootfs_layer(), _marker(repo)]))  # blobs no cache holds
        fault_proxy.add_rule("/blobs/", Delay(10, after_bytes=10), method="GET", times=None)
        via_one, via_two = _client(one, owner["token"]), _client(two, owner["token"])
        pull_id = via_one.post("/images", json={"image": f"{fault_proxy.host}/{repo}:1"}).json()["pull_id"]
        deadline = time.monotonic() + 60
        while via_two.get(f"/images/{pull_id}").json()["state"] != "RUNNING":  # followed through the other server
            assert time.monotonic() < deadline
            time.sleep(0.2)
        pullers = [p for p in psutil.process_iter(["cmdline"]) if pull_id in (p.info["cmdline"] or [])]
        assert len(pullers) == 1
        pullers[0].kill()
        failed = _wait(via_two, pull_id, timeout=30)  # 4 s of silence, then the first reader records it
        assert failed["state"] == "SYSTEM_ERROR" and "ask again" in failed["error"], failed
        assert via_one.get(f"/images/{pull_id}").json()["state"] == "SYSTEM_ERROR"
        assert arvados_double.record(pull_id)["properties"]["state"] == "SYSTEM_ERROR"
    finally:
        one.stop()
        two.stop()


def test_keep_metrics_count_the_bytes_written_and_the_layers_keep_held_already(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client, registry: Registry) -> None:  # noqa: F811
    # Issue 17: two images with one base layer; the second writes only its own layer, the base is deduplicated.
    client = _client(server, new_user(arvados_double, arvados_client, "metered")["token"])
    base = busybox_rootfs_layer()
    names = []
    for n in range(2):
        repo = unique(f"tools/metered-{n}")
        push(registry, repo, "1", build_image([base, _marker(repo)]))
        names.append(f"{registry.host}/{repo}:1")
    before = scrape(server.url)
    first = _wait(client, client.post("/images", json={"image": names[0]}).json()["pull_id"])
    assert first["state"] == "COMPLETE", first
    after_first = scrape(server.url)
    second = _wait(client, client.post("/images", json={"image": names[1]}).json()["pull_id"])
    assert second["state"] == "COMPLETE", second
    after_second = scrape(server.url)

    def grew(name: str, start: Samples, end: Samples) -> float:
        return sample(end, name) - sample(start, name)

    written = "wes_arvados_keep_bytes_written_total"
    deduplicated = "wes_arvados_keep_bytes_deduplicated_total"
    assert grew(written, before, after_first) > len(base.tar) > 0
    assert grew(deduplicated, after_first, after_second) >= len(base.tar)
    assert grew(written, after_first, after_second) < grew(written, before, after_first) - len(base.tar) // 2
    assert sample(after_second, "wes_arvados_image_pulls_total", outcome="pulled") - \
        sample(before, "wes_arvados_image_pulls_total", outcome="pulled") == 2
