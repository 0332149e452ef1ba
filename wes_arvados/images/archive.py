"""The layout of an image as a ``docker save`` archive or as an OCI image layout.

An archive is produced as a sequence of parts (`iter_archive`, `iter_oci_archive`):
`Metadata` parts are small bytes (tar headers, padding, JSON documents); a
`LayerPart` is a blob of known size in a local file (a layer as the registry
serves it); a `StreamPart` is a member whose size is learnt by reading it to the
end (a layer being decompressed); a `DeliveredPart` is a blob of known size that
its fetcher writes into the file itself, at the place the writer hands it; a
`RefPart` is a layer the destination holds already. How a pull gives its layers
is its `strategy`'s choice. The `writer` module puts parts into a file. A Keep store
consumes the same parts: it starts each layer on a block boundary and, since a
collection's file segments may come from blocks in any order, stores a stream's
data blocks first and its header block after. Layers are asked for lazily and in
order, so a writer starts while later layers are still being fetched.

The ``docker save`` layout is the one containers/image (skopeo, podman) writes and
docker, arv-keepdocker and Singularity read: ``<config hex>.json``, one file per
layer, legacy ``<id>/{VERSION,json,layer.tar}`` entries, ``manifest.json`` with one
entry and ``repositories``. Members come in a fixed order with mtime 0, owner 0:0
and no user or group names, so the same image always gives the same bytes; tar
headers are PAX where a plain header cannot hold a value (members over 8 GiB).
"""

from __future__ import annotations

import errno
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Union,
)

from .manifest import OCI_INDEX, digest_of
from .output import COPY_CHUNK

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .output import Output

BLOCK = tarfile.BLOCKSIZE
_MODES = {tarfile.DIRTYPE: 0o755, tarfile.SYMTYPE: 0o777}


