"""Reading a blob to the end: resumed with a Range request when the connection breaks,
and verified by size and digest as it streams."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Callable, Iterator, Optional

import requests
import urllib3.exceptions

from ..errors import DigestMismatch, RegistryError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
BROKEN = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout,
          urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class BlobStream:
    """Iterates over a blob's bytes; raises `DigestMismatch` if they are not what the digest says.

    `open_at(offset)` returns a streaming response from `offset` on (a plain GET
    for 0, a Range GET otherwise); the caller supplies it so that auth, retries
    and redirects stay in one place.
    """

    def __init__(self, open_at: Callable[[int], requests.Response], digest: str, size: Optional[int],
                 max_resumes: int, image: str, registry: str) -> None:
        self.open_at = open_at
        self.digest = digest
        self.size = size
        self.max_resumes = max_resumes
        self.image, self.registry = image, registry
        self.offset = 0
        self.resumes = 0
        algorithm, _, self.expected_hex = digest.partition(":")
        self.hasher = hashlib.new(algorithm)

    def _open(self) -> requests.Response:
        response = self.open_at(self.offset)
        if self.offset == 0:
            return response
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.offset:
                response.close()
                raise RegistryError(self.image, self.registry, 206,
                                    f"blob {self.digest}: resumed at the wrong offset")
            return response
        # The server ignored Range: skip what we already have.
        skip = self.offset
        chunks = response.iter_content(CHUNK)
        while skip > 0:
            chunk = next(chunks, b"")
            if not chunk:
                raise RegistryError(self.image, self.registry, response.status_code,
                                    f"blob {self.digest}: shorter on retry")
            skip -= len(chunk)
            if skip < 0:
                self._pending = chunk[skip:]
        return response

    def __iter__(self) -> Iterator[bytes]:
        self._pending = b""
        response = self._open()
        while True:
            try:
                if self._pending:
                    chunk, self._pending = self._pending, b""
                    yield self._account(chunk)
                for chunk in response.iter_content(CHUNK):
                    if chunk:
                        yield self._account(chunk)
                break
            except BROKEN as exc:
                response.close()
                if self.resumes >= self.max_resumes:
                    raise RegistryError(self.image, self.registry, None,
                                        f"blob {self.digest}: connection broke {self.resumes + 1} times: {exc}") from exc
                self.resumes += 1
                log.info("blob %s broke at byte %d; resuming (%d)", self.digest, self.offset, self.resumes)
                response = self._open()
        response.close()
        self._verify()

    def _account(self, chunk: bytes) -> bytes:
        self.offset += len(chunk)
        if self.size is not None and self.offset > self.size:
            raise DigestMismatch(f"blob of {self.image}", f"{self.digest} ({self.size} bytes)",
                                 f"more than {self.size} bytes")
        self.hasher.update(chunk)
        return chunk

    def _verify(self) -> None:
        if self.size is not None and self.offset != self.size:
            raise DigestMismatch(f"blob of {self.image}", f"{self.digest} ({self.size} bytes)", f"{self.offset} bytes")
        actual = self.hasher.hexdigest()
        if actual != self.expected_hex:
            raise DigestMismatch(f"blob of {self.image}", self.digest, f"{self.hasher.name}:{actual}")
