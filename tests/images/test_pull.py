"""Pulling real images from a real registry, checked by real consumers: docker load, skopeo."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import pytest

from wes_arvados.images.errors import DigestMismatch, ImageError, PlatformNotFound
from wes_arvados.images.pull import PullOptions, PullResult, choose, pull
from wes_arvados.images.reference import parse_normalized_named
from wes_arvados.images.strategy import Compressed, OciLayout, Strategy, Uncompressed

from ..wes import ROOT, require
from .builder import Image, ImageFactory, Index, RegistryClient, push
from .docker import DockerDaemon
from .registry import FaultProxy, FlipByte, Registry, Reset

# kind -> (the pushed image, --platform, the single-platform image expected, runs `sh` in docker 20.10)
Kind = Tuple[Callable[[ImageFactory], Union[Image, Index]], Optional[str], Callable[[ImageFactory], Image], bool]
KINDS: Dict[str, Kind] = {
    "docker-schema2": (lambda f: f.docker_schema2(), None, lambda f: f.docker_schema2(), True),
    "oci": (lambda f: f.oci(), None, lambda f: f.oci(), True),
    "oci-index": (lambda f: f.index(), None, lambda f: f.index().image_for("linux/amd64"), True),
    "oci-index-arm64": (lambda f: f.index(), "linux/arm64",
                        lambda f: f.index().image_for("linux/arm64/v8"), False),
    "docker-manifest-list": (lambda f: f.index(oci=False), None,
                             lambda f: f.index(oci=False).image_for("linux/amd64"), True),
    "zstd": (lambda f: f.zstd(), None, lambda f: f.zstd(), False),
    "many-layers": (lambda f: f.many_layers(20), None, lambda f: f.many_layers(20), False),
    "empty-layer": (lambda f: f.empty_layer(), None, lambda f: f.empty_layer(), False),
    "uncompressed": (lambda f: f.uncompressed(), None, lambda f: f.uncompressed(), False),
    "gzip-members": (lambda f: f.gzip_members(), None, lambda f: f.gzip_members(), True),
}


def skopeo(*args: str) -> str:
    """Run skopeo (plain HTTP to loopback registries); return its stdout."""
    require(shutil.which("skopeo") is not None, "skopeo is missing (apt-get install skopeo)")
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def members(path: Path) -> Dict[str, bytes]:
    """Regular files of a tar archive by name."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_docker_archive(path: Path, image: Image, repo_tags: List[str], compressed: bool = False) -> None:
    """The archive holds the config byte for byte and every layer, each verified against the config."""
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    assert len(manifest) == 1 and manifest[0]["RepoTags"] == repo_tags
    assert manifest[0]["Config"] == image.config_digest.split(":")[1] + ".json"
    assert files[manifest[0]["Config"]] == image.config
    assert len(manifest[0]["Layers"]) == len(image.layers)
    for name, lay in zip(manifest[0]["Layers"], image.layers):
        assert (files[name] == lay.blob) if compressed else (sha256(files[name]) == lay.diff_id)
    assert "repositories" in files


def pull_into(tmp_path: Path, ref: str, name: str = "out.tar", **options: object) -> Tuple[PullResult, Path]:
    """Pull `ref` into tmp_path/name with a cache in tmp_path/cache (unless options say otherwise)."""
    options.setdefault("cache_dir", tmp_path / "cache")
    out = tmp_path / name
    return pull(parse_normalized_named(ref), out, PullOptions(**options)), out  # type: ignore[arg-type]


def served(registry: Registry, repo: str, image: Image, via: Optional[FaultProxy] = None) -> str:
    """Push `image` as `repo`:1 and return its reference, through `via` if given."""
    push(registry, repo, "1", image)
    return f"{(via or registry).host}/{repo}:1"


# ---- formats and consumers --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pulled_archive_holds_the_config_and_verified_layers(kind: str, registry: Registry, repo: str,
                                                             tmp_path: Path, image_factory: ImageFactory) -> None:
    pushed, platform, expected, _ = KINDS[kind]
    push(registry, repo, "1", pushed(image_factory))
    image = expected(image_factory)
    ref = f"{registry.host}/{repo}:1"
    result, out = pull_into(tmp_path, ref, platform=platform)
    assert (result.image_id, result.manifest_digest) == (image.config_digest, image.digest)
    assert result.size == out.stat().st_size and result.repo_tags == [ref]
    check_docker_archive(out, image, [ref])
    info = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert info["Architecture"] == image.platform.architecture
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path}/copied:x")


