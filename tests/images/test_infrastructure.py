"""The image test infrastructure is real: real registries, real auth, real faults, real docker."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import requests
import zstandard

from ..wes import require
from .builder import (
    IN_TOTO,
    Image,
    ImageFactory,
    Index,
    Platform,
    RegistryClient,
    big_image,
    busybox_rootfs_layer,
    digest_of,
    layer,
    local_files,
    push,
)
from .docker import DockerDaemon
from .registry import (
    Delay,
    FaultProxy,
    FlipByte,
    InvalidToken,
    Registry,
    Reset,
    too_many_requests,
    unavailable,
)
from .tokenserver import LEEWAY, TokenServer

KINDS: Dict[str, Callable[[ImageFactory], object]] = {
    "docker-schema2": lambda f: f.docker_schema2(),
    "oci": lambda f: f.oci(),
    "oci-index": lambda f: f.index(oci=True),
    "docker-manifest-list": lambda f: f.index(oci=False),
    "zstd": lambda f: f.zstd(),
    "many-layers": lambda f: f.many_layers(20),
    "empty-layer": lambda f: f.empty_layer(),
    "uncompressed": lambda f: f.uncompressed(),
}


def skopeo(*args: str) -> str:
    """Run skopeo against loopback registries (plain HTTP); return its stdout."""
    require(shutil.which("skopeo") is not None, "skopeo is missing (apt-get install skopeo)")
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fetch_and_check(reg: Registry, repo: str, reference: str, media_type: str, expected: bytes) -> None:
    """GET a manifest with plain requests and check type, bytes and digest header."""
    response = requests.get(f"{reg.url}/v2/{repo}/manifests/{reference}", headers={"Accept": media_type}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == media_type
    assert response.content == expected
    assert response.headers["Docker-Content-Digest"] == digest_of(expected)


# ---------------------------------------------------------------------------- builder and push


def test_layers_are_deterministic_tars_owned_by_root() -> None:
    first = layer({"b/file": b"x", "a": b"y"})
    second = layer({"a": b"y", "b/file": b"x"})
    assert first.blob == second.blob and first.digest == second.digest
    members = tarfile.open(fileobj=io.BytesIO(gzip.decompress(first.blob))).getmembers()
    assert [m.name for m in members] == ["a", "b", "b/file"]
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 1704067200)}
    assert first.diff_id == digest_of(first.tar)


def test_layers_copy_local_files_with_modes_and_links(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/tool").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "bin/tool").chmod(0o755)
    (tmp_path / "bin/alias").symlink_to("tool")
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(layer(local_files(tmp_path, "opt")).tar))}
    assert members["opt/bin/tool"].mode == 0o755 and members["opt/bin/alias"].linkname == "tool"


def test_busybox_layer_has_applet_links() -> None:
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(busybox_rootfs_layer().tar)).getmembers()}
    assert members["bin/busybox"].mode == 0o755 and members["bin/busybox"].size > 100_000
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777


def test_zstd_layer_is_a_zstd_frame_of_its_tar(image_factory: ImageFactory) -> None:
    image = image_factory.zstd()
    manifest = json.loads(image.manifest)
    assert {d["mediaType"] for d in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    for lay in image.layers:
        assert lay.blob[:4] == b"\x28\xb5\x2f\xfd"
        if shutil.which("zstd"):  # an independent decoder when the machine has one
            plain = subprocess.run(["zstd", "-dc"], input=lay.blob, capture_output=True, check=True).stdout
        else:
            plain = zstandard.ZstdDecompressor().decompress(lay.blob)
        assert digest_of(plain) == lay.diff_id
    assert json.loads(image.config)["rootfs"]["diff_ids"] == [lay.diff_id for lay in image.layers]


def test_index_lists_platforms_then_buildkit_attestations(image_factory: ImageFactory) -> None:
    index = image_factory.index()
    entries = json.loads(index.data)["manifests"]
    platforms = [Platform(e["platform"]["os"], e["platform"]["architecture"], e["platform"].get("variant"))
                 for e in entries]
    assert [str(p) for p in platforms[:3]] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    for entry, image in zip(entries[3:], index.images):
        assert entry["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert entry["annotations"] == {"vnd.docker.reference.digest": image.digest,
                                        "vnd.docker.reference.type": "attestation-manifest"}
    att = json.loads(index.attestations[0].manifest)
    assert att["layers"][0]["mediaType"] == IN_TOTO


def test_empty_layer_image_has_an_empty_tar_and_an_empty_history_entry(image_factory: ImageFactory) -> None:
    image = image_factory.empty_layer()
    assert tarfile.open(fileobj=io.BytesIO(image.layers[1].tar)).getmembers() == []
    history = json.loads(image.config)["history"]
    assert history[0]["empty_layer"] is True
    assert len([h for h in history if not h.get("empty_layer")]) == len(image.layers)


def test_big_image_mixes_random_text_and_binaries() -> None:
    image = big_image(3 << 20, layers=3, seed=1)
    assert len(image.layers) == 3
    total = sum(len(lay.tar) for lay in image.layers)
    assert 3 << 20 <= total < (3 << 20) + (1 << 20)
    # the random 40% cannot be compressed, the text and the libraries can
    assert 0.4 * total < sum(lay.size for lay in image.layers) < 0.9 * total
    assert big_image(3 << 20, layers=3, seed=1).digest == image.digest


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pushed_image_reads_back_by_tag_and_digest(kind: str, registry: Registry, repo: str,
                                                   image_factory: ImageFactory) -> None:
    image = KINDS[kind](image_factory)
    assert isinstance(image, (Image, Index))
    top = push(registry, repo, "v1", image)
    assert top == image.digest
    data = image.data if isinstance(image, Index) else image.manifest
    fetch_and_check(registry, repo, "v1", image.media_type, data)
    fetch_and_check(registry, repo, image.digest, image.media_type, data)
    client = RegistryClient(registry.url)
    for child in image.children if isinstance(image, Index) else [image]:
        fetch_and_check(registry, repo, child.digest, child.media_type, child.manifest)
        for digest, blob in child.blobs():
            fetched = client.get_blob(repo, digest)
            assert fetched == blob and hashlib.sha256(fetched).hexdigest() == digest.split(":")[1]


def test_chunked_push_uses_patch_requests(fault_proxy: FaultProxy, repo: str, image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(fault_proxy, repo, "v1", image, chunk_size=256 << 10)
    busybox = image.layers[0]
    assert fault_proxy.count("PATCH") == -(-busybox.size // (256 << 10))
    assert RegistryClient(fault_proxy.url).get_blob(repo, busybox.digest) == busybox.blob


def test_pushing_again_skips_existing_blobs(fault_proxy: FaultProxy, repo: str, image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    push(fault_proxy, repo, "v1", image)
    uploads = fault_proxy.count("POST", r"/blobs/uploads/$")
    push(fault_proxy, repo, "v2", image)
    assert uploads == len(image.blobs())
    assert fault_proxy.count("POST", r"/blobs/uploads/$") == uploads
    assert fault_proxy.count("HEAD") == 2 * len(image.blobs())


# --------------------------------------------------------------------------------------- skopeo


def test_skopeo_inspects_single_platform_images(registry: Registry, repo: str, image_factory: ImageFactory) -> None:
    for tag, image in (("schema2", image_factory.docker_schema2()), ("oci", image_factory.oci())):
        push(registry, repo, tag, image)
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/{repo}:{tag}"))
        assert info["Digest"] == image.digest
        assert info["Layers"] == [lay.digest for lay in image.layers]
        assert (info["Os"], info["Architecture"]) == ("linux", "amd64")


def test_skopeo_reads_the_index_raw_and_per_platform(registry: Registry, repo: str,
                                                     image_factory: ImageFactory) -> None:
    index = image_factory.index()
    push(registry, repo, "v1", index)
    ref = f"docker://{registry.host}/{repo}:v1"
    assert skopeo("inspect", "--tls-verify=false", "--raw", ref).encode() == index.data
    arm64 = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                              "--override-variant", "v8", ref))
    assert arm64["Layers"] == [lay.digest for lay in index.image_for("linux/arm64/v8").layers]


def test_skopeo_copies_every_manifest_and_blob_of_the_index(registry: Registry, repo: str, tmp_path: Path,
                                                            image_factory: ImageFactory) -> None:
    """skopeo checks each blob against its digest while it copies."""
    index = image_factory.index()
    push(registry, repo, "v1", index)
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/{repo}:v1", f"dir:{tmp_path}/out")
    copied = {p.name for p in (tmp_path / "out").iterdir()}
    for child in index.children:
        assert {digest.split(":")[1] for digest, _ in child.blobs()} <= copied


# ----------------------------------------------------------------------------------------- auth


def test_token_registry_refuses_anonymous_pull_with_a_bearer_challenge(token_registry: Registry, repo: str,
                                                                       token_server: TokenServer,
                                                                       image_factory: ImageFactory) -> None:
    push(token_registry, repo, "v1", image_factory.oci())
    response = requests.get(f"{token_registry.url}/v2/{repo}/manifests/v1", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",scope="repository:{repo}:pull"')


def test_token_registry_accepts_a_token_from_the_token_server(token_registry: Registry, repo: str,
                                                              token_server: TokenServer,
                                                              image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    push(token_registry, repo, "v1", image)
    assert token_server.count(f"repository:{repo}:pull,push") >= 1
    answer = requests.get(token_server.realm, params={"service": token_server.service,
                                                      "scope": f"repository:{repo}:pull"},
                          auth=("reader", "bookworm"), timeout=10).json()
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300 and answer["issued_at"]
    response = requests.get(f"{token_registry.url}/v2/{repo}/manifests/v1", timeout=10,
                            headers={"Authorization": f"Bearer {answer['token']}", "Accept": image.media_type})
    assert response.status_code == 200 and response.content == image.manifest
    assert token_server.requests[-1].user == "reader"
    assert token_server.requests[-1].access == [{"type": "repository", "name": repo, "actions": ["pull"]}]


def test_token_without_push_rights_gets_insufficient_scope(token_registry: Registry, repo: str,
                                                           token_server: TokenServer) -> None:
    answer = requests.get(token_server.realm, params={"service": token_server.service,
                                                      "scope": f"repository:{repo}:pull,push"},
                          auth=("reader", "bookworm"), timeout=10).json()
    response = requests.post(f"{token_registry.url}/v2/{repo}/blobs/uploads/", timeout=10,
                             headers={"Authorization": f"Bearer {answer['token']}"})
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_anonymous_clients_pull_public_repositories_only(token_registry: Registry, image_factory: ImageFactory,
                                                         repo: str) -> None:
    public = "public/" + repo.split("/", 1)[1]
    for name in (repo, public):
        push(token_registry, name, "v1", image_factory.docker_schema2())
    anonymous = RegistryClient(token_registry.url)
    assert anonymous.get_manifest(public, "v1").status_code == 200
    assert anonymous.get_manifest(repo, "v1").status_code == 401


def test_token_server_refuses_wrong_passwords_and_unknown_services(token_server: TokenServer) -> None:
    url = token_server.realm
    assert requests.get(url, params={"service": token_server.service}, auth=("alice", "no"), timeout=10
                        ).status_code == 401
    assert requests.get(url, params={"service": "other"}, auth=("alice", "wonderland"), timeout=10
                        ).status_code == 400
    token_server.fail(503)
    assert requests.get(url, params={"service": token_server.service}, timeout=10).status_code == 503
    assert [r.status for r in token_server.requests] == [401, 400, 503]


def test_token_response_keys_are_configurable(token_server: TokenServer) -> None:
    token_server.response_keys, token_server.expires_in, token_server.issued_at = ("access_token",), None, False
    answer = requests.get(token_server.realm, params={"service": token_server.service}, timeout=10).json()
    assert set(answer) == {"access_token"}


def test_short_lived_tokens_expire_at_the_registry(token_registry: Registry, repo: str, token_server: TokenServer,
                                                   image_factory: ImageFactory) -> None:
    push(token_registry, repo, "v1", image_factory.oci())
    token_server.valid_for = 2
    started = time.time()
    token = requests.get(token_server.realm, params={"service": token_server.service,
                                                     "scope": f"repository:{repo}:pull"},
                         auth=("alice", "wonderland"), timeout=10).json()["token"]
    claims = json.loads(_jwt_claims(token))
    assert claims["exp"] + LEEWAY <= started + 2
    url, headers = f"{token_registry.url}/v2/{repo}/tags/list", {"Authorization": f"Bearer {token}"}
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    time.sleep(max(0.0, claims["exp"] + LEEWAY + 0.2 - time.time()))
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def _jwt_claims(token: str) -> bytes:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("algorithm,key_reference", [("RS256", "kid"), ("ES256", "x5c"), ("ES256", "kid")])
def test_registry_verifies_other_signing_algorithms_and_key_references(algorithm: str, key_reference: str,
                                                                       tmp_path: Path,
                                                                       image_factory: ImageFactory) -> None:
    require(Path("/usr/bin/docker-registry").exists(), "docker-registry is missing")
    with TokenServer(algorithm=algorithm, key_reference=key_reference) as server, \
            Registry(tmp_path, token_server=server) as reg:
        image = image_factory.oci()
        push(reg, "test/keys", "v1", image)
        assert RegistryClient(reg.url, server.default_credentials).get_manifest("test/keys", "v1").content == \
            image.manifest


def test_basic_registry_refuses_wrong_passwords(basic_registry: Registry, repo: str,
                                                image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(basic_registry, repo, "v1", image)
    url = f"{basic_registry.url}/v2/{repo}/manifests/v1"
    refused = requests.get(url, auth=("alice", "wrong"), timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert requests.get(url, timeout=10).status_code == 401
    ok = requests.get(url, auth=basic_registry.credentials, headers={"Accept": image.media_type}, timeout=10)
    assert ok.status_code == 200 and ok.content == image.manifest


def test_registry_reports_health_and_logs_requests(registry: Registry) -> None:
    assert registry.healthy()
    requests.get(registry.url + "/v2/_catalog", timeout=10)
    assert "/v2/_catalog" in registry.log_text()


# ---------------------------------------------------------------------------------------- proxy


def test_proxy_resets_the_connection_mid_blob(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    blob = pushed.layers[0]
    fault_proxy.add_rule(f"/blobs/{blob.digest}$", Reset(after_bytes=100_000), method="GET")
    url = f"{fault_proxy.url}/v2/{repo}/blobs/{blob.digest}"
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with requests.get(url, stream=True, timeout=10) as response:
            assert response.status_code == 200
            for piece in response.iter_content(8192):
                received += piece
    assert 0 < len(received) <= 100_000 and blob.blob.startswith(bytes(received))
    assert requests.get(url, timeout=10).content == blob.blob
    assert fault_proxy.blob_gets(blob.digest) == 2


def test_proxy_resets_before_answering(fault_proxy: FaultProxy) -> None:
    fault_proxy.add_rule("^/v2/$", Reset())
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(fault_proxy.url + "/v2/", timeout=10)
    assert requests.get(fault_proxy.url + "/v2/", timeout=10).status_code == 200


def test_proxy_answers_429_and_503_then_forwards(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    url = f"{fault_proxy.url}/v2/{repo}/manifests/v1"
    fault_proxy.add_rule("/manifests/", too_many_requests(3))
    fault_proxy.add_rule("/manifests/", unavailable(), times=2)
    statuses = [requests.get(url, headers={"Accept": pushed.media_type}, timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [429, 503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "3" and "Retry-After" not in statuses[1].headers
    assert statuses[3].content == pushed.manifest
    assert [r.action for r in fault_proxy.requests] == ["Status", "Status", "Status", None]


def test_proxy_flips_one_byte_of_a_blob(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    blob = pushed.layers[1]
    fault_proxy.add_rule("/blobs/", FlipByte(offset=7), method="GET")
    data = requests.get(f"{fault_proxy.url}/v2/{repo}/blobs/{blob.digest}", timeout=10).content
    assert len(data) == blob.size and data != blob.blob
    assert [i for i in range(len(data)) if data[i] != blob.blob[i]] == [7]


def test_proxy_delays_and_stalls(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    fault_proxy.add_rule("/tags/list", Delay(0.5))
    started = time.monotonic()
    assert requests.get(f"{fault_proxy.url}/v2/{repo}/tags/list", timeout=10).json()["tags"] == ["v1"]
    assert time.monotonic() - started >= 0.5
    fault_proxy.add_rule("/blobs/", Delay(5, after_bytes=10), method="GET")
    with pytest.raises(requests.exceptions.ConnectionError):  # a read timeout mid-body
        requests.get(f"{fault_proxy.url}/v2/{repo}/blobs/{pushed.layers[0].digest}", timeout=0.5).content


def test_proxy_keeps_range_and_rewrites_upload_locations(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    blob = pushed.layers[0]
    partial = requests.get(f"{fault_proxy.url}/v2/{repo}/blobs/{blob.digest}", headers={"Range": "bytes=100-199"},
                           timeout=10)
    assert partial.status_code == 206 and partial.content == blob.blob[100:200]
    assert partial.headers["Content-Range"] == f"bytes 100-199/{blob.size}"
    upload = requests.post(f"{fault_proxy.url}/v2/{repo}/blobs/uploads/", timeout=10)
    assert upload.status_code == 202 and upload.headers["Location"].startswith(fault_proxy.url + "/v2/")


def test_proxy_spoils_tokens_like_an_expiry(token_registry: Registry, repo: str, image_factory: ImageFactory,
                                            token_server: TokenServer) -> None:
    image = image_factory.oci()
    with FaultProxy(token_registry) as proxy:
        push(proxy, repo, "v1", image)
        client = RegistryClient(proxy.url, proxy.credentials)
        assert client.get_manifest(repo, "v1").status_code == 200
        tokens_before = token_server.count()
        proxy.add_rule("/manifests/", InvalidToken())
        response = client.get_manifest(repo, "v1")  # 401 invalid_token, then the client fetches a new token
        assert response.status_code == 200
        assert token_server.count() == tokens_before + 1
        assert [r.status for r in proxy.requests[-2:]] == [401, 200]


def test_proxy_counts_requests_per_method_path_and_blob(fault_proxy: FaultProxy, repo: str, pushed: Image) -> None:
    client = RegistryClient(fault_proxy.url)
    for _ in range(3):
        client.get_blob(repo, pushed.layers[1].digest)
    client.blob_exists(repo, pushed.layers[1].digest)
    client.get_manifest(repo, "v1")
    assert fault_proxy.blob_gets(pushed.layers[1].digest) == 3
    assert fault_proxy.blob_gets(pushed.layers[0].digest) == 0
    assert fault_proxy.count("HEAD") == 1
    assert fault_proxy.count(path="/manifests/v1$") == 1
    assert fault_proxy.count() == 5


# --------------------------------------------------------------------------------------- docker


def _write_docker_save(image: Image, ref: str, path: Path) -> None:
    """A minimal docker-save archive, private to this test (the project writes its own)."""
    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        config = image.config_digest.split(":")[1] + ".json"
        add(tar, config, image.config)
        layers: List[str] = []
        for lay in image.layers:
            name = lay.diff_id.split(":")[1] + "/layer.tar"
            if name not in layers:
                add(tar, name, lay.tar)
            layers.append(name)
        add(tar, "manifest.json", json.dumps([{"Config": config, "RepoTags": [ref], "Layers": layers}]).encode())


def _load_and_run(daemon: DockerDaemon, image: Image, tmp_path: Path, ref: str) -> None:
    tarball = tmp_path / "image.tar"
    _write_docker_save(image, ref, tarball)
    assert daemon.load(tarball) == [ref]
    assert daemon.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image.config_digest
    out = daemon.docker("run", "--rm", "--network", "none", ref, "sh", "-c", "echo ok; cat /etc/wes-test/*")
    assert out.stdout.split() == ["ok", "docker-schema2"]


def test_docker_loads_a_busybox_docker_save_tarball_and_runs_it(docker_daemon: DockerDaemon, tmp_path: Path,
                                                                image_factory: ImageFactory) -> None:
    _load_and_run(docker_daemon, image_factory.docker_schema2(), tmp_path, "wes-arvados-test/busybox:loaded")


def test_docker_pulls_the_index_from_the_loopback_registry(docker_daemon: DockerDaemon, registry: Registry,
                                                           repo: str, image_factory: ImageFactory) -> None:
    """Docker treats 127.0.0.0/8 as an insecure registry, so it pulls the builder's index as is."""
    index = image_factory.index()
    push(registry, repo, "v1", index)
    ref = f"{registry.host}/{repo}:v1"
    docker_daemon.track(ref)
    assert f"Digest: {index.digest}" in docker_daemon.docker("pull", ref).stdout
    assert docker_daemon.docker("run", "--rm", "--network", "none", ref, "cat", "/etc/wes-test/index-amd64"
                                ).stdout == "index-amd64\n"


def test_private_dockerd_starts_runs_and_stops(docker_daemon: DockerDaemon, tmp_path: Path,
                                               image_factory: ImageFactory) -> None:
    """The path CI takes on a machine without a running daemon: our own dockerd, then nothing left."""
    if docker_daemon.owned:
        daemon = docker_daemon
    else:
        require(DockerDaemon.unavailable_reason(reuse_system=False) is None, "cannot start a private dockerd")
        daemon = DockerDaemon(tmp_path / "private", reuse_system=False).start()
    try:
        assert daemon.owned and daemon.socket != Path("/var/run/docker.sock")
        _load_and_run(daemon, image_factory.docker_schema2(), tmp_path, "wes-arvados-test/busybox:private")
    finally:
        if daemon is not docker_daemon:
            daemon.stop()
            assert not daemon.data_root.exists() and daemon.proc is None
