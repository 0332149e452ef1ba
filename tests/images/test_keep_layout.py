"""How an archive is cut into Keep blocks: layer-aligned, deterministic, byte-identical to the file."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Dict, List

import pytest

from wes_arvados.images.archive import ArchiveImage, LayerRef, iter_archive
from wes_arvados.images.stores.keep import (
    KeepArchiveWriter,
    LayerBlocks,
    check_image_collection,
    collection_name,
    split_repo_tag,
)
from wes_arvados.images.writer import write_archive

from .builder import ImageFactory, build_image, busybox_rootfs_layer, layer
from .test_archive import _archive_image, _streamed

BLOCK = 4096  # small blocks, so layers span several


class MemoryKeep:
    """Blocks by md5 locator, as Keep stores them; counts what was put."""

    def __init__(self) -> None:
        self.blocks: Dict[str, bytes] = {}
        self.put_bytes = 0
        self.lock = threading.Lock()

    def put(self, data: bytes) -> str:
        locator = f"{hashlib.md5(data).hexdigest()}+{len(data)}"
        with self.lock:
            self.blocks[locator] = data
            self.put_bytes += len(data)
        return locator

    def read(self, locators: List[str]) -> bytes:
        return b"".join(self.blocks[loc] for loc in locators)


@pytest.mark.parametrize("streamed", [False, True])
def test_the_blocks_hold_exactly_the_docker_save_archive_with_every_layer_on_a_boundary(
        streamed: bool, tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(5)
    expected = tmp_path / "expected.tar"
    write_archive(expected, iter_archive(_archive_image(image, tmp_path)))
    built: ArchiveImage = _archive_image(image, tmp_path)
    keep = MemoryKeep()
    written = KeepArchiveWriter(keep.put, jobs=3, block_size=BLOCK).write(
        iter_archive(_streamed(built) if streamed else built))
    data = keep.read(written.locators)
    assert data == expected.read_bytes() and written.size == len(data)
    offsets = [0]
    for locator in written.locators:
        offsets.append(offsets[-1] + int(locator.split("+")[1]))
    for lay in image.layers:
        blocks = written.layers[lay.diff_id]
        start = offsets[blocks.first]
        assert data[start:start + len(lay.tar)] == lay.tar  # the layer starts on a block boundary
        assert blocks.size == len(lay.tar)
        assert sum(int(loc.split("+")[1]) for loc in written.locators[blocks.first:blocks.first + blocks.count]) \
            == len(lay.tar)
    again = KeepArchiveWriter(MemoryKeep().put, jobs=1, block_size=BLOCK).write(
        iter_archive(_archive_image(image, tmp_path)))
    assert again.locators == written.locators


def test_held_layers_are_referred_to_not_stored_again(tmp_path: Path) -> None:
    base = busybox_rootfs_layer()
    first = build_image([base, layer({"etc/first": b"1" * 10000})])
    second = build_image([base, layer({"etc/second": b"2" * 10000})])
    keep = MemoryKeep()
    stored = KeepArchiveWriter(keep.put, block_size=BLOCK).write(iter_archive(_archive_image(first, tmp_path)))
    keep.put_bytes = 0
    blocks = stored.layers[base.diff_id]
    held = {base.diff_id: LayerRef(base.diff_id, blocks.size,
                                   stored.locators[blocks.first:blocks.first + blocks.count])}
    archive = _archive_image(second, tmp_path)
    archive.layers = [type(lay)(lay.digest, lay.media_type, (lambda: held[base.diff_id]))
                      if lay.digest == base.diff_id else lay for lay in archive.layers]
    again = KeepArchiveWriter(keep.put, block_size=BLOCK).write(iter_archive(archive))
    expected = tmp_path / "second.tar"
    write_archive(expected, iter_archive(_archive_image(second, tmp_path)))
    assert keep.read(again.locators) == expected.read_bytes()
    assert keep.put_bytes <= len(second.layers[1].tar) + 64 * 1024  # the new layer, and small metadata blocks
    assert again.layers[base.diff_id] == LayerBlocks(blocks.first, blocks.count, blocks.size)


def test_names_follow_arv_keepdocker() -> None:
    assert split_repo_tag("127.0.0.1:5000/x/img:1") == ("127.0.0.1:5000/x/img", "1")
    assert split_repo_tag("127.0.0.1:5000/x/img") == ("127.0.0.1:5000/x/img", "latest")
    assert split_repo_tag("debian:stable-slim@sha256:" + "a" * 64) == ("debian", "stable-slim")
    image_id = "sha256:" + "ab12" * 16
    assert collection_name("127.0.0.1:5000/x/img", "1", image_id) == "Docker image 127.0.0.1:5000 x img:1 sha256:ab12a"


@pytest.mark.parametrize("manifest,ok", [
    (". acbd18db4cc2f85cedef654fccc4a4d8+3 0:3:sha256:" + "a" * 64 + ".tar\n", True),
    (". acbd18db4cc2f85cedef654fccc4a4d8+3 0:3:image.tar\n", False),
    (". acbd18db4cc2f85cedef654fccc4a4d8+3 0:1:sha256:" + "a" * 64 + ".tar 1:2:other\n", False),
    ("./sub acbd18db4cc2f85cedef654fccc4a4d8+3 0:3:sha256:" + "a" * 64 + ".tar\n", False),
])
def test_an_image_collection_has_one_file_named_after_the_image_id(manifest: str, ok: bool) -> None:
    if ok:
        check_image_collection(manifest)
    else:
        with pytest.raises(Exception, match="not a Docker image collection"):
            check_image_collection(manifest)