@pytest.mark.parametrize("kind", ["docker-schema2", "oci", "zstd", "empty-layer", "oci-index-arm64"])
def test_config_and_layers_equal_skopeos_own_docker_archive(kind: str, registry: Registry, repo: str,
                                                            tmp_path: Path, image_factory: ImageFactory) -> None:
    pushed, platform, _, _ = KINDS[kind]
    push(registry, repo, "1", pushed(image_factory))
    _, ours = pull_into(tmp_path, f"{registry.host}/{repo}:1", platform=platform)
    arch = ["--override-arch", platform.split("/")[1]] if platform else []
    source = f"docker://{registry.host}/{repo}:1"
    mine = members(ours)
    our_manifest = json.loads(mine["manifest.json"])[0]
    if kind == "zstd":  # skopeo 1.9 writes no zstd image as docker-archive; dir: with decompression it does
        theirs = tmp_path / "skopeo"
        skopeo(*arch, "copy", "--src-tls-verify=false", "--dest-decompress", source, f"dir:{theirs}")
        config = json.loads((theirs / "manifest.json").read_text())["config"]["digest"].split(":")[1]
        skopeos = {p.name: p.read_bytes() for p in theirs.iterdir()}
        their_manifest = {"Config": config, "Layers": [n.split(".")[0] for n in our_manifest["Layers"]]}
    else:
        theirs = tmp_path / "skopeo.tar"
        skopeo(*arch, "copy", "--src-tls-verify=false", source, f"docker-archive:{theirs}")
        skopeos = members(theirs)
        their_manifest = json.loads(skopeos["manifest.json"])[0]
    assert mine[our_manifest["Config"]] == skopeos[their_manifest["Config"]]
    assert [mine[n] for n in our_manifest["Layers"]] == [skopeos[n] for n in their_manifest["Layers"]]


@pytest.mark.parametrize("kind,layers", [("docker-schema2", "uncompressed"), ("oci", "uncompressed"),
                                         ("oci-index", "uncompressed"), ("gzip-members", "uncompressed"),
                                         ("docker-schema2", "compressed"),
                                         ("docker-manifest-list", "compressed")])
def test_docker_loads_and_runs_what_we_write(kind: str, layers: str, docker_daemon: DockerDaemon, registry: Registry,
                                             repo: str, tmp_path: Path, image_factory: ImageFactory) -> None:
    pushed, platform, expected, runnable = KINDS[kind]
    assert runnable
    push(registry, repo, "1", pushed(image_factory))
    ref = f"{registry.host}/{repo}:1"
    _, out = pull_into(tmp_path, ref, layers=layers)
    check_docker_archive(out, expected(image_factory), [ref], compressed=layers == "compressed")
    assert docker_daemon.load(out) == [ref]
    image_id = docker_daemon.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert image_id == expected(image_factory).config_digest
    assert docker_daemon.docker("run", "--rm", "--network", "none", ref, "sh", "-c", "echo ok").stdout == "ok\n"


