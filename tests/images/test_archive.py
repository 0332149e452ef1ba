"""The docker-save and OCI layout writers, on images built in memory (no registry)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import pytest

from wes_arvados.images import writer
from wes_arvados.images.archive import (
    ArchiveImage,
    ArchiveLayer,
    DeliveredPart,
    LayerFile,
    LayerPart,
    LayerStream,
    Metadata,
    StreamPart,
    iter_archive,
    iter_oci_archive,
    legacy_ids,
    tar_header,
)
from wes_arvados.images.output import Output, Stopped, write_at
from wes_arvados.images.writer import write_archive, write_oci_directory, write_parts

from .builder import Image, ImageFactory, digest_of, layer


def _archive_image(image: Image, tmp_path: Path, repo_tags: Sequence[str] = ("example.org/x/img:1",),
                   compressed: bool = False) -> ArchiveImage:
    """An ArchiveImage whose layer files are written under tmp_path on demand."""
    layers: List[ArchiveLayer] = []
    for lay in image.layers:
        data = lay.blob if compressed else lay.tar
        digest = lay.digest if compressed else lay.diff_id

        def file(data: bytes = data, digest: str = digest) -> LayerFile:
            path = tmp_path / digest.split(":")[1]
            path.write_bytes(data)
            return LayerFile(path, len(data), digest)

        media_type = lay.media_type(image.oci) if compressed else "application/vnd.oci.image.layer.v1.tar"
        layers.append(ArchiveLayer(digest, media_type, file))
    diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]
    return ArchiveImage(image.config, layers, diff_ids, list(repo_tags), image.manifest, image.media_type,
                        {"org.opencontainers.image.ref.name": "1"})


def _members(path: Path) -> Dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else m.linkname.encode())  # type: ignore[union-attr]
                for m in tar.getmembers() if not m.isdir()}


def test_docker_archive_has_config_layers_legacy_entries_manifest_and_repositories(
        tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    out = tmp_path / "out.tar"
    size = write_archive(out, iter_archive(_archive_image(image, tmp_path)))
    assert size == out.stat().st_size and size % 512 == 0
    members = _members(out)
    config_name = image.config_digest.split(":")[1] + ".json"
    assert members[config_name] == image.config
    layer_names = [lay.diff_id.split(":")[1] + ".tar" for lay in image.layers]
    for name, lay in zip(layer_names, image.layers):
        assert members[name] == lay.tar
    manifest = json.loads(members["manifest.json"])
    assert manifest == [{"Config": config_name, "RepoTags": ["example.org/x/img:1"], "Layers": layer_names}]
    ids = legacy_ids([lay.diff_id for lay in image.layers])
    assert json.loads(members["repositories"]) == {"example.org/x/img": {"1": ids[-1]}}
    assert members[f"{ids[0]}/layer.tar"] == f"../{layer_names[0]}".encode()
    assert json.loads(members[f"{ids[1]}/json"])["parent"] == ids[0]
    assert json.loads(members[f"{ids[1]}/json"])["os"] == "linux"
    assert members[f"{ids[0]}/VERSION"] == b"1.0"


def test_members_are_owned_by_root_with_fixed_times_in_a_fixed_order(tmp_path: Path,
                                                                     image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    write_archive(first, iter_archive(_archive_image(image, tmp_path)))
    write_archive(second, iter_archive(_archive_image(image, tmp_path)))
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    names = [m.name for m in members]
    assert names[0] == image.config_digest.split(":")[1] + ".json"
    assert names[-2:] == ["manifest.json", "repositories"]
    assert first.read_bytes().endswith(bytes(1024))


def test_legacy_ids_are_containers_image_chain_ids() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    chain = hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert legacy_ids([a, b]) == ["a" * 64, chain]


def test_a_repeated_layer_is_stored_once_and_listed_twice(tmp_path: Path) -> None:
    from .builder import build_image

    marker = layer({"etc/x": b"x\n"})
    image = build_image([marker, layer({"etc/y": b"y\n"}), marker])
    out = tmp_path / "out.tar"
    write_archive(out, iter_archive(_archive_image(image, tmp_path)))
    with tarfile.open(out) as tar:
        names = [m.name for m in tar.getmembers()]
    name = marker.diff_id.split(":")[1] + ".tar"
    assert names.count(name) == 1
    manifest = json.loads(_members(out)["manifest.json"])
    assert manifest[0]["Layers"].count(name) == 2


def test_a_digest_only_image_has_no_repo_tags(tmp_path: Path, image_factory: ImageFactory) -> None:
    out = tmp_path / "out.tar"
    write_archive(out, iter_archive(_archive_image(image_factory.oci(), tmp_path, repo_tags=())))
    members = _members(out)
    assert json.loads(members["manifest.json"])[0]["RepoTags"] == []
    assert json.loads(members["repositories"]) == {}


def test_compressed_layers_keep_the_registry_bytes_and_extension(tmp_path: Path,
                                                                 image_factory: ImageFactory) -> None:
    image = image_factory.zstd()
    out = tmp_path / "out.tar"
    write_archive(out, iter_archive(_archive_image(image, tmp_path, compressed=True)))
    members = _members(out)
    for lay in image.layers:
        assert members[lay.digest.split(":")[1] + ".tar.zst"] == lay.blob


class _SparseFile(io.RawIOBase):
    """A read-only file of `size` bytes that are all zero except `head` at the start."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size, self.pos = head, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = max(0, min(len(buffer), self.size - self.pos))
        data = self.head[self.pos:self.pos + n] if self.pos < len(self.head) else b""
        buffer[:n] = data + bytes(n - len(data))
        self.pos += n
        return n


