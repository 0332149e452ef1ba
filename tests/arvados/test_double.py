"""The Arvados double against the real, unmodified arvados-python-client and arvados-cwl-runner."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import arvados
import arvados.collection
import arvados.commands.keepdocker
import arvados.errors
import pytest
import requests
import urllib3

from . import discovery
from .discovery import client_version, static_document
from .double import ArvadosDouble

MiB = 1 << 20
_names = itertools.count()
Client = Callable[[str], Any]


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{next(_names)}"


def new_user(double: ArvadosDouble, client: Client, name: str = "u") -> Dict[str, Any]:
    """A fresh user of its own: uuid, token, api."""
    uuid, token = double.add_user(unique(name))
    return {"uuid": uuid, "token": token, "api": client(token)}


def error_of(call: Any) -> arvados.errors.ApiError:
    """The ApiError a request fails with."""
    with pytest.raises(arvados.errors.ApiError) as caught:
        call.execute()
    return caught.value


def messages(error: arvados.errors.ApiError) -> List[str]:
    """The `errors` of an API error response."""
    return json.loads(error.content)["errors"]


def save(api: Any, files: Dict[str, bytes], **kwargs: Any) -> arvados.collection.Collection:
    """A new collection of `files` written with the SDK."""
    coll = arvados.collection.Collection(api_client=api)
    for name, data in files.items():
        with coll.open(name, "wb") as f:
            f.write(data)
    coll.save_new(**kwargs)
    return coll


def make_image(api: Any, image: Dict[str, Any], names: List[str], timestamp: Optional[str] = None,
               file_name: Optional[str] = None, owner_uuid: Optional[str] = None) -> Dict[str, Any]:
    """An image collection made by hand as arv-keepdocker makes one: the tar as `<image id>.tar`, and its links."""
    owner = {"owner_uuid": owner_uuid} if owner_uuid else {}
    coll = save(api, {file_name or f"{image['id']}.tar": image["tar"]}, **owner)
    link = {"head_uuid": coll.manifest_locator(), "properties": {"image_timestamp": timestamp or image["created"]},
            **owner}
    api.links().create(body=dict(link, link_class="docker_image_hash", name=image["id"])).execute()
    for name in names:
        api.links().create(body=dict(link, link_class="docker_image_repo+tag", name=name)).execute()
    return api.collections().get(uuid=coll.manifest_locator()).execute()


def pattern(size: int, seed: int) -> bytes:
    """`size` bytes no other seed produces, cheaply."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(size // MiB)) + block[:size % MiB]


# ---- discovery, users, config ------------------------------------------------------------------------


def test_client_builds_from_the_discovery_document_with_live_keys(arvados_double: ArvadosDouble,
                                                                 arvados_client: Client) -> None:
    uuid, token = arvados_double.users["user"]
    api = arvados_client(token)
    root = api._rootDesc
    assert root["rootUrl"] == f"https://{arvados_double.host}/"
    assert root["baseUrl"] == root["rootUrl"] + "arvados/v1/"
    assert root["uuidPrefix"] == "zzzzz" and root["remoteHosts"] == {}
    assert root["revision"] == static_document()["revision"]
    assert root["dockerImageFormats"] == ["v2"] and root["blobSignatureTtl"] == 336 * 3600
    assert set(root["resources"]) == set(static_document(client_version())["resources"])
    me = api.users().current().execute()
    assert (me["uuid"], me["username"], me["is_admin"]) == (uuid, "user", False)
    admin = arvados_client(arvados_double.users["admin"][1]).users().current().execute()
    assert admin["is_admin"] is True


