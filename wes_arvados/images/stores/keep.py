"""The Keep image store: images as ``arv-keepdocker`` stores them, streamed into Keep with layer-aligned blocks.

What Arvados expects (arvados-python-client / arvados-cwl-runner 3.2.1, and the API
server's rule for container images):

* a collection with exactly one file at its root, ``sha256:<image id hex>.tar``,
  the ``docker save`` archive; named ``Docker image <repo, "/" as " ">:<tag>
  sha256:<5 hex>``, with property ``docker-image-repo-tag``;
* links to it: ``docker_image_hash`` named ``sha256:<hex>`` and
  ``docker_image_repo+tag`` named ``<repo>:<tag>``, both with
  ``properties.image_timestamp`` = the config's ``created``, owned by the target
  project when there is one. ``keepdocker.list_images_in_arv`` and
  ``arvados_cwl.arvdocker`` find images by these links only.

How we write it (`KeepArchiveWriter`): the archive's parts (`archive.iter_archive`)
go into Keep blocks so that every layer starts on a block boundary; tar headers,
padding and JSON go into small blocks of their own between the layers. The one
file's segments span all the blocks in order, which the manifest format and the
Python and Go readers allow. Since Keep is content-addressed, the blocks of a
layer are the same whatever image holds it; each collection records, per layer,
where its blocks are (a property ``wes_arvados_layer_<diff_id hex>`` =
``first:count:size``), so a later image that shares the layer reuses those blocks
(signed for the caller, who must be able to read that collection) without
fetching, inflating or uploading the layer again. The layout is deterministic,
so the same image always gives the same portable data hash.

Layers are cut into blocks (and inflated) by one job per core, and blocks are
uploaded by a small pool while later ones are produced; at most `IN_FLIGHT`
blocks (of `KEEP_BLOCK`, 8 MiB) wait for Keep at once, whatever the image size.
The collection and the links are created only after every block is stored, so a
failed upload leaves nothing visible.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

from ... import metrics
from ...timestamps import utcnow
from ..archive import (
    LayerPart,
    LayerRef,
    Metadata,
    Part,
    RefPart,
    StreamPart,
    iter_archive,
    padding,
    tar_header,
)
from ..errors import ImageError
from ..manifest import config_platform, diff_ids
from ..strategy import IntoStore
from .base import ImageStore, StoredImage

if TYPE_CHECKING:
    from ..pull import OpenedImage

# Keep takes blocks of up to 64 MiB; an eighth of that keeps memory low: at most one block
# filling per layer job, and IN_FLIGHT joined and waiting for Keep (a block is joined only
# once there is room for it). 16 MiB blocks peaked at ~200 MB RSS, 8 MiB at ~120 MB
# (benchmarks/keep_benchmark.py).
KEEP_BLOCK = 8 << 20
IN_FLIGHT = 2
LAYER_PROPERTY = "wes_arvados_layer_"
MANIFEST_PROPERTY = "wes_arvados_manifest_digest"
REPO_TAG_PROPERTY = "docker-image-repo-tag"
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
HASH_LINK = "docker_image_hash"
REPO_TAG_LINK = "docker_image_repo+tag"


def split_repo_tag(name: str) -> Tuple[str, str]:
    """``repo`` and ``tag`` of an image name as written (``latest`` when it has none; a digest is dropped)."""
    name = name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def collection_name(repo: str, tag: str, image_id: str) -> str:
    """The collection name arv-keepdocker gives an image."""
    return f"Docker image {repo.replace('/', ' ')}:{tag} {image_id[:12]}"


@dataclass
class LayerBlocks:
    """Where one layer's bytes are in a collection's block list."""

    first: int
    count: int
    size: int

    def encode(self) -> str:
        """As a property value."""
        return f"{self.first}:{self.count}:{self.size}"

    @classmethod
    def decode(cls, value: str) -> "LayerBlocks":
        """Inverse of `encode`; `ValueError` if malformed."""
        first, count, size = (int(v) for v in value.split(":"))
        return cls(first, count, size)


@dataclass
class KeepArchive:
    """What `KeepArchiveWriter.write` made: the block locators in file order, the size, each layer's blocks."""

    locators: List[str]
    size: int
    layers: Dict[str, LayerBlocks] = field(default_factory=dict)

    def manifest_text(self, filename: str) -> str:
        """A one-stream manifest whose one file spans every block."""
        blocks = self.locators or ["d41d8cd98f00b204e9800998ecf8427e+0"]
        return f". {' '.join(blocks)} 0:{self.size}:{filename}\n"


