"""Getting layer blobs into the blob cache on a pool of threads, and inflating them as they are read.

Every layer blob is a job that streams it from the registry in 1 MiB chunks,
hashes it once (the registry client's `BlobStream`) and writes it into its cache
entry, renamed into place only once verified; concurrent fetchers of one digest
(threads or processes) wait on its lock and then find it cached. The first
failure cancels the other jobs. `LayerFetcher.inflate` gives a layer's
uncompressed bytes, verified against its diff_id, with the gzip trailer's size
hint and a way to read them again (see `writer`). `LayerFetcher.deliver` writes a
blob into an archive file being written (an `output.Output`) as it downloads, for
archives whose layers stay compressed: the output then never waits for a blob to
be read back. When the cache holds that output (`Output.held`), the blob is not
copied into the cache at all: the output records where it lies instead.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, TypeVar

from .archive import LayerFile, LayerStream
from .cache import BlobCache
from .compression import decompress, gzip_size_hint
from .errors import DigestMismatch
from .manifest import Descriptor
from .output import Output, Stopped, copy_file, write_at
from .progress import Progress
from .registry import Repository

# Pieces a cached blob is read in for inflation: 256 KiB stays in the L2 cache, which makes
# inflation ~30 % faster than 1 MiB pieces (benchmarks/README.rst).
READ_CHUNK = 256 << 10
# Pieces (of at most layers.OUT_CHUNK, 256 KiB) a layer's inflater may run ahead of the archive writer: 2 MiB,
# as fast as 8 MiB was (benchmarks/pull_benchmark.py) and 10-20 MB less peak RSS per pull.
INFLATE_AHEAD = 8

T = TypeVar("T")


class _Cancelled(Stopped):
    """Another layer failed; this one stops."""


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
        self.started: Dict[str, Callable[[], LayerFile]] = {}  # by digest: fetches started ahead

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

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
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

    def _cached(self, layer: Descriptor) -> Optional[Path]:
        """The blob's cache entry if there is one (its bytes then count as progress)."""
        path = self.cache.get(layer.digest, layer.size)
        if path is not None:
            self.progress.advance(layer.size)
        return path

    def _download(self, layer: Descriptor, store: bool = True) -> Iterator[bytes]:
        """The blob's chunks from the registry, stored into the cache as they pass if `store`; lock held by caller."""
        fetched: Iterator[bytes] = iter(self.repo.blob(layer.digest, layer.size))
        if store:
            fetched = self.cache.stream_into(layer.digest, layer.size, fetched,
                                             what=f"blob {layer.digest} of {self.repo.image}", source_verifies=True)
        return self._watch(fetched, network=True)

    def fetch(self, layer: Descriptor) -> LayerFile:
        """The layer blob in the cache, fetched now on the pool (waiting for it)."""
        return self.submit(self.compressed, layer)()

    def ahead(self, layer: Descriptor) -> Callable[[], LayerFile]:
        """Start fetching the layer blob into the cache on the pool (once per digest); return a wait for it."""
        if layer.digest not in self.started:
            self.started[layer.digest] = self.submit(self.compressed, layer)
        return self.started[layer.digest]

    def compressed(self, layer: Descriptor) -> LayerFile:
        """The layer blob as the registry serves it, in the cache (fetched under its lock if missing)."""
        def store() -> None:
            for _ in self._download(layer):  # the cache entry is committed at the end
                pass
        self._unless_cached(layer, store)
        return LayerFile(self.cache.path(layer.digest), layer.size, layer.digest)

    def _unless_cached(self, layer: Descriptor, fetch: Callable[[], object]) -> Optional[Path]:
        """The blob's cache entry; if there is none, None once `fetch()` ran under the blob's lock.

        The entry is looked for again under the lock: another pull may have fetched it meanwhile.
        """
        path = self._cached(layer)
        if path is None:
            with self.cache.lock(layer.digest):
                path = self._cached(layer)
                if path is None:
                    fetch()
        return path

    def deliver(self, layer: Descriptor, out: Output, offset: int) -> "Future[None]":
        """Get the layer blob's bytes into `out` at `offset`, on the pool.

        Bytes downloaded now are written as they arrive, so the output does not
        wait for the blob to be read back; the future fails (and the caller
        removes the output) if the blob does not match its digest. Once `out.stop`
        is set (the writer failed) nothing more is written. When the cache holds
        `out`, a downloaded blob is not copied into the cache: `out` records its
        extent instead, once verified.
        """
        return self.pool.submit(self._run, self._deliver, layer, out, offset)

    def _deliver(self, layer: Descriptor, out: Output, offset: int) -> None:
        path = self._unless_cached(layer, lambda: self._download_into(layer, out, offset))
        if path is not None:
            copy_file(path, out.fd, layer.size, offset)

    def _download_into(self, layer: Descriptor, out: Output, offset: int) -> None:
        """Write the blob's bytes into `out` from `offset` as they download (lock held by caller); see `deliver`."""
        fd, stop, at = out.fd, out.stop, offset
        for chunk in self._download(layer, store=not out.held):
            if stop.is_set():
                raise _Cancelled()
            at += write_at(fd, chunk, at)
        out.record(layer.digest, offset, layer.size)

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
        return LayerStream(diff_id, chunks(), gzip_size_hint(str(file.path), file.size), chunks)

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


