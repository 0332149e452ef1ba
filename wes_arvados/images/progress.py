"""Telling a person how a pull goes: a progress bar on a terminal and a one-line summary.

`Progress` is what the pull calls (from its worker threads); `NullProgress` says
nothing, `TerminalProgress` redraws one line on stderr at most ten times a second.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


def human_size(n: float) -> str:
    """`n` bytes as a short text, e.g. ``433.9 MB`` (powers of 1000, as docker prints them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class Progress:
    """What a pull reports as it goes; this base class ignores it all."""

    def start(self, image: str, total_bytes: int, layers: int) -> None:
        """The layers to get are known: `layers` of them, `total_bytes` as the registry stores them."""

    def advance(self, n: int) -> None:
        """`n` more bytes of layer blobs were read (from the registry or the cache). Thread-safe."""

    def layer_done(self) -> None:
        """One more layer is ready. Thread-safe."""

    def finish(self) -> None:
        """The pull ended (well or not); clear whatever was drawn."""


NullProgress = Progress


class TerminalProgress(Progress):
    """A one-line bar on a terminal: bytes, rate and layers done."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.image = ""
        self.total = 0
        self.done = 0
        self.layers = 0
        self.layers_done = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.drawn = False

    def start(self, image: str, total_bytes: int, layers: int) -> None:
        with self.lock:
            self.image, self.total, self.layers = image, total_bytes, layers
            self.started = time.monotonic()
            self._draw(force=True)

    def advance(self, n: int) -> None:
        with self.lock:
            self.done += n
            self._draw()

    def layer_done(self) -> None:
        with self.lock:
            self.layers_done += 1
            self._draw(force=self.layers_done == self.layers)

    def finish(self) -> None:
        with self.lock:
            if self.drawn:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.drawn = False

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < REDRAW_SECONDS:
            return
        self.drawn_at = now
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(fraction * BAR_WIDTH)
        rate = self.done / max(now - self.started, 1e-6)
        line = (f"{self.image} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                f"{human_size(self.done)}/{human_size(self.total)} {human_size(rate)}/s "
                f"{self.layers_done}/{self.layers} layers")
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self.drawn = True


def summary_line(image_id: str, manifest_digest: str, size: int, seconds: float, output: str) -> str:
    """The line printed after a pull: where it went, the image ID, manifest digest, size and time."""
    return (f"{output}: image {image_id} (manifest {manifest_digest}), "
            f"{human_size(size)} in {seconds:.2f} s")