class _Layer:
    """A layer's place in the archive: its blocks (filled by a job, or held already) and its size."""

    def __init__(self, digest: str, name: str = "", locators: Optional[List[str]] = None, size: int = 0) -> None:
        self.digest, self.name = digest, name
        self.locators: List[Any] = list(locators or [])  # locators, or Futures of them
        self.size = size
        self.job: Optional[Future] = None


@dataclass
class _Header:
    """The tar header of a streamed layer, known once the layer is done."""

    layer: _Layer


@dataclass
class _Padding:
    """The padding after a streamed layer, known once the layer is done."""

    layer: _Layer


def return_big_blocks_to_the_system() -> None:
    """Have glibc map every block of 4 MiB or more on its own, so freed Keep blocks leave the process.

    Without it glibc raises its mmap threshold after the first frees and keeps
    the freed Keep blocks in the heap, which then looks like a leak.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass


class KeepArchiveWriter:
    """Puts archive parts into Keep blocks, each layer starting on a block boundary.

    Layers are cut into blocks by `jobs` threads at once (inflating them, when
    they are streamed, is the costly part); the small bytes between layers wait
    in memory until every layer's size is known, then become blocks of their
    own. `put` stores one block and returns its (signed) locator; at most
    `IN_FLIGHT` blocks wait for it at once.
    """

    def __init__(self, put: Callable[[bytes], str], jobs: int = 2, block_size: int = KEEP_BLOCK) -> None:
        return_big_blocks_to_the_system()  # whichever process writes (the CLI, a run's preparation)
        self.put = put
        self.block_size = block_size
        self.jobs = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="keep-layer")
        self.puts = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="keep-put")
        self.room = threading.BoundedSemaphore(IN_FLIGHT)
        self.stop = threading.Event()
        # The archive in order: small bytes, header and padding of streamed layers, and layers.
        self.segments: List[Any] = []

    def _store(self, data: Callable[[], bytes]) -> Future:
        """Store the block `data()` makes, once there is room: a block waiting for room is not made yet."""
        self.room.acquire()
        try:
            future: Future = self.puts.submit(self.put, data())
        except BaseException:
            self.room.release()
            raise
        future.add_done_callback(lambda _: self.room.release())
        return future

    def _cut(self, layer: _Layer, chunks: Iterable[bytes]) -> None:
        """Store a layer's bytes in blocks of their own (a job)."""
        block: List[bytes] = []
        filled = 0
        for chunk in chunks:
            if self.stop.is_set():
                raise ImageError("the upload was stopped")
            layer.size += len(chunk)
            while chunk:
                take = chunk[:self.block_size - filled]
                chunk = chunk[len(take):]
                block.append(take)
                filled += len(take)
                if filled == self.block_size:
                    layer.locators.append(self._store(lambda: _joined(block)))
                    filled = 0
        if block:
            layer.locators.append(self._store(lambda: _joined(block)))

    def _add_layer(self, layer: _Layer, chunks: Optional[Iterable[bytes]]) -> None:
        if chunks is not None:
            layer.job = self.jobs.submit(self._cut, layer, chunks)
        self.segments.append(layer)

    def write(self, parts: Iterable[Part]) -> KeepArchive:
        """Store every part; wait for every block; return the archive's description."""
        try:
            for part in parts:
                if isinstance(part, Metadata):
                    self.segments.append(part.data)
                elif isinstance(part, RefPart):
                    self._add_layer(_Layer(part.digest, part.name, list(part.ref), part.size), None)
                elif isinstance(part, LayerPart):
                    self._add_layer(_Layer(part.digest, part.name), part.chunks(self.block_size))
                else:
                    assert isinstance(part, StreamPart), part  # a Keep upload is never delivered into a file
                    layer = _Layer(part.digest, part.name)
                    self.segments.append(_Header(layer))
                    self._add_layer(layer, part.chunks)
                    self.segments.append(_Padding(layer))
            return self._finish()
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.jobs.shutdown(wait=True, cancel_futures=True)
            self.puts.shutdown(wait=True, cancel_futures=True)

    def _finish(self) -> KeepArchive:
        for segment in self.segments:
            if isinstance(segment, _Layer) and segment.job is not None:
                segment.job.result()
        slots: List[Any] = []
        layers: Dict[str, LayerBlocks] = {}
        pending = bytearray()
        size = 0

        def piece(start: int) -> Callable[[], bytes]:
            return lambda: bytes(pending[start:start + self.block_size])

        def flush() -> None:
            for start in range(0, len(pending), self.block_size):
                slots.append(self._store(piece(start)))
            pending.clear()

        for segment in self.segments:
            if isinstance(segment, _Layer):
                flush()
                layers[segment.digest] = LayerBlocks(len(slots), len(segment.locators), segment.size)
                slots.extend(segment.locators)
                size += segment.size
                continue
            if isinstance(segment, _Header):
                data = tar_header(segment.layer.name, segment.layer.size)
            elif isinstance(segment, _Padding):
                data = padding(segment.layer.size)
            else:
                data = segment
            pending += data
            size += len(data)
        flush()
        locators = [slot.result() if isinstance(slot, Future) else slot for slot in slots]
        return KeepArchive(locators, size, layers)