def test_config_has_what_the_clients_read(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    config = arvados_client(arvados_double.users["user"][1]).config()
    assert config["ClusterID"] == "zzzzz"
    assert config["Collections"]["DefaultReplication"] == 2 and config["Collections"]["BlobSigning"] is True
    assert config["Containers"]["DefaultKeepCacheRAM"] == 0
    assert list(config["Containers"]["SupportedDockerImageFormats"]) == ["v2"]
    assert config["StorageClasses"]["default"]["Default"] is True
    assert config["Services"]["Controller"]["ExternalURL"] == f"https://{arvados_double.host}/"
    assert "Workbench2" in config["Services"]


def test_discovery_document_prefers_the_shared_copy_then_the_cache(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    (cache / "arvados").mkdir(parents=True)
    (cache / "arvados" / "arvados-v1-discovery-9.9.9.json").write_text('{"from": "cache"}')
    monkeypatch.setattr(discovery, "SHARED", shared)
    monkeypatch.setenv("WES_ARVADOS_TEST_CACHE", str(cache))
    (shared / "arvados-v1-discovery-9.9.8.json").write_text('{"from": "shared, another version"}')
    load = discovery.static_document.__wrapped__  # bypass the per-process memo
    assert load("9.9.9") == {"from": "cache"}  # no shared copy of this version: the sdist's, fetched before
    (shared / "arvados-v1-discovery-9.9.9.json").write_text('{"from": "shared"}')
    assert load("9.9.9") == {"from": "shared"}


def test_unknown_and_missing_tokens_are_refused(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    error = error_of(arvados_client("v2/zzzzz-gj3su-000000000000000/nope").users().current())
    assert error.resp.status == 401 and messages(error)[0].startswith("Not logged in")


def test_containers_current_is_404_for_a_user_token(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    from arvados_cwl.util import get_current_container
    api = arvados_client(arvados_double.users["user"][1])
    assert error_of(api.containers().current()).resp.status == 404
    assert get_current_container(api) is None


# ---- collections ----------------------------------------------------------------------------------------


def test_collection_round_trip_across_blocks_by_uuid_and_pdh(arvados_double: ArvadosDouble,
                                                              arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    files = {"big.bin": pattern(70 * MiB + 123, 1), "sub dir/a.txt": b"a" * 1000, "sub dir/empty": b"",
             "b.txt": pattern(3 * MiB, 2)}
    coll = arvados.collection.Collection(api_client=api)
    for name, data in files.items():
        with coll.open(name, "wb") as f:
            f.write(data)
    local_pdh = coll.portable_data_hash()
    coll.save_new(name=unique("round trip"))
    record = api.collections().get(uuid=coll.manifest_locator()).execute()
    portable = re.sub(r"\+A[0-9a-f]+@[0-9a-f]+", "", record["manifest_text"]).encode()
    assert record["portable_data_hash"] == local_pdh == f"{hashlib.md5(portable).hexdigest()}+{len(portable)}"
    assert len(set(re.findall(r" ([0-9a-f]{32})\+", record["manifest_text"]))) >= 2  # big.bin spans blocks
    assert record["file_count"] == 4 and record["file_size_total"] == sum(map(len, files.values()))
    for key in (coll.manifest_locator(), local_pdh):
        reader = arvados.collection.CollectionReader(key, api_client=api)
        assert reader.portable_data_hash() == local_pdh
        for name, data in files.items():
            with reader.open(name, "rb") as f:
                assert f.read() == data, name


def test_manifests_are_signed_per_token_and_stored_unsigned(arvados_double: ArvadosDouble,
                                                             arvados_client: Client) -> None:
    owner, other = new_user(arvados_double, arvados_client), new_user(arvados_double, arvados_client)
    coll = save(owner["api"], {"f": b"per token"})
    share = {"link_class": "permission", "name": "can_read", "tail_uuid": other["uuid"],
             "head_uuid": coll.manifest_locator()}
    owner["api"].links().create(body={"link": share}).execute()  # a wrapped body
    mine = owner["api"].collections().get(uuid=coll.manifest_locator()).execute()
    theirs = other["api"].collections().get(uuid=coll.manifest_locator()).execute()
    assert "+A" not in mine["unsigned_manifest_text"]
    assert "+A" not in arvados_double.record(mine["uuid"])["manifest_text"]  # stored without signatures
    mine_loc, theirs_loc = (re.search(r" (\S+\+A\S+)", r["manifest_text"]).group(1) for r in (mine, theirs))
    assert mine_loc != theirs_loc and mine_loc.split("+A")[0] == theirs_loc.split("+A")[0]
    assert other["api"].keep.get(theirs_loc) == b"per token"
    with pytest.raises(arvados.errors.KeepReadError):
        arvados.KeepClient(api_client=other["api"], num_retries=0).get(mine_loc)


def test_forged_or_missing_signatures_are_refused(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    locator = api.keep.put(b"forged", copies=1)
    md5_size = locator.split("+A")[0]
    forged = f"{md5_size}+A{'0' * 40}@{locator.split('@')[1]}"
    for bad in (forged, md5_size):
        error = error_of(api.collections().create(body={"collection": {"manifest_text": f". {bad} 0:6:f\n"}}))
        assert error.resp.status == 403, bad
    ok = api.collections().create(body={"collection": {"manifest_text": f". {locator} 0:6:f\n"}}).execute()
    reader = arvados.collection.CollectionReader(ok["uuid"], api_client=api)
    assert ok["portable_data_hash"] == reader.portable_data_hash()
    empty = api.collections().create(body={"manifest_text": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:e\n"}).execute()
    assert empty["file_count"] == 1
    admin = arvados_client(arvados_double.users["admin"][1])
    assert admin.collections().create(body={"manifest_text": f". {md5_size} 0:6:f\n"}).execute()["uuid"]


def test_invalid_manifest_and_wrong_pdh_are_refused(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    error = error_of(api.collections().create(body={"manifest_text": ". 0:0:foo"}))
    assert error.resp.status == 422
    assert messages(error)[0].startswith("Manifest text Invalid manifest: does not end with newline")
    error = error_of(api.collections().create(body={"manifest_text": "foo d41d8cd98f00b204e9800998ecf8427e+0 0:0:x\n"}))
    assert "missing or invalid stream name" in messages(error)[0]
    error = error_of(api.collections().create(body={"manifest_text": "", "portable_data_hash": "0" * 32 + "+0"}))
    assert "does not match computed hash 'd41d8cd98f00b204e9800998ecf8427e+0'" in messages(error)[0]


def test_unique_names_and_ensure_unique_name(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    name = unique("same name")
    first = api.collections().create(body={"collection": {"name": name}}).execute()
    error = error_of(api.collections().create(body={"collection": {"name": name}}))
    assert error.resp.status == 422 and "duplicate key value violates unique constraint" in messages(error)[0]
    second = api.collections().create(body={"collection": {"name": name}}, ensure_unique_name=True).execute()
    assert second["name"] == f"{name} ({second['uuid'][-15:]})"
    api.collections().delete(uuid=first["uuid"]).execute()  # trashed names are free again
    assert api.collections().create(body={"collection": {"name": name}}).execute()["name"] == name


def test_trash_hides_and_untrash_restores(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    uuid = api.collections().create(body={"name": unique("trash")}).execute()["uuid"]
    trashed = api.collections().delete(uuid=uuid).execute()
    assert trashed["is_trashed"] is True and trashed["delete_at"] > trashed["trash_at"]
    assert error_of(api.collections().get(uuid=uuid)).resp.status == 404
    assert api.collections().list(filters=[["uuid", "=", uuid]]).execute()["items"] == []
    assert api.collections().list(filters=[["uuid", "=", uuid]], include_trash=True).execute()["items"]
    assert api.collections().untrash(uuid=uuid).execute()["is_trashed"] is False


# ---- list parameters ----------------------------------------------------------------------------------------


def test_filters_order_limit_offset_select_count_on_collections(arvados_double: ArvadosDouble,
                                                                  arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    tag = unique("tag")
    made = []
    for i, props in enumerate([{"n": 1, "color": "red"}, {"n": 2, "color": "blue"}, {"n": 3},
                               {"n": 4, "color": "Red", "list": ["a", "b"]}]):
        made.append(api.collections().create(body={"collection": {"name": f"{tag} {i}", "description": f"d{i}",
                                                                  "properties": dict(props, tag=tag)}}).execute())
    base = [["properties.tag", "=", tag]]

    def names(filters: list, **kw: Any) -> List[str]:
        items = api.collections().list(filters=base + filters, order=kw.pop("order", ["name asc"]), **kw).execute()
        return [i["name"][len(tag) + 1:] for i in items["items"]]

    assert names([]) == ["0", "1", "2", "3"]
    assert names([], order=["name desc"]) == ["3", "2", "1", "0"]
    assert names([["properties.color", "=", "red"]]) == ["0"]
    assert names([["properties.color", "!=", "red"]]) == ["1", "2", "3"]
    assert names([["properties.color", "exists", True]]) == ["0", "1", "3"]
    assert names([["properties.color", "exists", False]]) == ["2"]
    assert names([["properties", "exists", "list"]]) == ["3"]
    assert names([["properties.color", "in", ["red", "blue"]]]) == ["0", "1"]
    assert names([["properties.color", "ilike", "r%"]]) == ["0", "3"]
    assert names([["properties.color", "like", "r%"]]) == ["0"]
    assert names([["properties.n", ">=", 3]]) == ["2", "3"]
    assert names([["properties.n", "<", 2]]) == ["0"]
    assert names([["properties.list", "=", "a"]]) == []  # `=` is jsonb containment: {"list": "a"} is not in it
    assert names([["properties.list", "=", ["a"]]]) == ["3"]
    assert names([["properties.list", "contains", "a"]]) == ["3"]
    assert names([["properties.color", "not in", ["red"]]]) == ["1", "2", "3"]
    assert names([["description", "in", ["d1", "d2"]]]) == ["1", "2"]
    assert names([["description", "not in", ["d1"]]]) == ["0", "2", "3"]
    assert names([["name", "like", f"{tag} _"], ["description", "!=", "d0"]]) == ["1", "2", "3"]
    assert names([[["description", "name"], "ilike", "D3"]]) == ["3"]
    assert names([["created_at", ">", made[1]["created_at"]]]) == ["2", "3"]
    assert names([["uuid", "is_a", "arvados#collection"]]) == ["0", "1", "2", "3"]
    assert names([], limit=2, offset=1) == ["1", "2"]
    page = api.collections().list(filters=base, select=["uuid", "name"], count="none", limit=1).execute()
    assert "items_available" not in page and set(page["items"][0]) == {"uuid", "name", "kind", "etag"}
    assert api.collections().list(filters=base, limit=0).execute()["items_available"] == 4
    assert api.collections().list(where={"name": f"{tag} 2"}).execute()["items"][0]["uuid"] == made[2]["uuid"]
    error = error_of(api.collections().list(filters=[["no_such", "=", 1]]))
    assert error.resp.status == 422 and "Invalid attribute 'no_such' in filter" in messages(error)[0]


def test_filters_on_links_and_keyset_paging(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    user = new_user(arvados_double, arvados_client)
    api, tag = user["api"], unique("linktag")
    head = api.collections().create(body={}).execute()["uuid"]
    for i in range(5):
        api.links().create(body={"link_class": tag, "name": f"n{i}", "head_uuid": head,
                                 "properties": {"i": i} if i % 2 else {}}).execute()
    everything = list(arvados.util.keyset_list_all(api.links().list, filters=[["link_class", "=", tag]]))
    assert [link["name"] for link in everything] == ["n0", "n1", "n2", "n3", "n4"]
    odd = api.links().list(filters=[["link_class", "=", tag], ["properties", "exists", "i"]]).execute()["items"]
    assert [link["name"] for link in odd] == ["n3", "n1"]  # default order: modified_at desc
    assert odd[0]["head_kind"] == "arvados#collection" and odd[0]["tail_uuid"] is None
    by_head = api.links().list(filters=[["head_uuid", "in", [head]], ["name", "ilike", "N4"]]).execute()
    assert [link["name"] for link in by_head["items"]] == ["n4"]
    many = [f"zzzzz-4zz18-{i:015d}" for i in range(100)] + [head]  # a URL this long is sent as a POST
    assert len(api.links().list(filters=[["head_uuid", "in", many], ["link_class", "=", tag]]).execute()["items"]) == 5
    updated = api.links().update(uuid=odd[0]["uuid"], body={"link": {"name": "renamed"}}).execute()
    assert updated["name"] == "renamed" and updated["modified_at"] > odd[0]["modified_at"]


# ---- Keep ----------------------------------------------------------------------------------------------------


def test_keep_put_get_head_replicas_and_byte_counter(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    keep = arvados.KeepClient(api_client=api)
    arvados_double.reset_counters()
    data = pattern(3 * MiB + 7, 3)
    locator = keep.put(data, copies=2)
    md5 = hashlib.md5(data).hexdigest()
    assert re.fullmatch(rf"{md5}\+{len(data)}\+A[0-9a-f]{{40}}@[0-9a-f]{{8}}", locator)
    assert keep.get(locator) == data and keep.head(locator) is True
    assert arvados_double.keep_put_bytes == len(data) and arvados_double.keep_put_requests == 1
    assert md5 in arvados_double.blocks and arvados_double.blocks[md5] == data
    keep.put(data, copies=2)  # a PUT of a block Keep already has still counts: the bytes went over the wire
    assert arvados_double.keep_put_bytes == 2 * len(data)
    arvados_double.reset_counters()
    assert arvados_double.keep_put_bytes == 0

    service = api.keep_services().accessible().execute()["items"][0]
    assert service["service_type"] == "proxy" and service["service_ssl_flag"] is True
    url = f"https://{service['service_host']}:{service['service_port']}/"
    headers = {"Authorization": f"Bearer {api.api_token}", "X-Keep-Desired-Replicas": "3"}
    with warnings.catch_warnings():  # the double's certificate is self-signed
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        put = requests.put(url + hashlib.md5(b"xyz").hexdigest(), data=b"xyz", headers=headers, verify=False)
        assert put.status_code == 200
        assert put.headers["X-Keep-Replicas-Stored"] == "3"
        assert put.headers["X-Keep-Storage-Classes-Confirmed"] == "default=3"
        assert requests.put(url + md5, data=b"not it", headers=headers, verify=False).status_code == 400
        assert requests.get(url + f"{md5}+{len(data)}", headers=headers, verify=False).status_code == 400  # unsigned
        assert requests.get(url + locator, verify=False).status_code == 401  # no token


def test_concurrent_clients_each_save_their_collection(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    user = new_user(arvados_double, arvados_client)
    results: Dict[int, str] = {}

    def write(i: int) -> None:
        api = arvados_client(user["token"])  # one client per thread, as the SDK's thread-safe client does
        results[i] = save(api, {f"f{i}": pattern(MiB + i, 100 + i)}, name=unique("concurrent")).manifest_locator()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(set(results.values())) == 8
    listed = user["api"].collections().list(filters=[["uuid", "in", list(results.values())]]).execute()
    assert listed["items_available"] == 8


# ---- permissions ----------------------------------------------------------------------------------------------


def test_users_see_only_what_is_theirs_or_shared(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    uuid = save(alice["api"], {"secret.txt": b"alice's"}).manifest_locator()
    assert error_of(bob["api"].collections().get(uuid=uuid)).resp.status == 404
    assert bob["api"].collections().list(filters=[["uuid", "=", uuid]]).execute()["items"] == []
    error = error_of(bob["api"].links().create(body={"link_class": "permission", "name": "can_read",
                                                     "tail_uuid": bob["uuid"], "head_uuid": uuid}))
    assert error.resp.status == 403
    alice["api"].links().create(body={"link_class": "permission", "name": "can_read", "tail_uuid": bob["uuid"],
                                      "head_uuid": uuid}).execute()
    assert bob["api"].collections().get(uuid=uuid).execute()["uuid"] == uuid
    assert arvados.collection.CollectionReader(uuid, api_client=bob["api"]).open("secret.txt").read() == "alice's"
    assert error_of(bob["api"].collections().update(uuid=uuid, body={"name": "mine"})).resp.status == 403


def test_sharing_through_a_project_and_a_role_group(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    project = alice["api"].groups().create(body={"group": {"name": unique("p"), "group_class": "project"}}).execute()
    uuid = save(alice["api"], {"f": b"in project"}, owner_uuid=project["uuid"]).manifest_locator()
    assert bob["api"].collections().list(filters=[["uuid", "=", uuid]]).execute()["items"] == []
    role = alice["api"].groups().create(body={"group": {"name": unique("r"), "group_class": "role"}}).execute()
    membership = alice["api"].links().create(body={"link_class": "permission", "name": "can_read",
                                                   "tail_uuid": bob["uuid"], "head_uuid": role["uuid"]}).execute()
    alice["api"].links().create(body={"link_class": "permission", "name": "can_write", "tail_uuid": role["uuid"],
                                      "head_uuid": project["uuid"]}).execute()
    assert [c["uuid"] for c in bob["api"].collections().list(filters=[["owner_uuid", "=", project["uuid"]]])
            .execute()["items"]] == [uuid]
    change = {"collection": {"description": "bob was here"}}
    assert error_of(bob["api"].collections().update(uuid=uuid, body=change)).resp.status == 403  # least on the path
    alice["api"].links().update(uuid=membership["uuid"], body={"name": "can_write"}).execute()
    assert bob["api"].collections().update(uuid=uuid, body=change).execute()["description"] == "bob was here"
    error = error_of(bob["api"].collections().create(body={"owner_uuid": alice["uuid"]}))
    assert error.resp.status == 403 and "without write permission on new owner" in messages(error)[0]


# ---- Docker images ---------------------------------------------------------------------------------------------


def test_list_images_in_arv_finds_hand_made_images_newest_first(arvados_double: ArvadosDouble, arvados_client: Client,
                                                                  hello_world_image: Dict[str, Any]) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    repo = unique("example/tool")
    older = make_image(api, hello_world_image, [f"{repo}:1"], timestamp="2020-01-01T00:00:00Z")
    newer = make_image(api, hello_world_image, [f"{repo}:1"], timestamp="2024-01-01T00:00:00Z")
    found = arvados.commands.keepdocker.list_images_in_arv(api, 3, image_name=repo, image_tag="1")
    assert [uuid for uuid, _ in found] == [newer["uuid"], older["uuid"]]
    assert found[0][1]["dockerhash"] == hello_world_image["id"]
    by_hash = arvados.commands.keepdocker.list_images_in_arv(api, 3, image_name=hello_world_image["id"][:20])
    assert newer["uuid"] in [uuid for uuid, _ in by_hash]


# ---- container requests and containers -------------------------------------------------------------------------


def container_request(image: str, **changes: Any) -> Dict[str, Any]:
    """A minimal committed container request body."""
    body = {"name": unique("cr"), "state": "Committed", "priority": 1, "container_image": image,
            "command": ["echo", "hello"], "output_path": "/out", "cwd": "/out",
            "mounts": {"/out": {"kind": "tmp", "capacity": 1 << 20}},
            "runtime_constraints": {"vcpus": 1, "ram": 256 << 20}}
    body.update(changes)
    return body


def test_container_request_runs_to_completion_with_log_and_output(arvados_double: ArvadosDouble,
                                                                  arvados_client: Client,
                                                                  hello_world_image: Dict[str, Any]) -> None:
    user = new_user(arvados_double, arvados_client)
    api = user["api"]
    image = make_image(api, hello_world_image, [unique("img") + ":latest"])
    cr = api.container_requests().create(body={"container_request": container_request(image["portable_data_hash"])}
                                         ).execute()
    assert cr["state"] == "Committed" and cr["container_count"] == 1
    container = api.containers().get(uuid=cr["container_uuid"]).execute()
    assert (container["state"], container["container_image"]) == ("Queued", image["portable_data_hash"])
    assert container["priority"] > 0
    assert container["runtime_user_uuid"] == user["uuid"] and container["mounts"] == {"/out": {"capacity": 1 << 20,
                                                                                                "kind": "tmp"}}
    assert error_of(api.containers().update(uuid=container["uuid"], body={"state": "Locked"})).resp.status == 403

    running = arvados_double.set_container_state(container["uuid"], "Running", runtime_status={"activity": "go"})
    assert running["state"] == "Running" and running["started_at"] and running["locked_by_uuid"]
    token = arvados_double.container_token(container["uuid"])
    assert arvados_client(token).containers().current().execute()["uuid"] == container["uuid"]
    assert api.container_requests().get(uuid=cr["uuid"]).execute()["state"] == "Committed"

    arvados_double.set_container_state(container["uuid"], "Complete", exit_code=0,
                                       log={"stderr.txt": "all good\n", "crunch-run.txt": "done\n"},
                                       output={"result.txt": "42\n"})
    final = api.container_requests().get(uuid=cr["uuid"]).execute()
    assert final["state"] == "Final" and final["log_uuid"] and final["output_uuid"]
    done = api.containers().get(uuid=container["uuid"]).execute()
    assert (done["state"], done["exit_code"]) == ("Complete", 0) and done["finished_at"]
    log = arvados.collection.CollectionReader(final["log_uuid"], api_client=api)
    assert log.open("stderr.txt").read() == "all good\n"
    assert log.open(f"log for container {container['uuid']}/crunch-run.txt").read() == "done\n"
    output = api.collections().get(uuid=final["output_uuid"]).execute()
    assert output["owner_uuid"] == user["uuid"] and output["properties"] == {"container_request": cr["uuid"],
                                                                             "type": "output"}
    assert arvados.collection.CollectionReader(output["uuid"], api_client=api).open("result.txt").read() == "42\n"
    with pytest.raises(arvados.errors.ApiError):  # the token ended with the container
        arvados_client(token).users().current().execute()


def test_cancelled_container_is_retried_while_wanted(arvados_double: ArvadosDouble, arvados_client: Client,
                                                      hello_world_image: Dict[str, Any]) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    image = make_image(api, hello_world_image, [])
    cr = api.container_requests().create(body=container_request(image["portable_data_hash"])).execute()
    arvados_double.set_container_state(cr["container_uuid"], "Cancelled", runtime_status={"error": "node lost"},
                                       log={"crunch-run.txt": "lost\n"})
    retried = api.container_requests().get(uuid=cr["uuid"]).execute()
    assert retried["state"] == "Committed" and retried["container_count"] == 2
    assert retried["container_uuid"] != cr["container_uuid"]
    log = arvados.collection.CollectionReader(retried["log_uuid"], api_client=api)  # the first attempt's log is kept
    assert log.open(f"log for container {cr['container_uuid']}/crunch-run.txt").read() == "lost\n"
    api.container_requests().update(uuid=cr["uuid"], body={"priority": 0}).execute()
    assert api.containers().get(uuid=retried["container_uuid"]).execute()["priority"] == 0
    arvados_double.set_container_state(retried["container_uuid"], "Cancelled")
    assert api.container_requests().get(uuid=cr["uuid"]).execute()["state"] == "Final"


def test_container_request_needs_a_proper_image_collection(arvados_double: ArvadosDouble, arvados_client: Client,
                                                           hello_world_image: Dict[str, Any]) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    two_files = save(api, {f"{hello_world_image['id']}.tar": hello_world_image["tar"], "extra": b"x"})
    wrong_name = save(api, {"image.tar": hello_world_image["tar"]})
    for pdh in (two_files.portable_data_hash(), wrong_name.portable_data_hash(), "0" * 32 + "+0"):
        error = error_of(api.container_requests().create(body=container_request(pdh)))
        assert error.resp.status == 422
        assert messages(error)[0].startswith(
            f'#<ArvadosModel::UnresolvableContainerError: docker image "{pdh}" not found>'), messages(error)
    name = unique("badimage")
    make_image(api, hello_world_image, [f"{name}:1"], file_name="image.tar")
    error = error_of(api.container_requests().create(body=container_request(f"{name}:1")))
    assert "Matching Docker image is incompatible with 'docker_image_formats' configuration." in messages(error)[0]
    good = make_image(api, hello_world_image, [f"{name}:2"])
    cr = api.container_requests().create(body=container_request(f"{name}:2")).execute()
    assert api.containers().get(uuid=cr["container_uuid"]).execute()["container_image"] == good["portable_data_hash"]
    draft = api.container_requests().create(body=container_request("no-such-image", state="Uncommitted")).execute()
    assert draft["container_uuid"] is None  # images are resolved on commit
    error = error_of(api.container_requests().update(uuid=draft["uuid"], body={"state": "Committed"}))
    assert 'docker image "no-such-image" not found' in messages(error)[0]


def test_container_request_validation_messages(arvados_double: ArvadosDouble, arvados_client: Client,
                                               hello_world_image: Dict[str, Any]) -> None:
    api = new_user(arvados_double, arvados_client)["api"]
    image = make_image(api, hello_world_image, [])["portable_data_hash"]
    error = error_of(api.container_requests().create(body=container_request(image, runtime_constraints={"vcpus": 0},
                                                                            output_path="/nowhere")))
    assert "Runtime constraints [vcpus]=0 must be a positive integer" in " ".join(messages(error))
    assert "Output path must be a mount target" in " ".join(messages(error))
    error = error_of(api.container_requests().create(body=container_request(image, bogus=1)))
    assert "unknown attribute 'bogus' for ContainerRequest." in messages(error)[0]
    cr = api.container_requests().create(body=container_request(image)).execute()
    error = error_of(api.container_requests().update(uuid=cr["uuid"], body={"command": ["other"]}))
    assert "Command cannot be modified in state 'Committed'" in messages(error)[0]


def bare(error: arvados.errors.ApiError) -> List[str]:
    """The `errors` of an API error response without the request id the API server appends."""
    return [re.sub(r" \(req-[a-z0-9]+\)$", "", m) for m in messages(error)]


def share(owner: Dict[str, Any], user: Dict[str, Any], head_uuid: str, level: str = "can_read") -> None:
    """`owner` grants `user` a permission on `head_uuid`."""
    owner["api"].links().create(body={"link_class": "permission", "name": level, "tail_uuid": user["uuid"],
                                      "head_uuid": head_uuid}).execute()


def project_of(user: Dict[str, Any]) -> str:
    """A new project owned by `user`."""
    return user["api"].groups().create(body={"group": {"name": unique("p"), "group_class": "project"}}).execute()["uuid"]


def test_image_is_resolved_for_the_requesting_user_by_pdh_hash_or_tag(arvados_double: ArvadosDouble,
                                                                      arvados_client: Client,
                                                                      hello_world_image: Dict[str, Any]) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    project = project_of(alice)
    tag = unique("example/shared") + ":1"
    image = make_image(alice["api"], hello_world_image, [tag], owner_uuid=project,
                       timestamp="2030-01-01T00:00:00Z")  # newest of the hello-world images, found by hash
    pdh = image["portable_data_hash"]
    for name in (pdh, hello_world_image["id"], hello_world_image["id"][:12], tag):
        cr = alice["api"].container_requests().create(body=container_request(name)).execute()
        assert alice["api"].containers().get(uuid=cr["container_uuid"]).execute()["container_image"] == pdh, name
    for name in (pdh, tag):  # bob cannot read the project: nothing found for him, and the message names the image
        error = error_of(bob["api"].container_requests().create(body=container_request(name)))
        assert error.resp.status == 422
        assert bare(error) == [f'#<ArvadosModel::UnresolvableContainerError: docker image "{name}" not found>']
    draft = bob["api"].container_requests().create(body=container_request(tag, state="Uncommitted")).execute()
    share(alice, bob, project)
    for name in (pdh, hello_world_image["id"], tag):
        cr = bob["api"].container_requests().create(body=container_request(name)).execute()
        container = bob["api"].containers().get(uuid=cr["container_uuid"]).execute()
        assert (container["container_image"], container["runtime_user_uuid"]) == (pdh, bob["uuid"])
    committed = bob["api"].container_requests().update(uuid=draft["uuid"], body={"state": "Committed"}).execute()
    assert committed["state"] == "Committed" and committed["container_uuid"]


def test_image_links_must_be_readable_too(arvados_double: ArvadosDouble, arvados_client: Client,
                                          hello_world_image: Dict[str, Any]) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    tag = unique("example/private") + ":1"
    image = make_image(alice["api"], hello_world_image, [tag])  # collection and links in alice's home project
    share(alice, bob, image["uuid"])  # bob may read the collection, not alice's links
    assert bob["api"].container_requests().create(body=container_request(image["portable_data_hash"])).execute()
    error = error_of(bob["api"].container_requests().create(body=container_request(tag)))
    assert bare(error) == [f'#<ArvadosModel::UnresolvableContainerError: docker image "{tag}" not found>']
    carol = new_user(arvados_double, arvados_client, "carol")  # a runtime token's user resolves the image
    cr = carol["api"].container_requests().create(body=container_request(tag, runtime_token=alice["token"])).execute()
    container = arvados_double.record(cr["container_uuid"])
    assert (container["container_image"], container["runtime_user_uuid"]) == (image["portable_data_hash"],
                                                                              alice["uuid"])
    error = error_of(carol["api"].container_requests().create(body=container_request(tag, runtime_token="v2/x/y")))
    assert bare(error) == ["Runtime token failed validation"]


WORKFLOW_DEFINITION = """cwlVersion: v1.2
class: Workflow
name: from the definition
doc: not a description field
inputs: []
outputs: []
steps: []
"""


def test_workflows_crud_and_name_from_definition(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    alice = new_user(arvados_double, arvados_client, "alice")
    project = project_of(alice)
    workflows = alice["api"].workflows()
    wf = workflows.create(body={"workflow": {"definition": WORKFLOW_DEFINITION, "owner_uuid": project}}).execute()
    assert re.fullmatch(r"[a-z0-9]{5}-7fd4e-[a-z0-9]{15}", wf["uuid"]) and wf["kind"] == "arvados#workflow"
    assert (wf["name"], wf["description"], wf["owner_uuid"], wf["collection_uuid"]) == (
        "from the definition", None, project, None)  # set_name_and_description
    assert workflows.get(uuid=wf["uuid"]).execute()["definition"] == WORKFLOW_DEFINITION
    listed = workflows.list(filters=[["owner_uuid", "=", project]]).execute()
    assert [w["uuid"] for w in listed["items"]] == [wf["uuid"]] and listed["kind"] == "arvados#workflowList"
    renamed = workflows.update(uuid=wf["uuid"], body={"workflow": {
        "definition": WORKFLOW_DEFINITION.replace("from the definition", "second"), "description": "mine"}}).execute()
    assert (renamed["name"], renamed["description"]) == ("second", "mine")  # the old definition's name follows
    kept = workflows.update(uuid=wf["uuid"], body={"name": "chosen"}).execute()
    kept = workflows.update(uuid=wf["uuid"], body={"definition": WORKFLOW_DEFINITION}).execute()
    assert kept["name"] == "chosen"  # a name of its own stays
    named = workflows.create(body={"workflow": {"name": "explicit", "definition": "{}"}}).execute()
    assert named["name"] == "explicit" and named["owner_uuid"] == alice["uuid"]
    error = error_of(workflows.create(body={"workflow": {"definition": "a: [b"}}))
    assert error.resp.status == 422 and messages(error)[0].startswith("Definition is not valid yaml: ")
    collection = save(alice["api"], {"wf.cwl": b"cwlVersion: v1.2\n"}, properties={"type": "workflow"})
    error = error_of(workflows.create(body={"collection_uuid": collection.manifest_locator()}))
    assert bare(error) == ["Collection uuid must be null"]  # 3.2.1: linking is off
    assert workflows.delete(uuid=wf["uuid"]).execute()["uuid"] == wf["uuid"]
    assert error_of(workflows.get(uuid=wf["uuid"])).resp.status == 404


def test_workflows_are_shared_through_their_project(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    project = project_of(alice)
    wf = alice["api"].workflows().create(body={"workflow": {"name": unique("wf"), "owner_uuid": project,
                                                            "definition": WORKFLOW_DEFINITION}}).execute()
    assert error_of(bob["api"].workflows().get(uuid=wf["uuid"])).resp.status == 404
    assert bob["api"].workflows().list(filters=[["uuid", "=", wf["uuid"]]]).execute()["items"] == []
    error = error_of(bob["api"].workflows().create(body={"workflow": {"owner_uuid": project}}))
    assert error.resp.status == 403
    share(alice, bob, project)
    assert bob["api"].workflows().get(uuid=wf["uuid"]).execute()["definition"] == WORKFLOW_DEFINITION
    assert [w["uuid"] for w in bob["api"].workflows().list(filters=[["owner_uuid", "=", project]])
            .execute()["items"]] == [wf["uuid"]]
    assert error_of(bob["api"].workflows().update(uuid=wf["uuid"], body={"name": "bob's"})).resp.status == 403
    assert error_of(bob["api"].workflows().delete(uuid=wf["uuid"])).resp.status == 403
    share(alice, bob, project, "can_write")
    assert bob["api"].workflows().update(uuid=wf["uuid"], body={"name": "bob's"}).execute()["name"] == "bob's"


def test_linked_workflow_follows_its_collection(arvados_double: ArvadosDouble, arvados_client: Client) -> None:
    alice, bob = new_user(arvados_double, arvados_client, "alice"), new_user(arvados_double, arvados_client, "bob")
    project = project_of(alice)
    properties = {"type": "workflow", "arv:workflowMain": "main.cwl", "arv:cwl_inputs": [{"id": "#main/msg",
                                                                                         "type": "string"}],
                  "arv:cwl_outputs": [{"id": "#main/out", "type": "File"}], "arv:cwl_requirements": [],
                  "arv:cwl_hints": []}
    collection = save(alice["api"], {"main.cwl": b"cwlVersion: v1.2\n"}, owner_uuid=project, name=unique("wfc"),
                      properties=properties)
    uuid = collection.manifest_locator()
    arvados_double.settings.workflow_collection_linking = True
    try:
        wf = alice["api"].workflows().create(body={"workflow": {"collection_uuid": uuid}}).execute()
        definition = json.loads(wf["definition"])
        step = definition["$graph"][0]["steps"][0]
        assert (wf["name"], wf["owner_uuid"]) == (collection.api_response()["name"], project)
        assert step["run"] == f"keep:{collection.portable_data_hash()}/main.cwl"
        assert step["in"] == [{"id": "#main/step/msg", "source": "#main/msg"}]
        assert definition["$graph"][0]["outputs"][0]["outputSource"] == "#main/step/out"
        error = error_of(alice["api"].workflows().update(uuid=wf["uuid"], body={"name": "x"}))
        assert error.resp.status == 403 and bare(error) == [
            "#<ArvadosModel::PermissionDeniedError: Cannot directly update Workflow records that have "
            f"collection_uuid set, must update the linked collection ({uuid})>"]
        alice["api"].collections().update(uuid=uuid, body={"name": "renamed", "description": "d"}).execute()
        assert alice["api"].workflows().get(uuid=wf["uuid"]).execute()["name"] == "renamed"
        error = error_of(alice["api"].collections().update(uuid=uuid, body={"properties": {"type": "other"}}))
        assert bare(error) == ["Properties cannot change 'type' property when there are linked workflows"]
        share(alice, bob, wf["uuid"])  # readable only with its collection
        assert error_of(bob["api"].workflows().get(uuid=wf["uuid"])).resp.status == 404
        share(alice, bob, uuid)
        assert bob["api"].workflows().get(uuid=wf["uuid"]).execute()["description"] == "d"
        other = save(alice["api"], {"x": b"x"})
        error = error_of(alice["api"].workflows().create(body={"collection_uuid": other.manifest_locator()}))
        assert bare(error) == ["Collection uuid properties does not have type: workflow"]
    finally:
        arvados_double.settings.workflow_collection_linking = False


# ---- arvados-cwl-runner ----------------------------------------------------------------------------------------

WORKFLOW = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: {image}
baseCommand: echo
inputs:
  message: {{type: string, inputBinding: {{position: 1}}}}
outputs: {{}}
"""


def _runner_images(arvados_double: ArvadosDouble, api: Any, image: Dict[str, Any]) -> Dict[str, str]:
    """The runner image a-c-r wants and a tool image, both present as hand-made image collections."""
    tool = unique("example/hello") + ":latest"
    runner = f"arvados/jobs:{_installed('arvados-cwl-runner')}"
    record = make_image(api, image, [runner, tool])
    return {"tool": tool, "pdh": record["portable_data_hash"]}


def _installed(distribution: str) -> str:
    from importlib import metadata
    return metadata.version(distribution)


def _no_docker_path(tmp_path: Path) -> str:
    """A PATH with the venv's scripts and nothing that could be `docker`."""
    venv_bin = Path(sys.executable).parent
    assert not (venv_bin / "docker").exists()
    return os.pathsep.join([str(venv_bin), str(tmp_path / "empty-bin")])


def _check_submitted(arvados_double: ArvadosDouble, uuid: str, user_uuid: str, image_pdh: str) -> None:
    record = arvados_double.record(uuid)
    assert record is not None and record["owner_uuid"] == user_uuid and record["state"] == "Committed"
    assert record["command"][0] == "arvados-cwl-runner" and record["container_image"] == image_pdh
    assert arvados_double.record(record["container_uuid"])["scheduling_parameters"]["supervisor"] is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importlib.resources.read_text in arvados_cwl
def test_arvados_cwl_runner_submits_without_docker(arvados_double: ArvadosDouble, arvados_client: Client,
                                                   hello_world_image: Dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import arvados_cwl
    user = new_user(arvados_double, arvados_client, "cwl")
    images = _runner_images(arvados_double, user["api"], hello_world_image)
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=images["tool"]))
    (tmp_path / "job.yml").write_text("message: hi\n")
    for key, value in arvados_double.env(user["token"]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", _no_docker_path(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # a-c-r's disk block cache lives under the home directory
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    stdout, stderr = io.StringIO(), io.StringIO()
    before = len(arvados_double.api_calls)
    code = arvados_cwl.main(["--submit", "--no-wait", "--api=containers", str(tmp_path / "wf.cwl"),
                             str(tmp_path / "job.yml")], stdout, stderr, api_client=user["api"],
                            install_sig_handlers=False)
    assert code == 0, stderr.getvalue()
    uuid = stdout.getvalue().strip()
    assert re.fullmatch(r"zzzzz-xvhdp-[0-9a-z]{15}", uuid), stdout.getvalue()
    _check_submitted(arvados_double, uuid, user["uuid"], images["pdh"])
    calls = [c.method for c in arvados_double.api_calls[before:]]
    assert calls[-1] == "container_requests.create" and "links.list" in calls


def test_arvados_cwl_runner_submits_in_a_subprocess_without_docker(arvados_double: ArvadosDouble,
                                                                   arvados_client: Client,
                                                                   hello_world_image: Dict[str, Any],
                                                                   tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "cwl")
    images = _runner_images(arvados_double, user["api"], hello_world_image)
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=images["tool"]))
    (tmp_path / "job.yml").write_text("message: hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(arvados_double.env(user["token"]), PATH=_no_docker_path(tmp_path), HOME=str(tmp_path))
    env.pop("XDG_CACHE_HOME", None)
    runner = Path(sys.executable).parent / "arvados-cwl-runner"
    done = subprocess.run([str(runner), "--submit", "--no-wait", "--api=containers", "wf.cwl", "job.yml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    uuid = done.stdout.strip()
    assert re.fullmatch(r"zzzzz-xvhdp-[0-9a-z]{15}", uuid), done.stdout
    _check_submitted(arvados_double, uuid, user["uuid"], images["pdh"])


def test_arvados_cwl_runner_refuses_a_missing_image_without_calling_docker(
        arvados_double: ArvadosDouble, arvados_client: Client, tmp_path: Path) -> None:
    user = new_user(arvados_double, arvados_client, "cwl")
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=unique("not/there") + ":1"))
    (tmp_path / "job.yml").write_text("message: hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(arvados_double.env(user["token"]), PATH=_no_docker_path(tmp_path), HOME=str(tmp_path))
    runner = Path(sys.executable).parent / "arvados-cwl-runner"
    done = subprocess.run([str(runner), "--submit", "--no-wait", "--api=containers", "wf.cwl", "job.yml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "failed to execute 'docker'" in " ".join(done.stderr.split())  # it would pull; there is no docker
    assert not arvados_double.records("container_requests", owner_uuid=user["uuid"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importlib.resources.read_text in arvados_cwl
def test_arvados_cwl_runner_creates_and_updates_a_workflow_record(arvados_double: ArvadosDouble,
                                                                  arvados_client: Client,
                                                                  hello_world_image: Dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import arvados_cwl
    user = new_user(arvados_double, arvados_client, "cwl")
    project = project_of(user)
    images = _runner_images(arvados_double, user["api"], hello_world_image)
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=images["tool"]))
    for key, value in arvados_double.env(user["token"]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", _no_docker_path(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def run(*args: str) -> str:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = arvados_cwl.main(["--api=containers", "--no-copy-deps", *args, str(tmp_path / "wf.cwl")],
                                stdout, stderr, api_client=user["api"], install_sig_handlers=False)
        assert code == 0, stderr.getvalue()
        return stdout.getvalue().strip()

    uuid = run("--create-workflow", "--project-uuid", project, "--name", "hello")
    assert re.fullmatch(r"zzzzz-7fd4e-[0-9a-z]{15}", uuid), uuid
    wf = user["api"].workflows().get(uuid=uuid).execute()
    assert (wf["name"], wf["owner_uuid"], wf["collection_uuid"]) == ("hello", project, None)
    graph = json.loads(wf["definition"])["$graph"]
    assert graph[0]["id"] == "#main" and graph[0]["steps"][0]["run"].startswith("keep:")
    assert run("--update-workflow", uuid, "--name", "hello again") == uuid
    updated = user["api"].workflows().get(uuid=uuid).execute()
    assert (updated["name"], updated["owner_uuid"]) == ("hello again", project)
