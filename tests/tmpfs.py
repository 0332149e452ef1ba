"""A small file system for disk-full tests: a tmpfs mounted for one test, and a file that fills it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .wes import require


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """`directory` as a tmpfs of `size` (e.g. "32m") for the block; unmounted after it. Needs root (CI has it)."""
    directory.mkdir(parents=True, exist_ok=True)
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
                          capture_output=True, text=True, timeout=60)
    require(done.returncode == 0, f"cannot mount a tmpfs at {directory}: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        # Lazily: a process of the test that still holds a file there must not keep the mount.
        subprocess.run(["umount", "--lazy", str(directory)], capture_output=True, timeout=60)


def fill(directory: Path, leave: int = 0) -> Path:
    """Write a file in `directory` until its file system is full, then give back `leave` bytes; the file."""
    path = directory / "filler"
    with open(path, "wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            try:
                while True:
                    out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        if leave:
            out.truncate(max(0, out.tell() - leave))
    return path


def space_left(directory: Path) -> int:
    """Bytes free for writing in `directory`'s file system."""
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize
