"""Pulling an image from a registry into a ``docker save`` archive or an OCI layout, without docker.

This is the facade: `pull` parses the reference (`reference`), resolves it to one
image (`resolve`: manifests through the registry client `registry`, a platform
chosen by `manifest`), gets the layer blobs into the blob cache (`fetcher`,
`cache`), decompresses layers (`layers`), lays the archive out (`archive`) and
writes it (`writer`).

The pipeline, and why (fetching and writing overlap, and both use every core):

* A tag is resolved with a manifest HEAD; manifests, index and config are read from
  the cache when it has their digest, so an unchanged image costs one request, and
  an archive made before from the same manifest is hard-linked (`cache.archive`).
* Fetching: every layer blob is a job on a pool of `jobs` threads that streams it
  from the registry in chunks of up to 1 MiB (what the socket has), hashes it once (the registry client's
  `BlobStream`) and writes it into its cache entry, renamed into place only once
  verified. Jobs run ahead of the writer, all layers at once. When layers stay
  compressed, the writer knows every offset at once (the sizes are in the
  manifest), and each job writes the blob into the output as it arrives
  (`LayerFetcher.deliver`): one pass over the bytes, no copy after the download.
  The cache then holds the output itself (a hard link, `BlobCache.hold`) and
  records where each verified blob lies in it, instead of a copy of every blob;
  a later pull that needs one makes an entry of it then (hashing it again).
* Writing: the archive writer (`writer`) takes the layers in order and, as soon
  as a layer's blob is in the cache, hands it to one of a pool of jobs (one per
  core) that inflates it (python-isal, which releases the GIL), hashes the output
  against the diff_id and writes it straight into the output file. A tar header
  needs the member's size before its bytes, and the uncompressed size is only
  known at the end; the gzip ISIZE trailer gives it in advance for most layers
  (it is modulo 4 GiB and only covers the last member), so each job writes at the
  offset the hints give, and the writer checks every hint at the end and rewrites
  from the first wrong one in order. A layer with no hint (zstd) is written after
  a placeholder header that is filled in once its size is known. No layer is
  written twice unless a hint was wrong, and no temporary copy is made.
* Memory is a few chunks of at most 1 MiB per job whatever the image size. With
  ``--no-cache`` the blobs go to a temporary cache beside the output, removed
  afterwards. The output is written under a temporary name and renamed when
  complete, so a failed pull leaves no output and no unverified cache entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from .archive import (
    CONTAINERD_IMAGE_NAME,
    OCI_REF_NAME,
    ArchiveImage,
    ArchiveLayer,
    LayerFile,
    LayerRef,
    iter_archive,
    iter_oci_archive,
)
from .cache import BlobCache, Holder, default_cache_dir
from .errors import ImageError
from .fetcher import LayerFetcher
from .manifest import OCI_LAYER, config_platform, diff_ids
from .progress import NullProgress, Progress
from .reference import Reference, parse_normalized_named
from .registry import RegistryOptions, Repository
from .resolve import ResolvedImage, resolve
from .writer import copy_file, write_archive, write_oci_directory

DOCKER_ARCHIVE = "docker-archive"
OCI = "oci"
FORMATS = (DOCKER_ARCHIVE, OCI)
UNCOMPRESSED = "uncompressed"
COMPRESSED = "compressed"
LAYER_MODES = (UNCOMPRESSED, COMPRESSED)
DEFAULT_JOBS = 4


@dataclass
class PullOptions:
    """How to pull: output format and layer form, platform, parallelism, cache and registry settings."""

    format: str = DOCKER_ARCHIVE
    layers: str = UNCOMPRESSED
    platform: Optional[str] = None
    jobs: int = DEFAULT_JOBS
    cache_dir: Optional[Path] = None  # None: default_cache_dir()
    use_cache: bool = True
    # Keep the finished archive in the cache (a hard link) so that the same pull again is a link.
    cache_archive: bool = True
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    progress: Progress = field(default_factory=NullProgress)


@dataclass
class PullResult:
    """What a pull produced."""

    image: str
    reference: str
    output: str
    format: str
    layers: str
    image_id: str
    manifest_digest: str
    index_digest: Optional[str]
    platform: Optional[str]
    repo_tags: List[str]
    size: int
    downloaded: int
    seconds: float

    def to_json(self) -> Dict[str, Any]:
        """The result as a JSON-able dict."""
        return asdict(self)


def repo_tags(ref: Reference) -> List[str]:
    """The RepoTags of an archive: the familiar name with its tag (``latest`` if none); none for a bare digest."""
    tag = ref.tag_or_default
    return [f"{ref.familiar_name}:{tag}"] if tag else []


def default_output(ref: Reference, fmt: str = DOCKER_ARCHIVE) -> str:
    """The output name derived from the image, e.g. ``img_1.tar`` (a directory ``img_1`` for OCI)."""
    base = ref.path.rsplit("/", 1)[-1]
    suffix = ref.tag_or_default or ref.identifier.split(":", 1)[-1][:12]
    return f"{base}_{suffix}" + (".tar" if fmt == DOCKER_ARCHIVE else "")


# ---- the pull ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_cache(options: PullOptions, near: Optional[Path]) -> Iterator[BlobCache]:
    if options.use_cache:
        yield BlobCache(options.cache_dir or default_cache_dir())
    else:
        with BlobCache.temporary(near) as cache:
            yield cache


def _check_options(options: PullOptions) -> None:
    if options.format not in FORMATS:
        raise ImageError(f"unknown output format {options.format!r}; choose one of {', '.join(FORMATS)}")
    if options.layers not in LAYER_MODES:
        raise ImageError(f"unknown layer form {options.layers!r}; choose one of {', '.join(LAYER_MODES)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _archive_image(ref: Reference, resolved: ResolvedImage, fetcher: LayerFetcher, compressed: bool,
                   held: Optional[Dict[str, LayerRef]] = None, deliverable: bool = False,
                   holder: Optional[Holder] = None) -> ArchiveImage:
    ids = diff_ids(resolved.config)
    blobs: Dict[str, Callable[[], LayerFile]] = {}
    layers = []
    for layer, diff_id in zip(resolved.manifest.layers, ids):
        if compressed and deliverable:  # fetched when the writer places it, straight into the file
            fetch = functools.partial(fetcher.fetch, layer)  # for a writer that cannot take deliveries
            deliver = functools.partial(fetcher.deliver, layer, holder=holder)
            layers.append(ArchiveLayer(layer.digest, layer.media_type, fetch, deliver, layer.size))
            continue
        if not compressed and held and diff_id in held:  # the destination has it: not even fetched
            layers.append(ArchiveLayer(diff_id, OCI_LAYER, functools.partial(held.__getitem__, diff_id)))
            continue
        if layer.digest not in blobs:
            blobs[layer.digest] = fetcher.submit(fetcher.compressed, layer)
        blob = blobs[layer.digest]
        if compressed:
            layers.append(ArchiveLayer(layer.digest, layer.media_type, blob))
        elif layer.digest == diff_id:  # stored uncompressed: the blob is the tar
            layers.append(ArchiveLayer(diff_id, OCI_LAYER, blob))
        else:
            layers.append(ArchiveLayer(diff_id, OCI_LAYER, functools.partial(fetcher.inflate, layer, diff_id, blob)))
    annotations = {CONTAINERD_IMAGE_NAME: str(ref)}
    if ref.tag_or_default:
        annotations[OCI_REF_NAME] = ref.tag_or_default
    return ArchiveImage(resolved.config, layers, ids, repo_tags(ref), resolved.manifest.raw,
                        resolved.manifest.media_type, annotations)


def archive_key(ref: Reference, resolved: ResolvedImage, fmt: str, compressed: bool) -> str:
    """What names a finished archive in the cache: everything its bytes depend on."""
    doc = {"version": 1, "reference": str(ref), "repo_tags": repo_tags(ref), "manifest": resolved.manifest.digest,
           "format": fmt, "layers": COMPRESSED if compressed else UNCOMPRESSED}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _link_or_copy(source: Path, target: Path, size: int) -> None:
    """Hard-link `source` at `target`, or copy it there when they are on different filesystems."""
    try:
        os.link(source, target)
    except OSError:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            copy_file(source, fd, size)
        finally:
            os.close(fd)


def _write(partial: Path, archive: ArchiveImage, fmt: str, as_directory: bool, jobs: int) -> int:
    # Layers are copied or inflated in parallel, one job per core.
    jobs = max(1, min(jobs, os.cpu_count() or 1))
    if fmt == DOCKER_ARCHIVE:
        return write_archive(partial, iter_archive(archive, deliverable=True), jobs)
    if as_directory:
        return write_oci_directory(partial, archive)
    return write_archive(partial, iter_oci_archive(archive, deliverable=True), jobs)


def _write_new(partial: Path, opened: "OpenedImage", options: PullOptions, compressed: bool,
               as_directory: bool) -> int:
    """Write the archive at `partial`; return its size.

    An archive file of compressed layers is held by the cache (`BlobCache.hold`),
    which then keeps the blobs written into it where they lie instead of copying
    them. If the pull fails, the blobs verified so far become cache entries.
    """
    holder = None
    if compressed and not as_directory:
        partial.touch()
        holder = opened.fetcher.cache.hold(partial)
    try:
        archive = opened.archive(compressed, deliverable=not as_directory, holder=holder)
        size = _write(partial, archive, options.format, as_directory, options.jobs)
        opened.fetcher.close()  # every job done: `downloaded` is final
    except BaseException:
        if holder is not None:
            holder.release(keep_blobs=options.use_cache)
        raise
    if holder is not None:
        holder.keep()
    return size


@dataclass
class OpenedImage:
    """An image resolved at its registry, whose archive layout fetches layers only as they are read."""

    ref: Reference
    resolved: ResolvedImage
    fetcher: LayerFetcher

    def archive(self, compressed: bool = False, held: Optional[Dict[str, LayerRef]] = None,
                deliverable: bool = False, holder: Optional[Holder] = None) -> ArchiveImage:
        """The image to write: layers as the registry serves them (`compressed`) or as plain verified tars.

        Layers whose diff_id is in `held` (the destination holds them already) are
        not fetched: the archive refers to them instead. With `deliverable` (the
        archive goes into a local file through `writer`), compressed layers are not
        fetched ahead: each is fetched when the writer places it, and written into
        the file as it downloads; with a `holder` (the cache's hold on that file)
        they are not copied into the cache too.
        """
        return _archive_image(self.ref, self.resolved, self.fetcher, compressed, held, deliverable, holder)

    @property
    def downloaded(self) -> int:
        """Bytes fetched from the registry so far."""
        return self.fetcher.downloaded


@contextlib.contextmanager
def open_image(image: str, options: Optional[PullOptions] = None, near: Optional[Path] = None) -> Iterator[OpenedImage]:
    """Resolve `image` and hold its layer fetcher open; any fetch still going stops when the block is left.

    Stores that consume an archive as it is made (Keep) use this instead of `pull`;
    `near` is where a temporary cache goes with ``use_cache=False``.
    """
    options = options or PullOptions()
    ref = parse_normalized_named(image)
    repo = Repository(ref, options.registry)
    with _open_cache(options, near) as cache:
        resolved = resolve(repo, ref, cache, options.platform, head=options.use_cache)
        fetcher = LayerFetcher(repo, cache, options.jobs, options.progress)
        try:
            yield OpenedImage(ref, resolved, fetcher)
        finally:
            fetcher.close(cancel=True)


def pull(image: str, output: Union[str, Path, None] = None, options: Optional[PullOptions] = None) -> PullResult:
    """Pull `image` into `output` (default: `default_output`) as `options` say; return what was made.

    Raises an `ImageError` (a `RegistryError`, `DigestMismatch`, `ManifestError`…)
    after removing any partial output.
    """
    started = time.monotonic()
    options = options or PullOptions()
    _check_options(options)
    ref = parse_normalized_named(image)
    out = Path(output) if output else Path(default_output(ref, options.format))
    as_directory = options.format == OCI and not out.name.endswith(".tar")
    if out.is_dir() and (not as_directory or any(out.iterdir())):
        raise ImageError(f"output {out} is a directory that is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    compressed = options.format == OCI or options.layers == COMPRESSED
    partial = out.parent / f".{out.name}.partial-{os.urandom(4).hex()}"
    progress = options.progress
    downloaded = 0
    try:
        with open_image(image, options, out.parent) as opened:
            resolved = opened.resolved
            layers = resolved.manifest.layers
            progress.start(ref.familiar_string(), sum(layer.size for layer in layers), len(layers))
            key = archive_key(ref, resolved, options.format, compressed)
            keep = options.use_cache and options.cache_archive and not as_directory
            cache = opened.fetcher.cache
            cached = cache.archive(key) if keep else None
            if cached is not None:
                size = cached.stat().st_size
                if out.exists() and os.path.samefile(out, cached):
                    return _result(image, ref, out, options, compressed, resolved, size, 0, started)
                _link_or_copy(cached, partial, size)
            else:
                size = _write_new(partial, opened, options, compressed, as_directory)
                downloaded = opened.downloaded
                if keep:
                    cache.store_archive(key, partial)
            os.replace(partial, out) if not as_directory else os.rename(partial, out)
    except BaseException:
        _remove(partial)
        raise
    finally:
        progress.finish()
    return _result(image, ref, out, options, compressed, resolved, size, downloaded, started)


def _result(image: str, ref: Reference, out: Path, options: PullOptions, compressed: bool, resolved: ResolvedImage,
            size: int, downloaded: int, started: float) -> PullResult:
    platform = config_platform(resolved.config)
    return PullResult(
        image=image, reference=str(ref), output=str(out), format=options.format,
        layers=COMPRESSED if compressed else UNCOMPRESSED, image_id=resolved.manifest.config.digest,
        manifest_digest=resolved.manifest.digest, index_digest=resolved.index_digest,
        platform=str(platform) if platform else None, repo_tags=repo_tags(ref), size=size,
        downloaded=downloaded, seconds=round(time.monotonic() - started, 3))