def tar_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    """A deterministic tar header (pax over ustar, as docker save writes): mtime 0, owner 0:0."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, linkname
    info.mode = _MODES.get(kind, 0o644)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    """Zero bytes that fill a member of `size` bytes up to a whole tar block."""
    return bytes(-size % BLOCK)


# Go's archive/tar ends an archive with two zero blocks (Python pads to 10 KiB; we do as Go).
END_OF_ARCHIVE = bytes(2 * BLOCK)
# Config attributes that the legacy top layer's json repeats, as docker save does.
LEGACY_CONFIG_KEYS = ("architecture", "config", "container", "container_config", "created", "docker_version", "os")
OCI_REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"


# ---- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    """Small bytes of an archive: a tar header, padding or a JSON document."""

    data: bytes


@dataclass(frozen=True)
class LayerPart:
    """`size` bytes of a layer (or other large blob), to be read from the local file `path`."""

    name: str
    digest: str
    size: int
    path: Path

    def chunks(self, chunk_size: int = COPY_CHUNK) -> Iterator[bytes]:
        """The bytes, in pieces of at most `chunk_size` (for writers that cannot copy files)."""
        with open(self.path, "rb", buffering=0) as src:
            left = self.size
            while left:
                data = src.read(min(chunk_size, left))
                if not data:
                    raise OSError(errno.EIO, f"{self.path} is shorter than {self.size} bytes")
                left -= len(data)
                yield data


@dataclass(frozen=True)
class StreamPart:
    """A tar member whose size is known only once `chunks` is exhausted; the writer writes its header.

    `size_hint` is what the size will probably be (a gzip trailer's ISIZE) and
    `reopen` gives the bytes again from the start: with both, a writer may lay
    out later parts at once and fill this member in parallel, then check the hint.
    """

    name: str
    digest: str
    chunks: Iterable[bytes]
    size_hint: Optional[int] = None
    reopen: Optional[Callable[[], Iterable[bytes]]] = None


@dataclass(frozen=True)
class DeliveredPart:
    """`size` bytes of a layer that its fetcher writes into the destination itself, as they arrive.

    `deliver(out, offset)` starts that and returns a `Future` done once every
    byte is written at `offset` of `out` and verified (its exception is the
    fetch's failure); once `out.stop` is set, it writes no more and ends soon.
    """

    name: str
    digest: str
    size: int
    deliver: Callable[["Output", int], "Future[Any]"]


@dataclass(frozen=True)
class RefPart:
    """`size` bytes of a layer the destination already holds; `ref` is the destination's own handle on them."""

    name: str
    digest: str
    size: int
    ref: Any


Part = Union[Metadata, LayerPart, StreamPart, RefPart, DeliveredPart]


# ---- what to write ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFile:
    """A layer's bytes in a local file, with their digest and size."""

    path: Path
    size: int
    digest: str


@dataclass(frozen=True)
class LayerStream:
    """A layer's bytes as they are produced, of a size known at their end.

    `chunks` raises at its end if the bytes did not match `digest`; `size_hint`
    and `reopen` are as for `StreamPart`.
    """

    digest: str
    chunks: Iterable[bytes]
    size_hint: Optional[int] = None
    reopen: Optional[Callable[[], Iterable[bytes]]] = None


@dataclass(frozen=True)
class LayerRef:
    """A layer the destination already holds (e.g. Keep blocks of an earlier image): nothing to fetch."""

    digest: str
    size: int
    ref: Any


@dataclass(frozen=True)
class ArchiveLayer:
    """A layer as stored in an archive: its digest there, media type, and how to get its bytes.

    `data` may block until the layer is fetched; it is called once, when the
    writer reaches the layer.
    """

    digest: str
    media_type: str
    data: Callable[[], Union[LayerFile, LayerStream, LayerRef]]
    # A layer of known `size` that can be written straight into a file (see `DeliveredPart`);
    # `tar_parts(deliverable=True)` uses it instead of `data`.
    deliver: Optional[Callable[["Output", int], "Future[Any]"]] = None
    size: Optional[int] = None


@dataclass
class ArchiveImage:
    """One image to write: config bytes, layers base first, and the names to tag it with."""

    config: bytes
    layers: Sequence[ArchiveLayer]
    diff_ids: Sequence[str]
    repo_tags: Sequence[str] = ()
    # For the OCI layout: the manifest bytes and their media type.
    manifest: bytes = b""
    manifest_media_type: str = ""
    annotations: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileEntry:
    """A member holding small bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class LinkEntry:
    """A symbolic link member."""

    name: str
    target: str


@dataclass(frozen=True)
class DirEntry:
    """A directory member."""

    name: str


@dataclass(frozen=True)
class LayerEntry:
    """A member holding a layer's bytes."""

    name: str
    layer: ArchiveLayer


# A member of an archive, or a file of an OCI layout directory.
Entry = Union[FileEntry, LinkEntry, DirEntry, LayerEntry]


def _json(obj: object) -> bytes:
    # Go's encoding/json: compact, map keys sorted.
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def layer_extension(media_type: str) -> str:
    """The file extension of a layer blob: ``.tar``, ``.tar.gz`` or ``.tar.zst``."""
    if media_type.endswith(("+zstd", ".zstd")):
        return ".tar.zst"
    if media_type.endswith(("+gzip", ".gzip")):
        return ".tar.gz"
    return ".tar"


def legacy_ids(diff_ids: Sequence[str]) -> List[str]:
    """Legacy layer IDs, as containers/image computes them: the hex of each layer's ChainID."""
    ids, chain = [], ""
    for diff_id in diff_ids:
        chain = diff_id if not chain else digest_of(f"{chain} {diff_id}".encode())
        ids.append(_hex(chain))
    return ids


def docker_entries(image: ArchiveImage) -> Iterator[Entry]:
    """The members of a ``docker save`` archive, in their fixed order."""
    config_name = _hex(digest_of(image.config)) + ".json"
    names = [_hex(layer.digest) + layer_extension(layer.media_type) for layer in image.layers]
    yield FileEntry(config_name, image.config)
    written = set()
    for name, layer in zip(names, image.layers):
        if name not in written:  # an image may repeat a layer; the file is stored once
            written.add(name)
            yield LayerEntry(name, layer)
    config = json.loads(image.config)
    ids = legacy_ids(image.diff_ids)
    for i, (layer_id, name) in enumerate(zip(ids, names)):
        doc: Dict[str, object] = {"id": layer_id}
        if i:
            doc["parent"] = ids[i - 1]
        if i == len(ids) - 1:
            doc.update({key: config[key] for key in LEGACY_CONFIG_KEYS if key in config})
        yield DirEntry(layer_id)
        yield FileEntry(f"{layer_id}/VERSION", b"1.0")
        yield FileEntry(f"{layer_id}/json", _json(doc))
        yield LinkEntry(f"{layer_id}/layer.tar", f"../{name}")
    manifest = [{"Config": config_name, "RepoTags": list(image.repo_tags), "Layers": names}]
    yield FileEntry("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    repositories: Dict[str, Dict[str, str]] = {}
    for repo_tag in image.repo_tags if ids else ():
        repo, _, tag = repo_tag.rpartition(":")
        repositories.setdefault(repo, {})[tag] = ids[-1]
    yield FileEntry("repositories", _json(repositories))


def oci_entries(image: ArchiveImage, directories: bool = True) -> Iterator[Entry]:
    """The files of an OCI image layout holding the image's manifest, config and layers as stored."""
    manifest_digest = digest_of(image.manifest)
    descriptor: Dict[str, object] = {"mediaType": image.manifest_media_type, "digest": manifest_digest,
                                     "size": len(image.manifest)}
    if image.annotations:
        descriptor["annotations"] = dict(image.annotations)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    yield FileEntry("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    yield FileEntry("index.json", _json(index))
    if directories:
        yield DirEntry("blobs")
        yield DirEntry("blobs/sha256")
    blobs: Dict[str, Union[bytes, ArchiveLayer]] = {
        manifest_digest: image.manifest, digest_of(image.config): image.config}
    for layer in image.layers:
        blobs.setdefault(layer.digest, layer)
    for digest in sorted(blobs):
        name = "blobs/" + digest.replace(":", "/", 1)
        blob = blobs[digest]
        yield FileEntry(name, blob) if isinstance(blob, bytes) else LayerEntry(name, blob)


# ---- tar --------------------------------------------------------------------------------------


def tar_parts(entries: Iterable[Entry], deliverable: bool = False) -> Iterator[Part]:
    """The parts of a tar archive of `entries`; with `deliverable`, layers that can are `DeliveredPart`s."""
    for entry in entries:
        if isinstance(entry, FileEntry):
            yield Metadata(tar_header(entry.name, len(entry.data)) + entry.data + padding(len(entry.data)))
        elif isinstance(entry, LinkEntry):
            yield Metadata(tar_header(entry.name, kind=tarfile.SYMTYPE, linkname=entry.target))
        elif isinstance(entry, DirEntry):
            yield Metadata(tar_header(entry.name.rstrip("/") + "/", kind=tarfile.DIRTYPE))
        elif deliverable and entry.layer.deliver is not None and entry.layer.size is not None:
            size = entry.layer.size
            yield Metadata(tar_header(entry.name, size))
            yield DeliveredPart(entry.name, entry.layer.digest, size, entry.layer.deliver)
            if size % BLOCK:
                yield Metadata(padding(size))
        else:
            file = entry.layer.data()
            if isinstance(file, LayerStream):
                yield StreamPart(entry.name, file.digest, file.chunks, file.size_hint, file.reopen)
                continue
            yield Metadata(tar_header(entry.name, file.size))
            if isinstance(file, LayerRef):
                yield RefPart(entry.name, file.digest, file.size, file.ref)
            else:
                yield LayerPart(entry.name, file.digest, file.size, file.path)
            if file.size % BLOCK:
                yield Metadata(padding(file.size))
    yield Metadata(END_OF_ARCHIVE)


def iter_archive(image: ArchiveImage, deliverable: bool = False) -> Iterator[Part]:
    """The parts of `image` as a ``docker save`` archive (`deliverable`: see `tar_parts`)."""
    return tar_parts(docker_entries(image), deliverable)


def iter_oci_archive(image: ArchiveImage, deliverable: bool = False) -> Iterator[Part]:
    """The parts of `image` as a tar of an OCI image layout (`deliverable`: see `tar_parts`)."""
    return tar_parts(oci_entries(image), deliverable)
