"""Pulling an image from a registry into a ``docker save`` archive or an OCI layout, without docker.

This is the facade: `pull` resolves the reference (`reference`), reads manifests
through the registry client (`registry`), picks a platform (`manifest`), gets the
blobs into the blob cache (`cache`), decompresses layers (`layers`) and writes the
archive (`archive`).

The pipeline, and why (two stages, one per core of the machines we run on):

* A tag is resolved with a manifest HEAD; manifests, index and config are read from
  the cache when it has their digest, so an unchanged image costs one request, and
  an archive made before from the same manifest is hard-linked (`cache.archive`).
* Fetching: every layer blob is a job on a pool of `jobs` threads that streams it
  from the registry in 1 MiB chunks, hashes it once (the registry client's
  `BlobStream`) and writes it into its cache entry, renamed into place only once
  verified. Jobs run ahead of the writer, all layers at once.
* Writing: the archive writer (the calling thread) takes the layers in order; as
  soon as a layer's blob is in the cache it inflates it (python-isal, which
  releases the GIL), hashes the output against the diff_id and writes it straight
  into the output file. Inflating and writing one layer overlap fetching the next.
* A tar header needs the member's size before its bytes, and the uncompressed size
  is only known at the end (the gzip ISIZE trailer is modulo 4 GiB, wrong for
  multi-member gzip, absent for zstd, and costs a second request per blob). So the
  writer puts a placeholder header before the layer, streams the layer, and writes
  the real header in place (`archive.write_parts`); a member of 8 GiB or more,
  whose PAX header is longer, has its data moved up by the difference. No layer is
  written twice and no temporary copy of it is made.
* Memory is a few 1 MiB chunks per job whatever the image size. With
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
import queue
import secrets
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from .archive import (CONTAINERD_IMAGE_NAME, OCI_REF_NAME, ArchiveImage, ArchiveLayer, LayerFile, LayerStream,
                      copy_file, iter_archive, iter_oci_archive, write_archive, write_oci_directory)
from .cache import BlobCache, default_cache_dir
from .errors import AuthError, DigestMismatch, ImageError, ManifestError, NotFoundError, RegistryError
from .layers import decompress
from .manifest import (DEFAULT_PLATFORM, OCI_LAYER, Descriptor, Index, Manifest, config_platform, diff_ids,
                       parse_manifest, parse_platform, select_platform)
from .progress import NullProgress, Progress
from .reference import Reference, parse_normalized_named
from .registry import RegistryOptions, Repository

DOCKER_ARCHIVE = "docker-archive"
OCI = "oci"
FORMATS = (DOCKER_ARCHIVE, OCI)
UNCOMPRESSED = "uncompressed"
COMPRESSED = "compressed"
LAYER_MODES = (UNCOMPRESSED, COMPRESSED)
DEFAULT_JOBS = 4
READ_CHUNK = 1 << 20
# Chunks (of at most 1 MiB) a layer's inflater may run ahead of the archive writer.
INFLATE_AHEAD = 8


@dataclass
class PullOptions:
    """How to pull: output format and layer form, platform, parallelism, cache and registry settings."""

    format: str = DOCKER_ARCHIVE
    layers: str = UNCOMPRESSED
    platform: Optional[str] = None
    jobs: int = DEFAULT_JOBS
    cache_dir: Optional[Path] = None  # None: default_cache_dir()
    use_cache: bool = True
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


@dataclass
class ResolvedImage:
    """An image manifest with its config, and the index it was chosen from, if any."""

    manifest: Manifest
    config: bytes
    index_digest: Optional[str] = None


class _Cancelled(Exception):
    """Another layer failed; this one stops."""


def repo_tags(ref: Reference) -> List[str]:
    """The RepoTags of an archive: the familiar name with its tag (``latest`` if none); none for a bare digest."""
    tag = ref.tag_or_default
    return [f"{ref.familiar_name}:{tag}"] if tag else []


def default_output(ref: Reference, fmt: str = DOCKER_ARCHIVE) -> str:
    """The output name derived from the image, e.g. ``img_1.tar`` (a directory ``img_1`` for OCI)."""
    base = ref.path.rsplit("/", 1)[-1]
    suffix = ref.tag_or_default or ref.identifier.split(":", 1)[-1][:12]
    return f"{base}_{suffix}" + (".tar" if fmt == DOCKER_ARCHIVE else "")


# ---- manifests and config ---------------------------------------------------------------------


def _fetch_manifest(repo: Repository, cache: BlobCache, identifier: str,
                    digest: Optional[str]) -> Union[Manifest, Index]:
    if digest is not None:
        raw = cache.read(digest)
        if raw is not None:
            return parse_manifest(raw, "", digest)
    verified = getattr(repo, "get_manifest_verified", None)
    if verified is not None:
        parsed = verified(identifier, digest)
    else:  # a registry client without it: check the digest here
        raw, content_type = repo.get_manifest(identifier)
        parsed = parse_manifest(raw, content_type, digest)
    cache.put(parsed.digest, parsed.raw)
    return parsed


def _head_digest(repo: Repository, identifier: str) -> Optional[str]:
    """The digest a tag points to now, or None when the registry does not say (then GET by tag)."""
    try:
        digest, _, _ = repo.head_manifest(identifier)
    except (AuthError, NotFoundError):
        raise
    except RegistryError:
        return None
    return digest


def resolve(repo: Repository, ref: Reference, cache: BlobCache, platform: Optional[str] = None,
            head: bool = True) -> ResolvedImage:
    """The manifest and config `ref` names, choosing from an index by `platform` (default linux/amd64)."""
    digest = ref.digest
    if digest is None and head:
        digest = _head_digest(repo, ref.identifier)
    top = _fetch_manifest(repo, cache, ref.identifier if digest is None else digest, digest)
    index_digest = None
    if isinstance(top, Index):
        index_digest = top.digest
        wanted = parse_platform(platform) if platform else DEFAULT_PLATFORM
        entry = select_platform(top, wanted, image=ref.familiar_string())
        top = _fetch_manifest(repo, cache, entry.digest, entry.digest)
        if not isinstance(top, Manifest):
            raise ManifestError(f"index entry {entry.digest} of {ref.familiar_string()} is not an image manifest")
    config = cache.read(top.config.digest)
    if config is None:
        with cache.lock(top.config.digest):  # concurrent pulls fetch it once
            config = cache.read(top.config.digest)
            if config is None:
                config = b"".join(repo.blob(top.config.digest, top.config.size))
                cache.put(top.config.digest, config)
    if len(diff_ids(config)) != len(top.layers):
        raise ManifestError(f"{ref.familiar_string()}: the manifest lists {len(top.layers)} layers "
                            f"but the config {len(diff_ids(config))} diff_ids")
    return ResolvedImage(top, config, index_digest)


# ---- layers -----------------------------------------------------------------------------------


class LayerFetcher:
    """Gets layers into the cache on a pool of threads; the first failure cancels the rest."""

    def __init__(self, repo: Repository, cache: BlobCache, jobs: int, progress: Progress) -> None:
        self.repo = repo
        self.cache = cache
        self.progress = progress
        self.pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="layer")
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.first_error: Optional[BaseException] = None
        self.downloaded = 0

    def submit(self, fn: Callable[..., LayerFile], *args: Any) -> Callable[[], LayerFile]:
        """Run `fn(*args)` on the pool; return a function that waits for its result."""
        future: Future = self.pool.submit(self._run, fn, *args)

        def result() -> LayerFile:
            try:
                return future.result()
            except BaseException:
                if self.first_error is not None:
                    raise self.first_error from None
                raise
        return result

    def _run(self, fn: Callable[..., LayerFile], *args: Any) -> LayerFile:
        try:
            file = fn(*args)
        except BaseException as exc:
            with self.lock:
                if self.first_error is None and not isinstance(exc, _Cancelled):
                    self.first_error = exc
            self.cancelled.set()
            raise
        self.progress.layer_done()
        return file

    def _watch(self, chunks: Iterator[bytes], network: bool) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if self.cancelled.is_set():
                    raise _Cancelled()
                if network:
                    with self.lock:
                        self.downloaded += len(chunk)
                self.progress.advance(len(chunk))
                yield chunk
        finally:
            # Close the source now, not when a traceback lets go of it: its temp file goes with it.
            getattr(chunks, "close", lambda: None)()

    def _source(self, layer: Descriptor) -> Iterator[bytes]:
        """The blob's chunks, from the cache, or from the registry into the cache (lock held by caller)."""
        cached = self.cache.get(layer.digest, layer.size)
        if cached is not None:
            return self._watch(_read_chunks(cached), network=False)
        fetched = self.cache.stream_into(layer.digest, layer.size, self.repo.blob(layer.digest, layer.size),
                                         what=f"blob {layer.digest} of {self.repo.image}", source_verifies=True)
        return self._watch(fetched, network=True)

    def compressed(self, layer: Descriptor) -> LayerFile:
        """The layer blob as the registry serves it, in the cache."""
        path = self.cache.get(layer.digest, layer.size)
        if path is None:
            with self.cache.lock(layer.digest):
                for _ in self._source(layer):
                    pass
            path = self.cache.path(layer.digest)
        else:
            self.progress.advance(layer.size)
        return LayerFile(path, layer.size, layer.digest)

    def inflate(self, layer: Descriptor, diff_id: str, blob: Callable[[], LayerFile]) -> LayerStream:
        """The layer's tar, decompressed from its cached blob as it is read, verified against `diff_id`.

        `blob` waits for the blob's download; the decompression happens in the
        thread that reads the stream (the archive writer) while the pool fetches
        later layers.
        """
        file = blob()
        what = f"layer {layer.digest} of {self.repo.image}"

        def inflated() -> Iterator[bytes]:
            for out in decompress(_read_chunks(file.path), what):
                if self.cancelled.is_set():  # a download failed: report its error, not a cancellation
                    raise self.first_error or _Cancelled()
                yield out

        def chunks() -> Iterator[bytes]:
            algorithm, _, expected = diff_id.partition(":")
            hasher = hashlib.new(algorithm)
            # Inflating in a thread of its own; hashing and writing in the writer's: two cores busy.
            for out in _in_thread(inflated(), INFLATE_AHEAD):
                hasher.update(out)
                yield out
            if hasher.hexdigest() != expected:
                raise DigestMismatch(f"uncompressed {what}", diff_id, f"{algorithm}:{hasher.hexdigest()}")
        return LayerStream(diff_id, chunks())

    def close(self, cancel: bool = False) -> None:
        """Wait for the jobs to end (stopping them first if `cancel`), so no temp file outlives the pull."""
        if cancel:
            self.cancelled.set()
        self.pool.shutdown(wait=True, cancel_futures=cancel)


