"""A local, content-addressed cache of blobs, safe for concurrent threads and processes.

Layout under the root (``$XDG_CACHE_HOME/wes-arvados`` by default)::

    blobs/sha256/<hex>    verified content, read-only: manifests, configs, layers as the
                          registry serves them, and uncompressed layers (named by diff_id)
    tmp/                  entries being written; renamed into blobs/ once verified
    locks/sha256/<hex>    flock targets, one per digest being fetched (`prune` removes idle ones)
    archives/<key>        finished archives, hard links to a pull's output (see `store_archive`)
    held/<name>           archives whose layers are kept where they lie in them (see `hold`);
                          ``<name>.writing`` marks one still being written
    extents/sha256/<hex>  where in a held archive a verified blob lies (offset and size)

Every lookup that finds an entry or an archive sets its atime to now (`_mark_used`):
`prune` (module `prune`) removes the least recently used items when the cache
must fit a size.

An entry appears only by an atomic rename after its bytes hashed to its name, so a
reader never sees a partial or corrupt entry and needs no lock. Fetchers of one
digest take its lock (an in-process lock, then ``fcntl.flock`` for other processes)
and look again before fetching, so concurrent pulls download each blob once.

A layer that goes into an archive as the registry serves it (``--layers=compressed``)
is not copied into blobs/: the archive is held (a hard link, no copy), and the
blob's extent in it is recorded, under the blob's lock, once the blob is verified.
`get` turns an extent into an entry the first time another pull needs the blob,
hashing it on the way: the held file is also the user's output, which may have
been changed since.
Entries are not fsynced: a machine that loses power may leave a short entry behind,
which the size checks of `get` and the digest checks of `read` turn into a miss.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Union

from .errors import DigestMismatch
from .reference import validate_digest

CACHE_DIR_NAME = "wes-arvados"
# Entries in tmp/ older than this were left by a process that died; they are removed.
STALE_TEMP_SECONDS = 24 * 3600
# What was used within this many seconds `prune` keeps whatever the size: a running pull's lookups are recent.
PRUNE_GRACE_SECONDS = 3600.0
# Pieces an extent is read in when it becomes an entry.
EXTENT_CHUNK = 1 << 20
WRITING = ".writing"

_LOCKS_GUARD = threading.Lock()
_LOCKS: Dict[str, threading.Lock] = {}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/wes-arvados``, else ``~/.cache/wes-arvados``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / CACHE_DIR_NAME


class BlobWriter:
    """A new entry being written: bytes go to a temp file, hashed on the way.

    `commit` verifies size and digest and renames the file into place; `abort`
    (or leaving a ``with`` block by an exception) removes it. With `check_digest=False`
    the caller vouches for the digest (its source verified it already) and only
    the size is checked, so no byte is hashed twice.
    """

    def __init__(self, cache: "BlobCache", digest: str, size: Optional[int] = None, what: str = "",
                 check_digest: bool = True) -> None:
        self.cache = cache
        self.digest = validate_digest(digest)
        self.expected_size = size
        self.what = what or f"blob {digest}"
        algorithm, _, self.expected_hex = digest.partition(":")
        self.hasher = hashlib.new(algorithm) if check_digest else None
        self.size = 0
        self.temp = cache.root / "tmp" / f"{self.expected_hex}.{os.getpid()}.{os.urandom(4).hex()}"
        self.fd: Optional[int] = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def write(self, data: Union[bytes, memoryview]) -> None:
        """Append `data`."""
        assert self.fd is not None, "write after commit or abort"
        if self.hasher is not None:
            self.hasher.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def commit(self) -> Path:
        """Check size and digest, then move the entry into place; return its path."""
        assert self.fd is not None, "commit after commit or abort"
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise DigestMismatch(self.what, f"{self.digest} ({self.expected_size} bytes)", f"{self.size} bytes")
        actual = self.hasher.hexdigest() if self.hasher is not None else self.expected_hex
        if actual != self.expected_hex:
            self.abort()
            raise DigestMismatch(self.what, self.digest, f"{self.hasher.name}:{actual}")  # type: ignore[union-attr]
        os.fchmod(self.fd, 0o444)
        os.close(self.fd)
        self.fd = None
        final = self.cache.path(self.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.temp, final)
        return final

    def abort(self) -> None:
        """Forget what was written (nothing once committed)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        elif self.fd is not None:
            self.commit()


class BlobCache:
    """Verified blobs on local disk, named by digest."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        for sub in ("blobs", "tmp", "locks", "archives", "held", "extents"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, near: Union[str, Path, None] = None) -> Iterator["BlobCache"]:
        """A cache in a new temp directory (beside `near` if given), removed afterwards."""
        import tempfile  # here: `pull` with a cache, the usual case, needs none

        root = tempfile.mkdtemp(prefix=".wes-arvados-cache-", dir=str(near) if near else None)
        try:
            yield cls(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def path(self, digest: str) -> Path:
        """Where the entry for `digest` lives (whether or not it exists)."""
        algorithm, _, hexdigest = validate_digest(digest).partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def get(self, digest: str, size: Optional[int] = None) -> Optional[Path]:
        """The entry's path if it exists (and has `size` bytes, when given), else None.

        A blob recorded only as an extent of a held archive becomes an entry
        here, if its bytes there still hash to its digest (else it is a miss).
        """
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return self._from_extent(digest, size)
        if size is not None and st.st_size != size:
            self.discard(digest)
            return None
        _mark_used(path, st)
        return path

    def read(self, digest: str) -> Optional[bytes]:
        """A small entry's bytes, re-verified; None (and the entry dropped) if missing or corrupt."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        algorithm, _, hexdigest = digest.partition(":")
        if hashlib.new(algorithm, data).hexdigest() != hexdigest:
            self.discard(digest)
            return None
        _mark_used(path)
        return data

    def put(self, digest: str, data: bytes) -> Path:
        """Store `data` under `digest` (raising `DigestMismatch` if it does not hash to it)."""
        with self.writer(digest, len(data)) as writer:
            writer.write(data)
        return self.path(digest)

    def discard(self, digest: str) -> None:
        """Remove an entry, if it exists."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def writer(self, digest: str, size: Optional[int] = None, what: str = "", check_digest: bool = True) -> BlobWriter:
        """A `BlobWriter` for a new entry; `size`, if given, is checked at commit."""
        return BlobWriter(self, digest, size, what, check_digest)

    def stream_into(self, digest: str, size: Optional[int], chunks: Iterable[bytes], what: str = "",
                    source_verifies: bool = False) -> Iterator[bytes]:
        """Pass `chunks` through while storing them; the entry is committed when they run out.

        If the consumer stops early or the source raises, nothing is stored.
        `source_verifies` says that `chunks` raises at its end unless the bytes
        matched `digest` (as a registry `BlobStream` does), so they are not hashed again.
        """
        writer = self.writer(digest, size, what, check_digest=not source_verifies)
        try:
            for chunk in chunks:
                writer.write(chunk)
                yield chunk
            writer.commit()
        finally:
            writer.abort()

    @contextlib.contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        """Hold the fetch lock of `digest` against other threads and processes."""
        algorithm, _, hexdigest = validate_digest(digest).partition(":")
        path = self.root / "locks" / algorithm / hexdigest
        with _LOCKS_GUARD:
            thread_lock = _LOCKS.setdefault(str(path), threading.Lock())
        with thread_lock:
            fd = flock_file(path)
            assert fd is not None  # a blocking flock waits, never gives up
            try:
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    # ---- blobs kept inside archives ------------------------------------------------------------

    def hold(self, path: Path) -> Optional["Holder"]:
        """Hold the archive being written at `path` (a hard link), so blobs written into it need no entry.

        None when the cache is on another filesystem than `path`: the blobs then
        go into entries as usual.
        """
        holder = Holder(self, os.urandom(8).hex())
        holder.marker.touch()  # first: a process that dies leaves a marked holder, which a later open removes
        try:
            os.link(path, holder.path)
        except OSError:
            holder.marker.unlink()
            return None
        return holder

    def _replace_text(self, target: Path, text: str) -> None:
        """Write `text` as `target`, atomically: a reader sees the old record or the new one."""
        temp = self.root / "tmp" / f"{target.name}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            temp.write_text(text)
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def _extent_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = validate_digest(digest).partition(":")
        return self.root / "extents" / algorithm / hexdigest

    def _from_extent(self, digest: str, size: Optional[int]) -> Optional[Path]:
        """Make the entry of `digest` from its extent in a held archive; None if there is none or it changed."""
        try:
            text = self._extent_path(digest).read_text()
        except FileNotFoundError:
            return None
        try:
            extent = json.loads(text)
            held = self.root / "held" / os.path.basename(extent["held"])
            offset, length = int(extent["offset"]), int(extent["size"])
            if size is not None and length != size:
                raise ValueError(f"{length} bytes, not {size}")
            with open(held, "rb", buffering=0) as src, self.writer(digest, length) as writer:
                while writer.size < length:
                    data = os.pread(src.fileno(), min(EXTENT_CHUNK, length - writer.size), offset + writer.size)
                    if not data:
                        break  # short: the writer's size check refuses it
                    writer.write(data)
        except (OSError, ValueError, KeyError, TypeError, DigestMismatch):
            return None
        finally:
            self._forget_extent(digest, text)
        return self.path(digest)

    def _forget_extent(self, digest: str, text: str) -> None:
        """Remove the extent record of `digest` if it still says `text` (another may have replaced it)."""
        path = self._extent_path(digest)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                os.unlink(path)

    # ---- whole archives ----------------------------------------------------------------------

    def archive(self, key: str) -> Optional[Path]:
        """The archive stored under `key`, if it is still exactly as it was stored.

        An archive shares its inode with the output it was linked from, so it is
        checked against the size and modification time recorded when it was
        stored; one written to since is dropped.
        """
        path = self.root / "archives" / key
        try:
            recorded = json.loads((self.root / "archives" / f"{key}.json").read_text())
            st = path.stat()
        except (OSError, ValueError):
            return None
        if [st.st_size, st.st_mtime_ns] != [recorded.get("size"), recorded.get("mtime_ns")]:
            self.discard_archive(key)
            return None
        _mark_used(path, st)
        return path

    def store_archive(self, key: str, path: Path) -> bool:
        """Keep a finished archive under `key` as a hard link to `path`, made read-only.

        A link costs no copy and no space while the output exists, and makes the
        next pull of the same image into the same format a link again. False when
        the cache is on another filesystem than `path` (nothing is stored then).
        """
        temp = self.root / "tmp" / f"archive-{key}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            os.link(path, temp)
        except OSError:
            return False
        try:
            os.chmod(temp, 0o444)
            st = temp.stat()
            self._replace_text(self.root / "archives" / f"{key}.json",
                               json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns}))
            os.replace(temp, self.root / "archives" / key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return True

    def discard_archive(self, key: str) -> None:
        """Forget the archive stored under `key` (the outputs linked to it stay)."""
        for name in (key, f"{key}.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / "archives" / name)

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        with os.scandir(self.root / "tmp") as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
        # Archives still marked as being written, by a process that died (their extents then miss).
        with os.scandir(self.root / "held") as entries:
            for entry in entries:
                if entry.name.endswith(WRITING):
                    held = Path(entry.path[:-len(WRITING)])
                    with contextlib.suppress(OSError):
                        if max(_mtime(entry.path), _mtime(held)) < cutoff:
                            for path in (held, Path(entry.path)):
                                with contextlib.suppress(FileNotFoundError):
                                    os.unlink(path)


def flock_file(path: Path, blocking: bool = True) -> Optional[int]:
    """A descriptor of the lock file `path`, holding its flock (closing it lets go); None if held and not `blocking`.

    Idle lock files may be removed (`prune`), so a lock taken on a file that is no
    longer the one at `path` (removed while this waited) is let go and taken again
    on the file there now: two holders never hold different files of one path.
    """
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            current = _same_file(fd, path)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if current:
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def remove_idle_lock(path: Path) -> bool:
    """Remove the lock file `path` unless someone holds it (or waits on it, having got it); whether it went."""
    fd = flock_file(path, blocking=False)
    if fd is None:
        return False
    try:
        os.unlink(path)  # while holding it: whoever opened it before this waits, then finds it gone and retries
    finally:
        os.close(fd)
    return True


def _mark_used(path: Path, st: Optional[os.stat_result] = None) -> None:
    """Set the entry's atime to now, keeping its mtime: what `prune` orders entries by.

    Set explicitly, as a mount with ``noatime`` or ``relatime`` would not. An
    archive's mtime is part of what `archive` checks, so it must stay as it is.
    """
    with contextlib.suppress(OSError):  # not ours to change (a cache shared read-only): prune sees it older
        os.utime(path, ns=(time.time_ns(), (st or path.stat()).st_mtime_ns))


def _mtime(path: Union[str, Path]) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


class Holder:
    """An archive being written, whose verified blobs the cache keeps where they lie in it (`BlobCache.hold`)."""

    def __init__(self, cache: BlobCache, name: str) -> None:
        self.cache = cache
        self.name = name
        self.recorded: Dict[str, str] = {}  # digest -> its extent record

    @property
    def path(self) -> Path:
        """The cache's link to the archive."""
        return self.cache.root / "held" / self.name

    @property
    def marker(self) -> Path:
        """The file that marks the archive as still being written."""
        return self.cache.root / "held" / (self.name + WRITING)

    def record(self, digest: str, offset: int, size: int) -> None:
        """Say that the verified blob `digest` lies at `offset` of the archive; call it with the blob's lock held."""
        target = self.cache._extent_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"held": self.name, "offset": offset, "size": size})
        self.cache._replace_text(target, text)
        self.recorded[digest] = text

    def keep(self) -> None:
        """The archive is complete: its extents serve later pulls (if it has none, the cache lets go of it)."""
        let_go = (self.marker,) if self.recorded else (self.marker, self.path)
        for path in let_go:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def release(self, keep_blobs: bool = True) -> None:
        """The archive failed: its verified blobs become entries (if `keep_blobs`), and the cache lets go of it."""
        for digest, text in self.recorded.items():
            if keep_blobs:
                with contextlib.suppress(OSError):
                    self.cache.get(digest)  # an entry now, made from the extent
            self.cache._forget_extent(digest, text)
        for path in (self.path, self.marker):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
