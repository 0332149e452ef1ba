"""A ``multipart/form-data`` body streamed from disk: its length is known up front, no file is held in memory."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

CHUNK = 1 << 20


@dataclass
class MultipartBody:
    """Form fields and files, sent in that order; `chunks()` reads each file as it goes."""

    fields: List[Tuple[str, str]] = field(default_factory=list)
    files: List[Tuple[str, str, Path]] = field(default_factory=list)  # (form field, file name, local path)
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def content_type(self) -> str:
        """The Content-Type header that goes with the body."""
        return f"multipart/form-data; boundary={self.boundary}"

    def _field_head(self, name: str) -> bytes:
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{_quoted(name)}\"\r\n\r\n").encode()

    def _file_head(self, name: str, filename: str) -> bytes:
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{_quoted(name)}\"; "
                f"filename=\"{_quoted(filename)}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def length(self) -> int:
        """The body's size in bytes (the files' sizes as they are now)."""
        size = sum(len(self._field_head(n)) + len(v.encode()) + 2 for n, v in self.fields)
        size += sum(len(self._file_head(n, f)) + os.path.getsize(p) + 2 for n, f, p in self.files)
        return size + len(self._tail())

    def chunks(self, sent: Callable[[int], None] = lambda n: None) -> Iterator[bytes]:
        """The body, a piece at a time; `sent` is told the size of each file piece (for progress)."""
        for name, value in self.fields:
            yield self._field_head(name) + value.encode() + b"\r\n"
        for name, filename, path in self.files:
            yield self._file_head(name, filename)
            with open(path, "rb") as src:
                for piece in iter(lambda: src.read(CHUNK), b""):
                    sent(len(piece))
                    yield piece
            yield b"\r\n"
        yield self._tail()


def _quoted(text: str) -> str:
    """A form-data parameter value: quotes and line breaks escaped as browsers do."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
