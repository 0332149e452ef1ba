"""Pulling an image from a registry into a ``docker save`` archive or an OCI layout, without docker.

This is the facade, as crane is go-containerregistry's: `pull` resolves the image
(`resolve`: manifests through the registry client `registry`, a platform chosen by
`manifest`), chooses how to make its archive (`strategy`: the form of the layers,
and how they are fetched and written) and writes it under a temporary name beside
the output, renamed once complete, so a failed pull leaves no output.

A tag is resolved with a manifest HEAD, and manifests, index and config come from
the cache when it has their digest, so an unchanged image costs one request; an
archive made before from the same manifest is hard-linked, not written again
(`BlobCache.archive`). Layer blobs are fetched on a pool of `jobs` threads
(`fetcher`) into the blob cache (`cache`), or with ``--no-cache`` into a temporary
one beside the output, removed afterwards. Memory is a few chunks of at most
1 MiB per job whatever the image size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from .archive import CONTAINERD_IMAGE_NAME, OCI_REF_NAME, ArchiveImage
from .cache import BlobCache, default_cache_dir
from .errors import ImageError
from .fetcher import LayerFetcher
from .manifest import config_platform, diff_ids
from .output import copy_file
from .progress import NullProgress, Progress
from .reference import Reference
from .registry import RegistryOptions, Repository
from .resolve import ResolvedImage, resolve
from .strategy import (
    COMPRESSED,
    DEFAULT_JOBS,
    LAYER_MODES,
    UNCOMPRESSED,
    Compressed,
    OciLayout,
    Strategy,
    Uncompressed,
)

DOCKER_ARCHIVE = "docker-archive"
OCI = "oci"
FORMATS = (DOCKER_ARCHIVE, OCI)


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


def choose(options: PullOptions, out: Path) -> Strategy:
    """How to make the archive `options` ask for at `out` (for OCI, a directory unless it ends in ``.tar``)."""
    if options.format not in FORMATS:
        raise ImageError(f"unknown output format {options.format!r}; choose one of {', '.join(FORMATS)}")
    if options.layers not in LAYER_MODES:
        raise ImageError(f"unknown layer form {options.layers!r}; choose one of {', '.join(LAYER_MODES)}")
    if options.format == OCI and not out.name.endswith(".tar"):
        return OciLayout()
    if options.format == OCI or options.layers == COMPRESSED:
        return Compressed(options.jobs, oci=options.format == OCI, keep_blobs=options.use_cache)
    return Uncompressed(options.jobs)


@dataclass
class OpenedImage:
    """An image resolved at its registry, whose archive fetches layers only as a strategy asks for them."""

    ref: Reference
    resolved: ResolvedImage
    fetcher: LayerFetcher

    def archive(self, strategy: Strategy) -> ArchiveImage:
        """The image to write, its layers in the form `strategy` gives them (fetched now or as they are read)."""
        manifest, ids = self.resolved.manifest, diff_ids(self.resolved.config)
        layers = [strategy.layer(self.fetcher, layer, diff_id) for layer, diff_id in zip(manifest.layers, ids)]
        annotations = {CONTAINERD_IMAGE_NAME: str(self.ref)}
        if self.ref.tag_or_default:
            annotations[OCI_REF_NAME] = self.ref.tag_or_default
        return ArchiveImage(self.resolved.config, layers, ids, repo_tags(self.ref), manifest.raw,
                            manifest.media_type, annotations)

    def write(self, strategy: Strategy, path: Path) -> int:
        """Write the archive `strategy` makes at `path`; return its size once every fetch has ended."""
        size = strategy.write(self.archive(strategy), path, self.fetcher.cache)
        self.fetcher.close()  # every job done: `downloaded` is final
        return size

    @property
    def downloaded(self) -> int:
        """Bytes fetched from the registry so far."""
        return self.fetcher.downloaded


@contextlib.contextmanager
def _open_cache(options: PullOptions, near: Optional[Path]) -> Iterator[BlobCache]:
    if options.use_cache:
        yield BlobCache(options.cache_dir or default_cache_dir())
    else:
        with BlobCache.temporary(near) as cache:
            yield cache


@contextlib.contextmanager
def open_image(ref: Reference, options: Optional[PullOptions] = None, near: Optional[Path] = None) -> Iterator[OpenedImage]:
    """Resolve `image` and hold its layer fetcher open; any fetch still going stops when the block is left.

    Stores that consume an archive as it is made (Keep) use this instead of `pull`;
    `near` is where a temporary cache goes with ``use_cache=False``.
    """
    options = options or PullOptions()
    repo = Repository(ref, options.registry)
    with _open_cache(options, near) as cache:
        resolved = resolve(repo, ref, cache, options.platform, head=options.use_cache)
        fetcher = LayerFetcher(repo, cache, options.jobs, options.progress)
        try:
            yield OpenedImage(ref, resolved, fetcher)
        finally:
            fetcher.close(cancel=True)


def archive_key(ref: Reference, resolved: ResolvedImage, fmt: str, layers: str) -> str:
    """What names a finished archive in the cache: everything its bytes depend on."""
    doc = {"version": 1, "reference": str(ref), "repo_tags": repo_tags(ref), "manifest": resolved.manifest.digest,
           "format": fmt, "layers": layers}
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def pull(ref: Reference, output: Union[str, Path, None] = None, options: Optional[PullOptions] = None) -> PullResult:
    """Pull the image `ref` names into `output` (default: `default_output`) as `options` say; return what was made.

    Raises an `ImageError` (a `RegistryError`, `DigestMismatch`, `ManifestError`…)
    after removing any partial output.
    """
    started = time.monotonic()
    options = options or PullOptions()
    out = Path(output) if output else Path(default_output(ref, options.format))
    strategy = choose(options, out)
    if out.is_dir() and (not strategy.directory or any(out.iterdir())):
        raise ImageError(f"output {out} is a directory that is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.urandom(4).hex()}"
    progress = options.progress
    downloaded = 0
    try:
        with open_image(ref, options, out.parent) as opened:
            resolved = opened.resolved
            layers = resolved.manifest.layers
            progress.start(ref.familiar_string(), sum(layer.size for layer in layers), len(layers))
            key = archive_key(ref, resolved, options.format, strategy.layers)
            keep = options.use_cache and options.cache_archive and not strategy.directory
            cache = opened.fetcher.cache
            cached = cache.archive(key) if keep else None
            if cached is not None:
                size = cached.stat().st_size
                if out.exists() and os.path.samefile(out, cached):
                    return _result(ref, out, options, strategy, resolved, size, 0, started)
                _link_or_copy(cached, partial, size)
            else:
                size = opened.write(strategy, partial)
                downloaded = opened.downloaded
                if keep:
                    cache.store_archive(key, partial)
            os.replace(partial, out)  # a directory too: over an empty one, as rename(2) does
    except BaseException:
        _remove(partial)
        raise
    finally:
        progress.finish()
    return _result(ref, out, options, strategy, resolved, size, downloaded, started)


def _result(ref: Reference, out: Path, options: PullOptions, strategy: Strategy, resolved: ResolvedImage,
            size: int, downloaded: int, started: float) -> PullResult:
    platform = config_platform(resolved.config)
    return PullResult(
        image=ref.as_written, reference=str(ref), output=str(out), format=options.format,
        layers=strategy.layers, image_id=resolved.manifest.config.digest,
        manifest_digest=resolved.manifest.digest, index_digest=resolved.index_digest,
        platform=str(platform) if platform else None, repo_tags=repo_tags(ref), size=size,
        downloaded=downloaded, seconds=round(time.monotonic() - started, 3))