def test_members_over_8_gib_get_a_pax_size_record() -> None:
    size = 9 << 30
    header = tar_header("big.tar", size)
    assert len(header) > 512 and b"size=%d" % size in header  # a PAX extended header first
    # the whole archive, with the 9 GiB member's data read as zeros without storing them
    trailer = tar_header("after", 3) + b"abc" + bytes(509) + bytes(1024)
    total = len(header) + size + len(trailer)

    class Archive(_SparseFile):
        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            n = super().readinto(buffer)
            tail_start = total - len(trailer)
            start = self.pos - n
            for i in range(max(start, tail_start), self.pos):
                buffer[i - start] = trailer[i - tail_start]
            return n

    with tarfile.open(fileobj=io.BufferedReader(Archive(header, total)), mode="r:") as tar:
        members = tar.getmembers()
    assert [(m.name, m.size) for m in members] == [("big.tar", size), ("after", 3)]
    assert tar_header("small", 1 << 20)[:512] == tar_header("small", 1 << 20)  # plain ustar below 8 GiB


@pytest.mark.parametrize("name, size, kind, linkname", [
    ("manifest.json", 1234, tarfile.REGTYPE, ""),
    ("a" * 64 + "/layer.tar", 54 << 20, tarfile.REGTYPE, ""),
    ("n" * 100, 0, tarfile.REGTYPE, ""),  # the longest ustar name
    ("n" * 101, 1, tarfile.REGTYPE, ""),  # one more: a pax path
    ("d" * 300 + "/" + "e" * 300, 7, tarfile.REGTYPE, ""),  # records over 99 and 999 bytes
    ("blobs/sha256", 0, tarfile.DIRTYPE, ""),  # a directory gets its slash
    ("blobs/", 0, tarfile.DIRTYPE, ""),
    ("b" * 64 + "/layer.tar", 0, tarfile.SYMTYPE, "../" + "c" * 64 + "/layer.tar"),
    ("link", 0, tarfile.SYMTYPE, "t" * 150),  # a pax linkpath
    ("été/naïve.json", 3, tarfile.REGTYPE, ""),  # not ASCII: a pax path, "?" in ustar
    ("undecodable-\udcff", 3, tarfile.REGTYPE, ""),  # surrogate-escaped bytes: hdrcharset=BINARY
])
def test_headers_read_back_as_the_member_they_describe(name: str, size: int, kind: bytes, linkname: str) -> None:
    data = bytes(size) if kind == tarfile.REGTYPE else b""
    member_bytes = tar_header(name, size, kind, linkname) + data + bytes(-size % 512) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(member_bytes), encoding="utf-8", errors="surrogateescape") as tar:
        [member] = tar.getmembers()
    assert member.name == name.rstrip("/")
    assert (member.size, member.type, member.linkname) == (len(data), kind, linkname)
    assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
    assert member.mode == {tarfile.DIRTYPE: 0o755, tarfile.SYMTYPE: 0o777}.get(kind, 0o644)