@pytest.mark.parametrize("name", ["layout", "layout.tar"])
def test_oci_layout_is_read_by_skopeo(name: str, registry: Registry, repo: str, tmp_path: Path,
                                      image_factory: ImageFactory) -> None:
    index = image_factory.index()
    push(registry, repo, "1", index)
    result, out = pull_into(tmp_path, f"{registry.host}/{repo}:1", name=name, format="oci")
    assert result.layers == "compressed" and result.index_digest == index.digest
    transport = "oci-archive" if name.endswith(".tar") else "oci"
    info = json.loads(skopeo("inspect", f"{transport}:{out}"))
    assert info["Digest"] == index.image_for("linux/amd64").digest
    if transport == "oci":
        layout = json.loads((out / "index.json").read_text())
        assert layout["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "1"


def test_a_digest_reference_gets_no_repo_tag(registry: Registry, repo: str, tmp_path: Path,
                                             image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    push(registry, repo, "1", image)
    result, out = pull_into(tmp_path, f"{registry.host}/{repo}@{image.digest}")
    assert result.repo_tags == []
    check_docker_archive(out, image, [])


def test_a_missing_platform_is_an_error_and_leaves_nothing(registry: Registry, repo: str, tmp_path: Path,
                                                           image_factory: ImageFactory) -> None:
    push(registry, repo, "1", image_factory.index())
    with pytest.raises(PlatformNotFound, match="linux/s390x"):
        pull_into(tmp_path, f"{registry.host}/{repo}:1", platform="linux/s390x")
    assert sorted(os.listdir(tmp_path)) == ["cache"]


@pytest.mark.parametrize("fmt, layers, use_cache, name, strategy", [
    ("docker-archive", "uncompressed", True, "out.tar", Uncompressed(3)),
    ("docker-archive", "compressed", True, "out.tar", Compressed(3)),
    ("docker-archive", "compressed", False, "out.tar", Compressed(3, keep_blobs=False)),
    ("oci", "uncompressed", True, "layout.tar", Compressed(3, oci=True)),
    ("oci", "uncompressed", True, "layout", OciLayout()),
])
def test_the_options_and_the_output_name_choose_how_the_archive_is_made(fmt: str, layers: str, use_cache: bool,
                                                                         name: str, strategy: Strategy) -> None:
    chosen = choose(PullOptions(format=fmt, layers=layers, jobs=3, use_cache=use_cache), Path(name))
    assert chosen == strategy
    assert chosen.layers == ("uncompressed" if strategy == Uncompressed(3) else "compressed")


def test_an_unknown_format_or_layer_form_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    ref = parse_normalized_named("127.0.0.1:9/x/img:1")  # nothing listens there: a fetch would fail otherwise
    for options, what in ((PullOptions(format="zip"), "output format"), (PullOptions(layers="gz"), "layer form")):
        with pytest.raises(ImageError, match=f"unknown {what}"):
            pull(ref, tmp_path / "out.tar", options)
    assert os.listdir(tmp_path) == []


# ---- determinism and the cache ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["docker-schema2", "gzip-members", "many-layers", "empty-layer"])
def test_layers_inflated_in_parallel_give_the_bytes_of_a_serial_pull(kind: str, registry: Registry, repo: str,
                                                                    tmp_path: Path, image_factory: ImageFactory) -> None:
    push(registry, repo, "1", KINDS[kind][0](image_factory))
    ref = f"{registry.host}/{repo}:1"
    _, serial = pull_into(tmp_path, ref, name="serial.tar", use_cache=False, jobs=1)
    _, parallel = pull_into(tmp_path, ref, name="parallel.tar", use_cache=False, jobs=8)
    assert parallel.read_bytes() == serial.read_bytes()
    check_docker_archive(parallel, KINDS[kind][2](image_factory), [ref])


def test_the_same_image_gives_the_same_bytes(registry: Registry, repo: str, tmp_path: Path,
                                             image_factory: ImageFactory) -> None:
    push(registry, repo, "1", image_factory.docker_schema2())
    ref = f"{registry.host}/{repo}:1"
    _, first = pull_into(tmp_path, ref, name="first.tar", use_cache=False)
    _, second = pull_into(tmp_path, ref, name="second.tar", use_cache=False)
    _, cached = pull_into(tmp_path, ref, name="cached.tar")
    assert first.read_bytes() == second.read_bytes() == cached.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["cache", "cached.tar", "first.tar", "second.tar"]


def test_a_warm_re_pull_makes_one_manifest_head_and_no_blob_get(fault_proxy: FaultProxy, registry: Registry,
                                                                repo: str, tmp_path: Path,
                                                                image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(5)
    ref = served(registry, repo, image, fault_proxy)
    first, out = pull_into(tmp_path, ref)
    assert first.downloaded == sum(lay.size for lay in image.layers)
    fault_proxy.clear()
    again, out2 = pull_into(tmp_path, ref, name="again.tar")
    assert again.downloaded == 0 and out2.read_bytes() == out.read_bytes()
    # The registry API check, then one manifest HEAD (which Docker Hub does not count).
    assert [(r.method, r.path) for r in fault_proxy.requests] == [("GET", "/v2/"), ("HEAD", f"/v2/{repo}/manifests/1")]
    same, _ = pull_into(tmp_path, ref)  # into the very file it made before
    assert same.downloaded == 0 and sorted(os.listdir(tmp_path)) == ["again.tar", "cache", "out.tar"]
    # another form of the same image needs the blobs, which the cache has
    fault_proxy.clear()
    compressed, out3 = pull_into(tmp_path, ref, name="compressed.tar", layers="compressed")
    check_docker_archive(out3, image, [ref], compressed=True)
    assert [r.path for r in fault_proxy.requests if "/blobs/" in r.path] == []


def test_a_changed_tag_fetches_only_the_new_blobs(fault_proxy: FaultProxy, registry: Registry, repo: str,
                                                  tmp_path: Path, image_factory: ImageFactory) -> None:
    push(registry, repo, "1", image_factory.docker_schema2())
    ref = f"{fault_proxy.host}/{repo}:1"
    pull_into(tmp_path, ref)
    updated = image_factory.oci()  # the same busybox layer, another marker layer and config
    push(registry, repo, "1", updated)
    fault_proxy.clear()
    _, out = pull_into(tmp_path, ref)
    check_docker_archive(out, updated, [ref])
    assert fault_proxy.blob_gets(updated.layers[0].digest) == 0
    assert fault_proxy.blob_gets(updated.layers[1].digest) == 1


@pytest.mark.parametrize("layers", ["uncompressed", "compressed"])
def test_concurrent_pulls_fetch_each_blob_once(layers: str, fault_proxy: FaultProxy, registry: Registry, repo: str,
                                               tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    ref = served(registry, repo, image, fault_proxy)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-m", "wes_arvados", "pull", ref, "-o", str(tmp_path / f"p{i}.tar"),
                                   "--cache-dir", str(cache), "--json", "--layers", layers],
                                  stdout=subprocess.PIPE, env=env, cwd=tmp_path)
                 for i in range(3)]
    errors: List[BaseException] = []

    def one(i: int) -> None:
        try:
            pull(parse_normalized_named(ref), tmp_path / f"t{i}.tar", PullOptions(cache_dir=cache, layers=layers))
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for process in processes:
        assert process.wait(120) == 0
        assert json.loads(process.stdout.read())["image_id"] == image.config_digest  # type: ignore[union-attr]
    assert errors == []
    for digest, _ in image.blobs():
        assert fault_proxy.blob_gets(digest) == 1, digest
    outputs = {(tmp_path / name).read_bytes() for name in os.listdir(tmp_path) if name.endswith(".tar")}
    assert len(outputs) == 1
    check_docker_archive(tmp_path / "t0.tar", image, [ref], compressed=layers == "compressed")


def _layer_entries(cache: Path, image: Image) -> List[str]:
    """The layers of `image` that have blob entries in the cache."""
    return [lay.digest for lay in image.layers if (cache / "blobs/sha256" / lay.digest.split(":")[1]).exists()]


def test_compressed_layers_stay_in_the_archive_and_serve_later_pulls(fault_proxy: FaultProxy, registry: Registry,
                                                                     repo: str, tmp_path: Path,
                                                                     image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(4)
    ref = served(registry, repo, image, fault_proxy)
    cache = tmp_path / "cache"
    _, out = pull_into(tmp_path, ref, layers="compressed")
    check_docker_archive(out, image, [ref], compressed=True)
    # The cache holds the output itself and where each layer lies in it: no second copy of any layer.
    assert _layer_entries(cache, image) == []
    assert [os.path.samefile(cache / "held" / name, out) for name in os.listdir(cache / "held")] == [True]
    assert len(list((cache / "extents").rglob("sha256/*"))) == len(image.layers)
    # The user changes one layer in the output in place: the cache notices when it reads that layer.
    changed = image.layers[2]
    with tarfile.open(out) as tar:
        offset = tar.getmember(changed.digest.split(":")[1] + ".tar.gz").offset_data
    os.chmod(out, 0o644)
    with open(out, "r+b") as f:
        f.seek(offset + changed.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    fault_proxy.clear()
    result, plain = pull_into(tmp_path, ref, name="plain.tar")
    check_docker_archive(plain, image, [ref])
    assert result.downloaded == changed.size
    assert [fault_proxy.blob_gets(lay.digest) for lay in image.layers] == [0, 0, 1, 0]
    assert _layer_entries(cache, image) == [lay.digest for lay in image.layers]
    assert list((cache / "extents").rglob("sha256/*")) == []


def test_compressed_layers_are_copied_into_a_cache_on_another_filesystem(registry: Registry, repo: str,
                                                                         tmp_path: Path,
                                                                         image_factory: ImageFactory) -> None:
    require(Path("/dev/shm").is_dir(), "no /dev/shm (a tmpfs, another filesystem than the test's)")
    image = image_factory.oci()
    push(registry, repo, "1", image)
    ref = f"{registry.host}/{repo}:1"
    cache = tmp_path / "cache"
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        require(os.stat(elsewhere).st_dev != os.stat(tmp_path).st_dev, "/dev/shm is on the test's filesystem")
        pull(parse_normalized_named(ref), Path(elsewhere) / "out.tar", PullOptions(cache_dir=cache, layers="compressed"))
        check_docker_archive(Path(elsewhere) / "out.tar", image, [ref], compressed=True)
    assert os.listdir(cache / "held") == []
    assert _layer_entries(cache, image) == [lay.digest for lay in image.layers]
    again, _ = pull_into(tmp_path, ref)
    assert again.downloaded == 0


# ---- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", ["uncompressed", "compressed"])
def test_a_connection_reset_mid_blob_is_resumed(layers: str, fault_proxy: FaultProxy, registry: Registry, repo: str,
                                                tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(registry, repo, "1", image)
    busybox = image.layers[0]
    fault_proxy.add_rule(f"/blobs/{busybox.digest}$", Reset(after_bytes=busybox.size // 2), method="GET")
    _, out = pull_into(tmp_path, f"{fault_proxy.host}/{repo}:1", layers=layers)
    # With compressed layers the bytes went into the output as they arrived, across the resume.
    check_docker_archive(out, image, [f"{fault_proxy.host}/{repo}:1"], compressed=layers == "compressed")
    assert fault_proxy.blob_gets(busybox.digest) == 2


@pytest.mark.parametrize("layers", ["uncompressed", "compressed"])
def test_a_flipped_byte_fails_the_pull_and_leaves_no_output_and_no_entry(
        layers: str, fault_proxy: FaultProxy, registry: Registry, repo: str, tmp_path: Path,
        image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(6)
    push(registry, repo, "1", image)
    bad = image.layers[3]
    fault_proxy.add_rule(f"/blobs/{bad.digest}$", FlipByte(offset=bad.size // 2), method="GET")
    with pytest.raises(DigestMismatch, match=bad.digest):
        pull_into(tmp_path, f"{fault_proxy.host}/{repo}:1", layers=layers, jobs=1)
    assert sorted(os.listdir(tmp_path)) == ["cache"]
    cache = tmp_path / "cache"
    assert not (cache / "blobs/sha256" / bad.digest.split(":")[1]).exists()
    assert not (cache / "blobs/sha256" / bad.diff_id.split(":")[1]).exists()
    assert os.listdir(cache / "tmp") == [] and os.listdir(cache / "archives") == []
    assert os.listdir(cache / "held") == [] and list((cache / "extents").rglob("sha256/*")) == []
    # One layer at a time: those before the bad one were verified, and the cache keeps them.
    assert _layer_entries(cache, image) == [lay.digest for lay in image.layers[:3]]
    # the next pull, with the registry behaving, succeeds and fetches only what is missing
    fault_proxy.clear()
    _, out = pull_into(tmp_path, f"{fault_proxy.host}/{repo}:1", layers=layers)
    check_docker_archive(out, image, [f"{fault_proxy.host}/{repo}:1"], compressed=layers == "compressed")
    assert [fault_proxy.blob_gets(lay.digest) for lay in image.layers] == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("delta", [-1, -200, 1], ids=["one-byte-larger", "much-larger", "smaller"])
def test_a_manifest_of_another_size_than_its_index_says_fails_the_pull_and_stores_nothing(
        delta: int, registry: Registry, repo: str, tmp_path: Path, image_factory: ImageFactory) -> None:
    index = image_factory.index()
    amd64 = index.image_for("linux/amd64")
    body = json.loads(index.data)
    for descriptor in body["manifests"]:
        if descriptor["digest"] == amd64.digest:
            descriptor["size"] = len(amd64.manifest) + delta  # the digest is true, the size lies
    lying = json.dumps(body).encode()
    push(registry, repo, None, index)  # the manifests and blobs
    RegistryClient(registry.url).put_manifest(repo, "1", lying, index.media_type)
    with pytest.raises(DigestMismatch) as caught:
        pull_into(tmp_path, f"{registry.host}/{repo}:1")
    message = str(caught.value)
    assert amd64.digest in message and f"({len(amd64.manifest) + delta} bytes)" in message
    assert ("larger than its descriptor says" in message) == (delta < 0)
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # no output, no temporary file beside it
    entries = [p.name for p in (tmp_path / "cache").rglob("sha256/*")]
    assert entries == []  # neither the index, nor the manifest, nor a blob


# ---- decompression ----------------------------------------------------------------------------


def _pieces(data: bytes, size: int) -> List[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("compression", ["gzip", "gzip-members", "zstd", "zstd-frames", "none"])
def test_layers_decompress_in_bounded_pieces(compression: str) -> None:
    import gzip

    import zstandard

    from wes_arvados.images.compression import OUT_CHUNK, decompress

    plain = bytes(5 * OUT_CHUNK) + os.urandom(100_000) + b"end"
    half = len(plain) // 2
    blob = {"gzip": lambda: gzip.compress(plain),
            "gzip-members": lambda: gzip.compress(plain[:half]) + gzip.compress(plain[half:]),
            "zstd": lambda: zstandard.ZstdCompressor().compress(plain),
            "zstd-frames": lambda: (zstandard.ZstdCompressor().compress(plain[:half])
                                    + zstandard.ZstdCompressor().compress(plain[half:])),
            "none": lambda: plain}[compression]()
    out = list(decompress(_pieces(blob, 3)[:2] + _pieces(blob[6:], 65536)))  # the magic number split up
    assert b"".join(out) == plain
    assert max(len(piece) for piece in out) <= OUT_CHUNK


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_layer_is_a_corrupt_layer_error(damage: str) -> None:
    import gzip

    from wes_arvados.images.compression import CorruptLayer, decompress

    blob = gzip.compress(os.urandom(300_000))
    blob = blob[:-1000] if damage == "truncated" else blob[:100] + bytes(1000) + blob[1100:]
    with pytest.raises(CorruptLayer, match="not valid gzip"):
        for _ in decompress(_pieces(blob, 65536), "layer x"):
            pass


def test_a_thread_ahead_hands_on_items_errors_and_stops_with_its_consumer() -> None:
    from wes_arvados.images import fetcher as fetcher_module

    assert list(fetcher_module._in_thread(iter([b"a", b"b"]), 1)) == [b"a", b"b"]

    def failing():  # type: ignore[no-untyped-def]
        yield b"a"
        raise ValueError("broken layer")
    with pytest.raises(ValueError, match="broken layer"):
        list(fetcher_module._in_thread(failing(), 1))
    produced: List[int] = []

    def endless():  # type: ignore[no-untyped-def]
        while True:
            produced.append(1)
            yield b"x"
    stream = fetcher_module._in_thread(endless(), 2)
    next(stream)
    stream.close()  # returns: the producer noticed and stopped
    assert len(produced) <= 5


def test_a_cached_archive_is_copied_where_it_cannot_be_linked(registry: Registry, repo: str, tmp_path: Path,
                                                              image_factory: ImageFactory,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    push(registry, repo, "1", image_factory.oci())
    ref = f"{registry.host}/{repo}:1"
    _, first = pull_into(tmp_path, ref)

    def cross_device(*args: object) -> None:
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(os, "link", cross_device)
    again, copied = pull_into(tmp_path, ref, name="elsewhere.tar")
    assert copied.read_bytes() == first.read_bytes() and not os.path.samefile(copied, first)
    assert again.downloaded == 0
