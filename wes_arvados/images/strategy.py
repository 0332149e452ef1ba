"""The ways a pull makes an image's archive: the form its layers take, and how a file of it is written.

`pull.pull` chooses one from its options; a store that consumes the archive's
parts itself (Keep) takes `IntoStore`, the local store `Uncompressed`.

* `Uncompressed`: a ``docker save`` archive of plain tars. Every blob is fetched
  ahead into the cache, all layers at once (`LayerFetcher.ahead`); as soon as one
  is there, a job per core inflates it, checks it against the config's diff_id
  and writes it at the offset its gzip size hint gives (`writer`), while the
  writer lays out the next layers.
* `IntoStore`: the same, for a store that already holds some layers (by diff_id):
  those are referred to (`archive.LayerRef`) and never fetched.
* `Compressed`: layers exactly as the registry serves them. Every offset is known
  from the manifest at once, so each blob is fetched only when the writer places
  it, and written into the output as it downloads (`LayerFetcher.deliver`): one
  pass over the bytes. The cache holds the output (`output.create`) and keeps the
  verified blobs where they lie in it instead of copying them. With ``oci=True``
  the file is the tar of an OCI image layout.
* `OciLayout`: an OCI image layout directory; blobs fetched ahead, then copied in.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping

from .archive import (
    ArchiveImage,
    ArchiveLayer,
    LayerRef,
    iter_archive,
    iter_oci_archive,
)
from .cache import BlobCache
from .fetcher import LayerFetcher
from .manifest import OCI_LAYER, Descriptor
from .output import create
from .writer import write_archive, write_oci_directory, write_parts

UNCOMPRESSED = "uncompressed"
COMPRESSED = "compressed"
LAYER_MODES = (UNCOMPRESSED, COMPRESSED)
# Layer jobs: blobs fetched at once (`PullOptions.jobs`), and layers written at once up to one per core.
DEFAULT_JOBS = 4


def _cores(jobs: int) -> int:
    """Layers are copied or inflated in parallel, one job per core at most."""
    return max(1, min(jobs, os.cpu_count() or 1))


class Strategy(ABC):
    """One way to make an image's archive."""

    #: The form of the layers: what a pull reports, and part of the name a finished archive has in the cache.
    layers: ClassVar[str] = UNCOMPRESSED
    #: Whether the archive is a directory (which the cache does not keep) rather than one file.
    directory: ClassVar[bool] = False

    @abstractmethod
    def layer(self, fetcher: LayerFetcher, layer: Descriptor, diff_id: str) -> ArchiveLayer:
        """The archive's layer for the manifest's `layer`, fetched by `fetcher` now or when it is read."""

    @abstractmethod
    def write(self, image: ArchiveImage, path: Path, cache: BlobCache) -> int:
        """Write `image` at `path` (nothing there yet, or an empty file); return the bytes written."""


@dataclass(frozen=True)
class Uncompressed(Strategy):
    """A ``docker save`` archive of plain tars, inflated and verified in `jobs` threads."""

    jobs: int = DEFAULT_JOBS

    def layer(self, fetcher: LayerFetcher, layer: Descriptor, diff_id: str) -> ArchiveLayer:
        """The layer's tar, inflated from its blob (fetched ahead) as it is read and checked against `diff_id`."""
        blob = fetcher.ahead(layer)
        if layer.digest == diff_id:  # stored uncompressed: the blob is the tar
            return ArchiveLayer(diff_id, OCI_LAYER, blob)
        return ArchiveLayer(diff_id, OCI_LAYER, functools.partial(fetcher.inflate, layer, diff_id, blob))

    def write(self, image: ArchiveImage, path: Path, cache: BlobCache) -> int:
        """Write the archive into the file `path`."""
        return write_archive(path, iter_archive(image), _cores(self.jobs))


@dataclass(frozen=True)
class IntoStore(Uncompressed):
    """`Uncompressed`, for a store that holds the layers of `held` (by diff_id) already: those are not fetched.

    The store consumes the archive's parts itself (`RefPart` for a held layer); a
    file cannot hold a reference, so `write` fails on the first one.
    """

    held: Mapping[str, LayerRef] = field(default_factory=dict)

    def layer(self, fetcher: LayerFetcher, layer: Descriptor, diff_id: str) -> ArchiveLayer:
        """The store's own reference to the layer if it holds it, else the inflated tar."""
        if diff_id in self.held:
            return ArchiveLayer(diff_id, OCI_LAYER, functools.partial(self.held.__getitem__, diff_id))
        return super().layer(fetcher, layer, diff_id)


@dataclass(frozen=True)
class Compressed(Strategy):
    """Layers as served, delivered into the output file as they download; the cache holds their extents there.

    `oci`: the tar of an OCI image layout instead of ``docker save``. With
    `keep_blobs`, a failed pull turns the blobs it verified into cache entries.
    """

    layers: ClassVar[str] = COMPRESSED
    jobs: int = DEFAULT_JOBS
    oci: bool = False
    keep_blobs: bool = True

    def layer(self, fetcher: LayerFetcher, layer: Descriptor, diff_id: str) -> ArchiveLayer:
        """The blob, fetched when the writer places it (or, for a reader of files, when read)."""
        return ArchiveLayer(layer.digest, layer.media_type, functools.partial(fetcher.fetch, layer),
                            functools.partial(fetcher.deliver, layer), layer.size)

    def write(self, image: ArchiveImage, path: Path, cache: BlobCache) -> int:
        """Write the archive into the file `path`, held by `cache` while it is written."""
        parts = (iter_oci_archive if self.oci else iter_archive)(image, deliverable=True)
        with create(path, hold=cache, keep_blobs=self.keep_blobs) as out:
            return write_parts(out, parts, _cores(self.jobs))


@dataclass(frozen=True)
class OciLayout(Strategy):
    """An OCI image layout directory, with the blobs as served."""

    layers: ClassVar[str] = COMPRESSED
    directory: ClassVar[bool] = True

    def layer(self, fetcher: LayerFetcher, layer: Descriptor, diff_id: str) -> ArchiveLayer:
        """The blob, fetched ahead into the cache."""
        return ArchiveLayer(layer.digest, layer.media_type, fetcher.ahead(layer))

    def write(self, image: ArchiveImage, path: Path, cache: BlobCache) -> int:
        """Write the layout into the new directory `path`."""
        return write_oci_directory(path, image)
