"""An archive file being written: the one boundary between the writer, the jobs that fill it and the cache.

The archive writer (`writer`) lays the parts out at known offsets; layer jobs (the
fetcher's deliveries, the writer's own copies and inflaters) write into the same
file at the places they are handed, from other threads. They share an `Output`:
the file's descriptor, positioned writes (`write_at`) and kernel copies
(`copy_file`), the flag that stops every job once one fails, and the cache's hold
on the file (`BlobCache.hold`). A held file keeps the verified blobs written into
it where they lie (`Output.record`), so they need no copy in the cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path
from typing import Iterator, Optional, Union

from .cache import BlobCache, Holder

# Pieces a file is copied in when the kernel cannot copy it (another filesystem), and moved in.
COPY_CHUNK = 1 << 20


class Stopped(Exception):
    """Another job failed; this one stops (the failure itself is the error to report)."""


def write_at(fd: int, data: Union[bytes, bytearray, memoryview], at: Optional[int]) -> int:
    """Write all of `data` at offset `at` (at the file position when `at` is None); return its length."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view) if at is None else os.pwrite(fd, view, at)
        view = view[done:]
        if at is not None:
            at += done
    return len(data)


def copy_file(src_path: Path, dst_fd: int, size: int, at: Optional[int] = None) -> None:
    """Copy `size` bytes of `src_path` into `dst_fd` at offset `at` (default: its position), in the kernel if it can."""
    with open(src_path, "rb", buffering=0) as src:
        left, src_at = size, 0
        try:
            while left:
                copied = os.copy_file_range(src.fileno(), dst_fd, left, src_at,
                                            None if at is None else at + src_at)
                if copied == 0:
                    break
                left, src_at = left - copied, src_at + copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
            while left:  # another filesystem, or a kernel without copy_file_range
                data = os.pread(src.fileno(), min(COPY_CHUNK, left), src_at)
                if not data:
                    break
                write_at(dst_fd, data, None if at is None else at + src_at)
                left, src_at = left - len(data), src_at + len(data)
        if left:
            raise OSError(errno.EIO, f"{src_path} is shorter than the {size} bytes expected")


class Output:
    """A file that several threads write an archive into at known offsets, until `stop` is set.

    `holder` is the cache's hold on the file, if it has one: blobs written into
    it then need no cache entry of their own (`held`), and `record` tells the
    cache where each lies once verified.
    """

    def __init__(self, fd: int, holder: Optional[Holder] = None) -> None:
        self.fd = fd
        self.stop = threading.Event()
        self.holder = holder

    @property
    def held(self) -> bool:
        """Whether the cache keeps the blobs written here where they lie (so they need no entry)."""
        return self.holder is not None

    def record(self, digest: str, offset: int, size: int) -> None:
        """The verified blob `digest` lies at `offset`: a cache that holds the file keeps it there (blob lock held)."""
        if self.holder is not None:
            self.holder.record(digest, offset, size)


@contextlib.contextmanager
def create(path: Union[str, Path], hold: Optional[BlobCache] = None, keep_blobs: bool = True) -> Iterator[Output]:
    """A new, or empty, file at `path` to write an archive into; closed when the block is left.

    The file is never truncated: ext4 takes truncating a file to nothing as a
    sign that it is being replaced, and then flushes it to disk when it is closed
    (auto_da_alloc), ~0.2 s for 400 MB. With `hold`, that cache holds the file
    (a hard link, `BlobCache.hold`) before anything is written into it; if the
    block fails, the blobs verified so far become entries (with `keep_blobs`) and
    the cache lets go of it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if os.fstat(fd).st_size:
            raise FileExistsError(errno.EEXIST, "not empty: an archive is written into a new file", str(path))
        holder = hold.hold(Path(path)) if hold is not None else None
    except BaseException:
        os.close(fd)
        raise
    try:
        try:
            yield Output(fd, holder)
        finally:
            os.close(fd)  # every job writing into it has ended: the writer waits for them
    except BaseException:
        if holder is not None:
            holder.release(keep_blobs)
        raise
    if holder is not None:
        holder.keep()