def test_parts_name_every_layer_with_its_size_before_its_bytes(tmp_path: Path,
                                                                image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    parts = list(iter_archive(_archive_image(image, tmp_path)))
    layer_parts = [p for p in parts if isinstance(p, LayerPart)]
    assert [p.digest for p in layer_parts] == [lay.diff_id for lay in image.layers]
    assert [p.size for p in layer_parts] == [len(lay.tar) for lay in image.layers]
    assert all(isinstance(p, Metadata) for p in parts if not isinstance(p, LayerPart))
    # a consumer that reads layer chunks itself gets the same bytes as write_archive
    streamed = b"".join(p.data if isinstance(p, Metadata) else b"".join(p.chunks(4096)) for p in parts)
    out = tmp_path / "out.tar"
    write_archive(out, iter(parts))
    assert out.read_bytes() == streamed


def test_layers_are_asked_for_lazily_in_archive_order(tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(5)
    asked: List[str] = []
    built = _archive_image(image, tmp_path)
    built.layers = [ArchiveLayer(lay.digest, lay.media_type,
                                 lambda lay=lay: (asked.append(lay.digest), lay.data())[1]) for lay in built.layers]
    parts = iter_archive(built)
    next(parts)
    assert asked == []
    list(parts)
    assert asked == [lay.diff_id for lay in image.layers]


def test_copy_falls_back_to_read_and_write_across_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    expected = tmp_path / "expected.tar"
    write_archive(expected, iter_archive(_archive_image(image, tmp_path)))

    def exdev(*args: object, **kw: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")
    monkeypatch.setattr(os, "copy_file_range", exdev)
    fallback = tmp_path / "fallback.tar"
    write_archive(fallback, iter_archive(_archive_image(image, tmp_path)))
    assert fallback.read_bytes() == expected.read_bytes()


def test_a_layer_file_shorter_than_announced_is_an_error(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"x" * 100)
    with pytest.raises(OSError):
        fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
        try:
            write_parts(Output(fd), [LayerPart("l", digest_of(b""), 200, short)])
        finally:
            os.close(fd)


def test_oci_layout_directory_and_tar_hold_the_same_files(tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.oci()
    directory = tmp_path / "layout"
    write_oci_directory(directory, _archive_image(image, tmp_path, compressed=True))
    tarball = tmp_path / "layout.tar"
    write_archive(tarball, iter_oci_archive(_archive_image(image, tmp_path, compressed=True)))
    files = {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert _members(tarball) == files
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["manifests"][0]["digest"] == image.digest
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "1"}
    for digest, data in image.blobs() + [(image.digest, image.manifest)]:
        assert files["blobs/sha256/" + digest.split(":")[1]] == data


def _streamed(built: ArchiveImage) -> ArchiveImage:
    """The same image with every layer given as a stream of unknown size."""
    def stream(lay: ArchiveLayer) -> LayerStream:
        file = lay.data()
        assert isinstance(file, LayerFile)
        data = file.path.read_bytes()
        return LayerStream(file.digest, (data[i:i + 1000] for i in range(0, len(data), 1000)))
    built.layers = [ArchiveLayer(lay.digest, lay.media_type, lambda lay=lay: stream(lay)) for lay in built.layers]
    return built


def test_streamed_layers_give_the_same_bytes_as_sized_ones(tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.empty_layer()
    sized, streamed = tmp_path / "sized.tar", tmp_path / "streamed.tar"
    write_archive(sized, iter_archive(_archive_image(image, tmp_path)))
    parts = list(iter_archive(_streamed(_archive_image(image, tmp_path))))
    assert [p.name for p in parts if isinstance(p, StreamPart)] == [
        lay.diff_id.split(":")[1] + ".tar" for lay in image.layers]
    write_archive(streamed, iter(parts))
    assert streamed.read_bytes() == sized.read_bytes()


def test_a_streamed_member_whose_header_grows_has_its_data_moved_up(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # over one copy chunk, so the move goes chunk by chunk
    name = "n" * 150 + ".tar"  # longer than ustar's 100 bytes: the header gets PAX records, as 8 GiB would
    writer.COPY_CHUNK, saved = 4096, writer.COPY_CHUNK
    try:
        write_archive(tmp_path / "out.tar", [Metadata(tar_header("first", 1) + b"1" + bytes(511)),
                                             StreamPart(name, "", iter([data[:7], data[7:]])),
                                             Metadata(bytes(1024))])
    finally:
        writer.COPY_CHUNK = saved
    assert _members(tmp_path / "out.tar") == {"first": b"1", name: data}
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, content in (("first", b"1"), (name, data)):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime, info.uname, info.gname = len(content), 0o644, 0, "", ""
            tar.addfile(info, io.BytesIO(content))
    assert (tmp_path / "out.tar").read_bytes() == expected.getvalue()[:(tmp_path / "out.tar").stat().st_size]


def _hinted(built: ArchiveImage, hints: Dict[int, int], opened: List[int]) -> ArchiveImage:
    """The image with layer i given as a reopenable stream with size hint `hints[i]` (no hint if absent)."""
    def stream(i: int, lay: ArchiveLayer) -> LayerStream:
        file = lay.data()
        assert isinstance(file, LayerFile)
        data = file.path.read_bytes()

        def chunks() -> Iterator[bytes]:
            opened.append(i)
            return (data[j:j + 777] for j in range(0, len(data), 777))
        return LayerStream(file.digest, chunks(), hints.get(i), chunks if i in hints else None)
    built.layers = [ArchiveLayer(lay.digest, lay.media_type, lambda i=i, lay=lay: stream(i, lay))
                    for i, lay in enumerate(built.layers)]
    return built


@pytest.mark.parametrize("wrong", ["none", "short", "long", "barrier"])
def test_streams_written_in_parallel_at_their_hinted_places_give_the_serial_bytes(
        wrong: str, tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(6)
    serial = tmp_path / "serial.tar"
    write_archive(serial, iter_archive(_archive_image(image, tmp_path)))
    hints = {i: len(lay.tar) for i, lay in enumerate(image.layers)}
    if wrong == "short":
        hints[2] -= 1
    elif wrong == "long":
        hints[2] += 5000
    elif wrong == "barrier":
        del hints[3]  # a stream that can be read once: the ones before it are settled first
    opened: List[int] = []
    parallel = tmp_path / "parallel.tar"
    size = write_archive(parallel, iter_archive(_hinted(_archive_image(image, tmp_path), hints, opened)), jobs=3)
    assert parallel.read_bytes() == serial.read_bytes() and size == serial.stat().st_size
    again = sorted(i for i in set(opened) if opened.count(i) > 1)
    assert again == ([2, 3, 4, 5] if wrong in ("short", "long") else [])


def test_a_failing_stream_in_parallel_stops_the_others_and_raises_its_own_error(tmp_path: Path) -> None:
    started = threading.Event()

    def endless() -> Iterator[bytes]:
        started.set()
        while True:
            yield bytes(100)

    def failing() -> Iterator[bytes]:
        started.wait(10)
        yield b"x"
        raise ValueError("digest mismatch")
    parts = [StreamPart("a", "", endless(), 10 ** 9, endless), StreamPart("b", "", failing(), 1, failing)]
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(ValueError, match="digest mismatch"):
            write_parts(Output(fd), parts, jobs=2)
    finally:
        os.close(fd)


def _delivering(built: ArchiveImage, pool: ThreadPoolExecutor, calls: List[int]) -> ArchiveImage:
    """`built` with every layer also deliverable: written into the file by `pool`, as a fetcher does."""
    def deliver(file: LayerFile, out: Output, offset: int) -> Future:
        calls.append(offset)
        data = file.path.read_bytes()

        def write() -> LayerFile:
            for i in range(0, len(data), 1000):  # in pieces, as a download arrives
                write_at(out.fd, data[i:i + 1000], offset + i)
            return file
        return pool.submit(write)
    layers = []
    for lay in built.layers:
        file = lay.data()
        assert isinstance(file, LayerFile)
        layers.append(ArchiveLayer(lay.digest, lay.media_type, lambda file=file: file,
                                   lambda out, at, file=file: deliver(file, out, at), file.size))
    built.layers = layers
    return built


@pytest.mark.parametrize("jobs", [1, 2])
def test_delivered_layers_land_where_copied_ones_would(jobs: int, tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(5)
    copied = tmp_path / "copied.tar"
    write_archive(copied, iter_archive(_archive_image(image, tmp_path, compressed=True)))
    calls: List[int] = []
    delivered = tmp_path / "delivered.tar"
    with ThreadPoolExecutor(3) as pool:
        built = _delivering(_archive_image(image, tmp_path, compressed=True), pool, calls)
        size = write_archive(delivered, iter_archive(built, deliverable=True), jobs)
    assert delivered.read_bytes() == copied.read_bytes() and size == copied.stat().st_size
    assert len(calls) == len(image.layers) and calls == sorted(calls)
    # Without `deliverable` (a consumer that cannot take deliveries) the layers are read as files.
    calls.clear()
    again = tmp_path / "again.tar"
    write_archive(again, iter_archive(built))
    assert calls == [] and again.read_bytes() == copied.read_bytes()


def test_a_failing_delivery_stops_the_others_before_the_file_is_closed(tmp_path: Path) -> None:
    started, finished = threading.Event(), threading.Event()
    stops: List[threading.Event] = []

    def endless(out: Output, offset: int) -> None:
        stops.append(out.stop)
        started.set()
        try:
            while not out.stop.is_set():
                write_at(out.fd, bytes(100), offset)
            raise Stopped()
        finally:
            finished.set()

    def failing(out: Output, offset: int) -> None:
        started.wait(10)
        raise ValueError("digest mismatch")

    with ThreadPoolExecutor(2) as pool:
        parts = [DeliveredPart("a", "", 10 ** 9, lambda *args: pool.submit(endless, *args)),
                 DeliveredPart("b", "", 1, lambda *args: pool.submit(failing, *args))]
        with pytest.raises(ValueError, match="digest mismatch"):
            write_archive(tmp_path / "out", parts, jobs=2)
        # write_archive closed its file only after the endless delivery had stopped writing into it.
        assert finished.is_set() and stops[0].is_set()


def test_an_archive_goes_into_a_new_or_empty_file_never_over_another(tmp_path: Path) -> None:
    parts = [Metadata(tar_header("a", 1) + b"1" + bytes(511))]
    empty = tmp_path / "empty.tar"
    empty.touch()  # as `pull` makes it, to let the cache hold it before anything is written
    assert write_archive(empty, parts) == 1024 and _members(empty) == {"a": b"1"}
    with pytest.raises(FileExistsError, match="not empty"):
        write_archive(empty, parts)
    assert _members(empty) == {"a": b"1"}
