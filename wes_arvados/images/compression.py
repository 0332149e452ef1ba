"""Layer blobs: what compression they use, and their uncompressed bytes as a bounded stream.

Compression is read from the blob's first bytes, as docker's DecompressStream does,
so a layer whose media type says gzip but which is stored plain still loads. Gzip
goes through the fastest inflater importable here (see `INFLATER`); all of them
release the GIL, so layers decompress in parallel threads. Output comes in pieces
of at most `OUT_CHUNK` bytes whatever the compression ratio, so memory stays
bounded for a layer of zeros too.
"""

from __future__ import annotations

import os
import zlib
from types import ModuleType
from typing import Iterable, Iterator, Optional

from .errors import ImageError

GZIP = "gzip"
ZSTD = "zstd"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# The longest magic number we sniff; `compression_of` needs this many bytes.
MAGIC_LENGTH = 4

# Largest piece of uncompressed output yielded at once.
OUT_CHUNK = 256 << 10
# wbits for a zlib decompressor that reads one gzip member.
GZIP_WBITS = 31


def _inflater() -> tuple[ModuleType, str]:
    """The fastest zlib-compatible module installed.

    Measured on this project's 2-core machines (benchmarks/README.rst): python-isal
    inflates a typical layer at ~800 MB/s, zlib-ng at ~580 MB/s, stdlib zlib at
    ~300 MB/s.
    """
    try:
        from isal import isal_zlib

        return isal_zlib, "isal"
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        return zlib_ng, "zlib-ng"
    except ImportError:
        return zlib, "zlib"


_ZLIB, INFLATER = _inflater()


class CorruptLayer(ImageError):
    """A layer blob cannot be decompressed (it matched its digest, so the image itself is broken)."""


def compression_of(head: bytes) -> Optional[str]:
    """"gzip", "zstd" or None (a plain tar), from a blob's first `MAGIC_LENGTH` bytes."""
    if head.startswith(GZIP_MAGIC):
        return GZIP
    if head.startswith(ZSTD_MAGIC):
        return ZSTD
    return None


def gzip_size_hint(path: str, size: int) -> Optional[int]:
    """The uncompressed size a gzip file's trailer states (ISIZE), or None if it is not gzip.

    Only a hint: ISIZE is modulo 2^32 and describes the last member alone.
    """
    # gzip header (10) + empty deflate block (2) + trailer (8)
    if size < 20:
        return None
    with open(path, "rb", buffering=0) as f:
        if f.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            return None
        return int.from_bytes(os.pread(f.fileno(), 4, size - 4), "little")


def decompress(chunks: Iterable[bytes], what: str = "layer") -> Iterator[bytes]:
    """The uncompressed bytes of a gzip, zstd or plain blob given as `chunks`.

    The compression is sniffed from the first bytes. Every input chunk is
    consumed, so a verifying source (a registry `BlobStream`) reaches its final
    digest check even when the compressed stream ends early.
    """
    source = iter(chunks)
    first = b""
    for first in source:
        if first:
            break
    while 0 < len(first) < MAGIC_LENGTH:  # a source may hand out tiny pieces
        more = next(source, b"")
        if not more:
            break
        first += more
    compression = compression_of(first)
    rest = _prepend(first, source)
    try:
        if compression == GZIP:
            yield from _gunzip(rest, what)
        elif compression == ZSTD:
            yield from _unzstd(rest, what)
        else:
            yield from (chunk for chunk in rest if chunk)
    except CorruptLayer:
        # Bytes damaged in transit break the stream before the digest check at its end
        # can say so: read on, so that a verifying source raises DigestMismatch instead.
        for _ in rest:
            pass
        raise


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _gunzip(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """Inflate every gzip member in turn (pigz and `cat a.gz b.gz` make several)."""
    d = _ZLIB.decompressobj(GZIP_WBITS)
    fed = False
    try:
        for chunk in chunks:
            buf = chunk
            while buf:
                if d.eof:
                    d, fed = _ZLIB.decompressobj(GZIP_WBITS), False
                out = d.decompress(buf, OUT_CHUNK)
                fed = True
                if out:
                    yield out
                if d.eof:
                    buf = d.unused_data
                    continue
                buf = d.unconsumed_tail
                # A full output piece may leave more output pending with no input left.
                while not buf and len(out) == OUT_CHUNK and not d.eof:
                    out = d.decompress(b"", OUT_CHUNK)
                    if out:
                        yield out
                    buf = d.unconsumed_tail
    except _ZLIB.error as exc:
        raise CorruptLayer(f"{what} is not valid gzip: {exc}") from None
    if fed and not d.eof:
        raise CorruptLayer(f"{what} is not valid gzip: the stream ends in the middle of a member")


class _ChunkReader:
    """A file-like `read(n)` over an iterator of chunks, for zstandard's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return b""
            self.pending = memoryview(chunk)
        if size < 0 or size >= len(self.pending):
            out, self.pending = self.pending, memoryview(b"")
        else:
            out, self.pending = self.pending[:size], self.pending[size:]
        return bytes(out)


def _unzstd(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """Decode every zstd frame (zstd:chunked layers have many)."""
    import zstandard  # here: most images have no zstd layer

    reader = zstandard.ZstdDecompressor().stream_reader(
        _ChunkReader(chunks), read_size=OUT_CHUNK, read_across_frames=True)  # type: ignore[arg-type]  # a raw reader
    try:
        while True:
            out = reader.read(OUT_CHUNK)
            if not out:
                return
            yield out
    except zstandard.ZstdError as exc:
        raise CorruptLayer(f"{what} is not valid zstd: {exc}") from None
