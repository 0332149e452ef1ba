"""Reading a blob to the end: resumed with a Range request when the connection breaks,
and verified by size and digest as it streams."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from ..errors import DigestMismatch, RegistryError
from .session import Response, TransportError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# How a body read breaks off: reset, closed early, timed out.
BROKEN = (TransportError,)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class BlobStream:
    """Iterates over a blob's bytes; raises `DigestMismatch` if they are not what the digest says.

    `open_at(offset)` returns a streaming response from `offset` on (a plain GET
    for 0, a Range GET otherwise); the caller supplies it so that auth, retries
    and redirects stay in one place. Bytes are read as sent (no Content-Encoding
    decoding): the digest is of the blob as stored.
    """

    def __init__(self, open_at: Callable[[int], Response], digest: str, size: Optional[int],
                 max_resumes: int, image: str, registry: str) -> None:
        self.open_at = open_at
        self.digest = digest
        self.size = size
        self.max_resumes = max_resumes
        self.image, self.registry = image, registry
        self.served_by = registry
        self.offset = 0
        self.resumes = 0
        algorithm, _, self.expected_hex = digest.partition(":")
        self.hasher = hashlib.new(algorithm)

    def __repr__(self) -> str:
        return f"BlobStream({self.digest}, offset={self.offset}, resumes={self.resumes})"

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                for chunk in self._read_from(self.offset):
                    yield self._account(chunk)
                break
            except BROKEN as exc:
                if self.resumes >= self.max_resumes:
                    raise RegistryError(self.image, self.registry, None,
                                        f"blob {self.digest}: the connection to {self.served_by} broke "
                                        f"{self.resumes + 1} times, last at byte {self.offset}: {exc}") from exc
                self.resumes += 1
                log.info("blob %s from %s broke at byte %d; resuming (%d)",
                         self.digest, self.served_by, self.offset, self.resumes)
        self._verify()

    def read(self) -> bytes:
        """The whole blob, verified (for configs and other small blobs)."""
        return b"".join(self)

    def _read_from(self, offset: int) -> Iterator[bytes]:
        """The blob's bytes from `offset` on: a 206 answer as it is, a 200 after skipping what we have."""
        response = self.open_at(offset)
        try:
            self.served_by = urlsplit(response.url).netloc.rsplit("@", 1)[-1] or self.registry
            skip = 0
            if offset and response.status_code == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != offset:
                    raise RegistryError(self.image, self.registry, 206,
                                        f"blob {self.digest}: asked for bytes from {offset}, got "
                                        f"{response.headers.get('Content-Range', 'no Content-Range')}")
            elif offset:
                skip = offset  # the server ignored Range and starts again from byte 0
            for chunk in _body(response):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if chunk:
                    yield chunk
            if skip:
                raise RegistryError(self.image, self.registry, response.status_code,
                                    f"blob {self.digest}: {offset - skip} bytes on a retry, {offset} before")
        finally:
            response.close()

    def _what(self) -> str:
        where = self.registry if self.served_by == self.registry else f"{self.registry} (served by {self.served_by})"
        return f"blob of image {self.image} from registry {where}"

    def _account(self, chunk: bytes) -> bytes:
        self.offset += len(chunk)
        if self.size is not None and self.offset > self.size:
            raise DigestMismatch(self._what(), f"{self.digest} ({self.size} bytes)", f"more than {self.size} bytes")
        self.hasher.update(chunk)
        return chunk

    def _verify(self) -> None:
        if self.size is not None and self.offset != self.size:
            raise DigestMismatch(self._what(), f"{self.digest} ({self.size} bytes)", f"{self.offset} bytes")
        actual = self.hasher.hexdigest()
        if actual != self.expected_hex:
            raise DigestMismatch(self._what(), self.digest, f"{self.hasher.name}:{actual}")


def _body(response: Response) -> Iterator[bytes]:
    """The raw body as it arrives (no Content-Encoding decoding: the digest is of the stored blob).

    Each chunk is what the socket has, up to `CHUNK`: a connection that breaks
    loses nothing that was received, so a resume starts where the bytes stopped.
    """
    while True:
        chunk = response.read1(CHUNK)
        if not chunk:
            return
        yield chunk