_END = object()


def _in_thread(source: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """Run `source` in a thread of its own, at most `depth` items ahead of the consumer.

    Its exceptions reach the consumer; a consumer that stops early stops it.
    """
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            getattr(source, "close", lambda: None)()

    thread = threading.Thread(target=produce, name="inflate", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as src:
        for block in iter(lambda: src.read(READ_CHUNK), b""):
            yield block


# ---- the pull ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_cache(options: PullOptions, near: Path) -> Iterator[BlobCache]:
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


def _archive_image(ref: Reference, resolved: ResolvedImage, fetcher: LayerFetcher, compressed: bool) -> ArchiveImage:
    ids = diff_ids(resolved.config)
    blobs: Dict[str, Callable[[], LayerFile]] = {}
    layers = []
    for layer, diff_id in zip(resolved.manifest.layers, ids):
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


def _write(partial: Path, archive: ArchiveImage, fmt: str, as_directory: bool) -> int:
    if fmt == DOCKER_ARCHIVE:
        return write_archive(partial, iter_archive(archive))
    if as_directory:
        return write_oci_directory(partial, archive)
    return write_archive(partial, iter_oci_archive(archive))


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
    repo = Repository(ref, options.registry)
    partial = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    progress = options.progress
    downloaded = 0
    try:
        with _open_cache(options, out.parent) as cache:
            resolved = resolve(repo, ref, cache, options.platform, head=options.use_cache)
            layers = resolved.manifest.layers
            progress.start(ref.familiar_string(), sum(layer.size for layer in layers), len(layers))
            key = archive_key(ref, resolved, options.format, compressed)
            cached = cache.archive(key) if options.use_cache and not as_directory else None
            if cached is not None:
                size = cached.stat().st_size
                if out.exists() and os.path.samefile(out, cached):
                    return _result(image, ref, out, options, compressed, resolved, size, 0, started)
                _link_or_copy(cached, partial, size)
            else:
                fetcher = LayerFetcher(repo, cache, options.jobs, progress)
                try:
                    size = _write(partial, _archive_image(ref, resolved, fetcher, compressed), options.format,
                                  as_directory)
                finally:
                    fetcher.close(cancel=True)
                downloaded = fetcher.downloaded
                if options.use_cache and not as_directory:
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