def _joined(pieces: List[bytes]) -> bytes:
    """The pieces as one block; the list is emptied, so the pieces go as soon as the block is made."""
    block = b"".join(pieces)
    pieces.clear()
    return block


class KeepImageStore(ImageStore):
    """Images in Keep with arv-keepdocker's collections and links, for an Arvados API client."""

    kind = "keep"

    def __init__(self, api: Any, keep: Any = None, project_uuid: Optional[str] = None, jobs: int = 0,
                 num_retries: int = 3, claim: bool = False) -> None:
        """`claim`: an image found only outside `project_uuid` gets a collection there (see `lookup`)."""
        self.api = api
        self.claim = claim
        if keep is None:
            import arvados  # here: only the Keep store needs the SDK's Keep client

            keep = arvados.KeepClient(api_client=api, num_retries=num_retries)
        self.keep = keep
        self.project_uuid = project_uuid
        self.jobs = jobs or os.cpu_count() or 1  # layers cut (and inflated) at once
        self.num_retries = num_retries

    # ---- the API ----------------------------------------------------------------------------

    def _list(self, resource: str, filters: List[list], **kw: Any) -> List[dict]:
        items: List[dict] = []
        while True:
            page = getattr(self.api, resource)().list(filters=filters, offset=len(items), limit=1000, **kw) \
                .execute(num_retries=self.num_retries)
            items += page["items"]
            if not page["items"] or len(items) >= page.get("items_available", len(items)):
                return items

    def _link(self, link_class: str, name: str, head_uuid: str, timestamp: Optional[str]) -> None:
        body: Dict[str, Any] = {"link_class": link_class, "name": name, "head_uuid": head_uuid,
                                "properties": {"image_timestamp": timestamp} if timestamp else {}}
        if self.project_uuid:
            body["owner_uuid"] = self.project_uuid
        self.api.links().create(body=body).execute(num_retries=self.num_retries)

    def _record(self, name: str, collection: dict, image_id: str) -> StoredImage:
        size = int(collection["manifest_text"].split()[-1].split(":")[1])  # our one file: "0:SIZE:name"
        properties = collection.get("properties") or {}
        return StoredImage(name=name, image_id=image_id, manifest_digest=properties.get(MANIFEST_PROPERTY, ""),
                           size=size, platform=None, stored_at=collection.get("created_at") or utcnow(),
                           location=collection["uuid"],
                           portable_data_hash=collection["portable_data_hash"])

    # ---- the store --------------------------------------------------------------------------

    def lookup(self, name: str, image_id: str) -> Optional[StoredImage]:
        """The image's collection if one readable holds it; its repo+tag link is added when missing.

        One in the project is preferred. With `claim`, an image found only elsewhere
        gets a collection of its own in the project (the same manifest: no bytes
        move) with its links, as ``arv-keepdocker --project-uuid`` does.
        """
        links = self._list("links", [["link_class", "=", HASH_LINK], ["name", "=", image_id]])
        if not links:
            return None
        collections = self._list("collections", [["uuid", "in", [link["head_uuid"] for link in links]]],
                                 select=["uuid", "portable_data_hash", "manifest_text", "properties", "created_at",
                                         "owner_uuid"])
        if not collections:
            return None
        collections = [c for c in collections if _is_image_collection(c["manifest_text"])]
        if not collections:
            return None
        owned = [c for c in collections if not self.project_uuid or c["owner_uuid"] == self.project_uuid]
        if not owned and self.claim:
            return self._copy_into_project(name, collections[0], image_id, links)
        collection = (owned or collections)[0]
        repo_tag = "{}:{}".format(*split_repo_tag(name))
        tagged = self._list("links", [["link_class", "=", REPO_TAG_LINK], ["name", "=", repo_tag],
                                      ["head_uuid", "=", collection["uuid"]]])
        if not tagged:
            timestamp = next((link["properties"].get("image_timestamp") for link in links
                              if link["head_uuid"] == collection["uuid"]), None)
            self._link(REPO_TAG_LINK, repo_tag, collection["uuid"], timestamp)
        return self._record(name, collection, image_id)

    def _copy_into_project(self, name: str, found: dict, image_id: str, links: List[dict]) -> StoredImage:
        repo, tag = split_repo_tag(name)
        body = {"manifest_text": found["manifest_text"], "name": collection_name(repo, tag, image_id),
                "owner_uuid": self.project_uuid,
                "properties": dict(found.get("properties") or {}, **{REPO_TAG_PROPERTY: f"{repo}:{tag}"})}
        collection = self.api.collections().create(body=body, ensure_unique_name=True) \
            .execute(num_retries=self.num_retries)
        timestamp = next((link["properties"].get("image_timestamp") for link in links
                          if link["head_uuid"] == found["uuid"]), None)
        self._link(HASH_LINK, image_id, collection["uuid"], timestamp)
        self._link(REPO_TAG_LINK, f"{repo}:{tag}", collection["uuid"], timestamp)
        return self._record(name, collection, image_id)

    def held_layers(self, layer_ids: Iterable[str]) -> Dict[str, LayerRef]:
        """Layers (by diff_id) that a collection the caller can read already holds, with its signed blocks."""
        held: Dict[str, LayerRef] = {}
        for diff_id in dict.fromkeys(layer_ids):
            key = LAYER_PROPERTY + diff_id.split(":", 1)[1]
            found = self.api.collections().list(filters=[[f"properties.{key}", "exists", True]],
                                                select=["manifest_text", "properties"], limit=1,
                                                order=["created_at desc"]).execute(num_retries=self.num_retries)
            for collection in found["items"]:
                try:
                    blocks = LayerBlocks.decode(collection["properties"][key])
                except (KeyError, ValueError):
                    continue
                locators = [t for t in collection["manifest_text"].split("\n", 1)[0].split()[1:] if ":" not in t]
                if blocks.first + blocks.count <= len(locators):
                    held[diff_id] = LayerRef(diff_id, blocks.size,
                                             locators[blocks.first:blocks.first + blocks.count])
                    break
        return held

    def put(self, name: str, image: "OpenedImage") -> StoredImage:
        """Stream the image into Keep (layers already held are reused), then create its collection and links."""
        config = image.resolved.config
        image_id = image.resolved.manifest.config.digest
        held = self.held_layers(diff_ids(config))
        writer = KeepArchiveWriter(self._put, self.jobs)
        written = writer.write(iter_archive(image.archive(IntoStore(held=held))))
        metrics.KEEP_BYTES_DEDUPLICATED.inc(sum(layer.size for layer in held.values()))
        repo, tag = split_repo_tag(name)
        filename = f"{image_id}.tar"
        properties = {REPO_TAG_PROPERTY: f"{repo}:{tag}", MANIFEST_PROPERTY: image.resolved.manifest.digest,
                      **{LAYER_PROPERTY + d.split(":", 1)[1]: b.encode() for d, b in written.layers.items()}}
        body: Dict[str, Any] = {"manifest_text": written.manifest_text(filename), "properties": properties,
                                "name": collection_name(repo, tag, image_id)}
        if self.project_uuid:
            body["owner_uuid"] = self.project_uuid
        collection = self.api.collections().create(body=body, ensure_unique_name=True) \
            .execute(num_retries=self.num_retries)
        timestamp = _created(config)
        self._link(HASH_LINK, image_id, collection["uuid"], timestamp)
        self._link(REPO_TAG_LINK, f"{repo}:{tag}", collection["uuid"], timestamp)
        platform = config_platform(config)
        stored = self._record(name, collection, image_id)
        return StoredImage(**{**stored.to_json(), "platform": str(platform) if platform else None,
                              "manifest_digest": image.resolved.manifest.digest})

    def _put(self, data: bytes) -> str:
        """Write one block to Keep; its locator."""
        locator = str(self.keep.put(data))
        metrics.KEEP_BYTES_WRITTEN.inc(len(data))
        return locator

    def list(self) -> List[StoredImage]:
        """Images by their repo+tag links, newest image_timestamp first."""
        links = self._list("links", [["link_class", "=", REPO_TAG_LINK]])
        hashes = {link["head_uuid"]: link["name"] for link in self._list("links", [["link_class", "=", HASH_LINK]])}
        links.sort(key=lambda link: (link.get("properties") or {}).get("image_timestamp") or "", reverse=True)
        heads = [link["head_uuid"] for link in links if link["head_uuid"] in hashes]
        collections = {c["uuid"]: c for c in self._list("collections", [["uuid", "in", heads]],
                                                        select=["uuid", "portable_data_hash", "manifest_text",
                                                                "properties", "created_at"])} if heads else {}
        return [self._record(link["name"], collections[link["head_uuid"]], hashes[link["head_uuid"]])
                for link in links if link["head_uuid"] in collections]


def _created(config: bytes) -> Optional[str]:
    import json

    try:
        created = json.loads(config).get("created")
    except ValueError:
        return None
    return created if isinstance(created, str) else None


def _is_image_collection(manifest_text: str) -> bool:
    try:
        check_image_collection(manifest_text)
    except ImageError:
        return False
    return True


def check_image_collection(manifest_text: str) -> None:
    """The API server's rule for a container image collection: one file at the root, ``sha256:<64 hex>.tar``."""
    files = []
    for line in manifest_text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        for token in tokens[1:]:
            if token.count(":") >= 2 and token.split(":", 2)[0].isdigit():
                files.append((tokens[0], token.split(":", 2)[2]))
    names = {f"{stream}/{name}" for stream, name in files}
    if len(names) != 1 or not next(iter(names)).startswith("./sha256:"):
        raise ImageError(f"not a Docker image collection: expected one file sha256:<hex>.tar, found {sorted(names)}")
    hexpart = next(iter(names))[len("./sha256:"):]
    if not (hexpart.endswith(".tar") and len(hexpart) == 68 and all(c in "0123456789abcdef" for c in hexpart[:64])):
        raise ImageError(f"not a Docker image collection: {next(iter(names))[2:]} is not sha256:<64 hex>.tar")


