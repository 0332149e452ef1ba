"""Putting an archive's parts (`archive.Part`) into a local file, or an OCI layout into a directory.

File parts are copied with ``copy_file_range``, so their bytes never pass through
Python. A `StreamPart` (a layer being decompressed) has no size until its end, so
it is written after a placeholder header that is filled in once the size is known.

With ``jobs > 1``, file parts are copied by a pool of threads while the writer
lays out the parts after them, and streams that carry a size hint and can be
reopened are written in parallel too: the writer puts each one's header for the hinted size at once, lays
out everything after it as if the hint were right, and lets a pool of threads fill
the members in (inflaters release the GIL, so each job has a core). When the jobs
are done every hint is checked; from the first wrong one (a gzip of several
members, or a layer of 4 GiB or more, whose ISIZE trailer is modulo 2^32) the file
is cut off and the rest written again one part after the other. A stream without
a hint is a barrier: the hints before it are settled first, since it cannot be
read twice. Every write is positional, so parts need not land in order.

A `DeliveredPart` is written by a job of its own (the fetcher's, as the blob
downloads) at the place the writer hands it in the same `output.Output`; the
writer knows only that it is a future, and waits for it as for its own copies.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Union

from .archive import (
    BLOCK,
    ArchiveImage,
    DeliveredPart,
    FileEntry,
    LayerEntry,
    LayerPart,
    LayerRef,
    LayerStream,
    Metadata,
    Part,
    RefPart,
    StreamPart,
    oci_entries,
    padding,
    tar_header,
)
from .errors import ImageError
from .output import COPY_CHUNK, Output, Stopped, copy_file, create, write_at


class _Overflow(Exception):
    """A stream is longer than its hint said."""


@dataclass
class _Guess:
    """A stream being written in a job at the place its hint gave it."""

    index: int  # of the part in the writer's list
    start: int  # of its header
    part: StreamPart
    future: Future


class _Writer:
    """Writes parts at increasing offsets of one file, streams with hints in parallel jobs."""

    def __init__(self, out: Output, jobs: int) -> None:
        self.out = out
        self.fd = out.fd
        self.parts: List[Part] = []
        self.guesses: List[_Guess] = []
        self.copies: List[Future] = []  # of file and delivered parts, whose sizes are known
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="write") if jobs > 1 else None
        self.stop = out.stop  # set by the first failure; every job writing into the file then stops

    def write(self, parts: Iterable[Part]) -> int:
        offset = 0
        try:
            for part in parts:
                if isinstance(part, StreamPart) and self.pool is not None and part.size_hint is not None \
                        and part.reopen is not None:
                    self.parts.append(part)
                    offset = self._start_guess(part, offset)
                    continue
                if isinstance(part, DeliveredPart):  # its fetcher writes it, as its bytes arrive
                    self.parts.append(part)
                    self.copies.append(part.deliver(self.out, offset))
                    offset += part.size
                    continue
                if isinstance(part, LayerPart) and self.pool is not None:
                    self.parts.append(part)
                    self.copies.append(self.pool.submit(copy_file, part.path, self.fd, part.size, offset))
                    offset += part.size
                    continue
                if isinstance(part, StreamPart):
                    offset = self._settle(offset)  # a stream read once: everything before it stays put
                self.parts.append(part)
                offset += self._write_one(part, offset, part.chunks if isinstance(part, StreamPart) else ())
            return self._settle(offset)
        except BaseException:
            self.stop.set()
            # Deliveries write into our file from other threads: none may outlive it.
            for future in self.copies:
                future.cancel()
            wait(self.copies)
            raise
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)

    def _write_one(self, part: Part, at: int, chunks: Iterable[bytes]) -> int:
        if isinstance(part, RefPart):
            raise ImageError(f"layer {part.digest} is a reference into another store; a file cannot hold it")
        if isinstance(part, Metadata):
            return write_at(self.fd, part.data, at)
        if isinstance(part, LayerPart):
            copy_file(part.path, self.fd, part.size, at)
            return part.size
        if isinstance(part, DeliveredPart):
            part.deliver(self.out, at).result()
            return part.size
        return _write_stream(self.fd, at, part.name, chunks)

    def _start_guess(self, part: StreamPart, offset: int) -> int:
        hint = part.size_hint or 0
        header = tar_header(part.name, hint)
        write_at(self.fd, header, offset)
        assert self.pool is not None
        future = self.pool.submit(self._fill, part.chunks, offset + len(header), hint)
        self.guesses.append(_Guess(len(self.parts) - 1, offset, part, future))
        end = offset + len(header) + hint
        return end + write_at(self.fd, padding(hint), end)

    def _fill(self, chunks: Iterable[bytes], at: int, limit: int) -> int:
        """Write `chunks` from `at`; the number of bytes, or -1 once they pass `limit` (the hint was wrong)."""
        size = 0
        source = iter(chunks)
        try:
            for chunk in source:
                if self.stop.is_set():
                    raise Stopped()
                if size + len(chunk) > limit:
                    raise _Overflow()
                size += write_at(self.fd, chunk, at + size)
        except _Overflow:
            return -1
        except BaseException:
            self.stop.set()  # the other jobs stop too
            raise
        finally:
            getattr(source, "close", lambda: None)()
        return size

    def _settle(self, offset: int) -> int:
        """Wait for the parallel streams; from the first whose hint was wrong, write everything again in order."""
        guesses, self.guesses = self.guesses, []
        copies, self.copies = self.copies, []
        futures = copies + [g.future for g in guesses]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:  # one failed: the others stop, and none outlives this call
            self.stop.set()
            wait(pending)
        errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
        if errors:  # the failure itself, not the stops it caused
            raise next((exc for exc in errors if not isinstance(exc, Stopped)), errors[0])
        wrong = next((g for g in guesses if g.future.result() != g.part.size_hint), None)
        if wrong is None:
            return offset
        os.ftruncate(self.fd, wrong.start)
        offset = wrong.start
        for part in self.parts[wrong.index:]:
            chunks = part.reopen() if isinstance(part, StreamPart) and part.reopen else ()
            offset += self._write_one(part, offset, chunks)
        return offset


def write_parts(out: Output, parts: Iterable[Part], jobs: int = 1) -> int:
    """Write `parts` into `out` (a new file) from offset 0; return the number of bytes written.

    With `jobs` > 1, streams with size hints are filled in by that many threads at once.
    Deliveries write into `out` themselves; none is still writing when this returns or raises.
    """
    return _Writer(out, jobs).write(parts)


def _write_stream(fd: int, start: int, name: str, chunks: Iterable[bytes]) -> int:
    """Write a member of unknown size at `start`: a placeholder header, the data, then the real header."""
    write_at(fd, bytes(BLOCK), start)
    size = 0
    for chunk in chunks:
        size += write_at(fd, chunk, start + BLOCK + size)
    header = tar_header(name, size)
    if len(header) > BLOCK:
        # PAX records (members of 8 GiB and more): make room for them in front of the data.
        _shift(fd, start + BLOCK, size, len(header) - BLOCK)
    write_at(fd, header, start)
    return len(header) + size + write_at(fd, padding(size), start + len(header) + size)


def _shift(fd: int, start: int, length: int, by: int) -> None:
    """Move `length` bytes at `start` to `start + by`, last chunk first."""
    end = start + length
    while end > start:
        begin = max(start, end - COPY_CHUNK)
        data = os.pread(fd, end - begin, begin)
        os.pwrite(fd, data, begin + by)
        end = begin


def write_archive(path: Union[str, Path], parts: Iterable[Part], jobs: int = 1) -> int:
    """Write `parts` into `path`, a new file or an empty one (streams in `jobs` threads); return its size."""
    with create(path) as out:
        return write_parts(out, parts, jobs)


def write_oci_directory(path: Union[str, Path], image: ArchiveImage) -> int:
    """Write `image` as an OCI image layout in the new directory `path`; return the bytes written."""
    root = Path(path)
    root.mkdir()
    total = 0
    for entry in oci_entries(image, directories=False):
        target = root / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry, FileEntry):
            target.write_bytes(entry.data)
            total += len(entry.data)
        elif isinstance(entry, LayerEntry):
            file = entry.layer.data()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                if isinstance(file, LayerStream):
                    total += sum(write_at(fd, chunk, None) for chunk in file.chunks)
                elif isinstance(file, LayerRef):  # held elsewhere (Keep): an OCI layout must have the bytes
                    raise ImageError(f"layer {entry.name} is not available to write")
                else:
                    copy_file(file.path, fd, file.size)
                    total += file.size
            finally:
                os.close(fd)
    return total
