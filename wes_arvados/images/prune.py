"""Keeping the blob cache within a size: the least recently used items go first.

The cache (`cache`) keeps every blob it is given, so a server that pulls many
images fills its disk unless it is bounded. `prune` removes whole items of it,
least recently used first, until what the cache alone holds fits `max_bytes`:

* an entry of ``blobs/`` (one verified blob);
* an archive of ``archives/``, with its record;
* a held archive of ``held/``, with the extents recorded in it (their blobs are
  then misses, fetched again by the pull that needs them).

Space is counted per inode, and only for the inodes that the cache alone links:
an archive or held file that is still also a user's output takes no space of
the cache's own and would free none if removed, so it stays. Small files (locks,
records) and ``tmp/`` (cleared when a cache opens) are not counted; lock files
that nobody holds are removed (`cache.remove_idle_lock`).

An item used or written within `grace` seconds is never removed, nor is a held
archive still being written: a pull looks an entry up and reads it a little
later, and `BlobCache.get` marks every entry it returns as used (its atime), so
the entries of a running pull are recent. An item's last use is the later of its
atime and mtime; it is looked at again just before it goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from .cache import PRUNE_GRACE_SECONDS, WRITING, BlobCache, flock_file, remove_idle_lock
from .progress import human_size

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """Bytes from ``512``, ``500M``, ``20G``, ``1.5TiB``, ``20GB`` (K, M, G, T, P are powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 20G, 1T)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class Item:
    """One thing `prune` may remove: the cache's links to one inode, and the records that go with them."""

    paths: List[Path]
    size: int  # bytes on disk of the inode
    last_used: float
    owned: bool  # every link of the inode is in the cache: removing it frees `size`
    records: List[Path] = field(default_factory=list)  # archive records and extents that go with it
    busy: bool = False  # a held archive still being written


@dataclass
class Pruned:
    """What `prune` did (or, with `dry_run`, would do)."""

    removed: int  # items
    freed: int  # bytes
    held: int  # bytes the cache alone still holds
    recent: int  # bytes of those in items used within the grace period

    def summary(self, dry_run: bool = False) -> str:
        """One line for people."""
        verb = "would remove" if dry_run else "removed"
        return (f"{verb} {self.removed} item{'s' * (self.removed != 1)} ({human_size(self.freed)}); the cache "
                f"holds {human_size(self.held)}, {human_size(self.recent)} of it used in the grace period")


def prune(cache: BlobCache, max_bytes: int, grace: float = PRUNE_GRACE_SECONDS, dry_run: bool = False) -> Pruned:
    """Remove the least recently used items until the cache's own bytes fit `max_bytes` (see the module)."""
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    with _prune_lock(cache):
        cutoff = time.time() - grace
        found, orphans = _scan(cache)
        items = [item for item in found if item.owned]
        held = sum(item.size for item in items)
        recent = sum(item.size for item in items if item.busy or item.last_used > cutoff)
        removed = freed = 0
        for item in sorted(items, key=lambda i: i.last_used):
            if held <= max_bytes:
                break
            if item.busy or item.last_used > cutoff or (not dry_run and not _still_unused(item, cutoff)):
                continue
            if not dry_run:
                _remove(item)
            removed, freed, held = removed + 1, freed + item.size, held - item.size
        if not dry_run:
            for record_path in orphans:  # extents of an archive already gone: misses, whatever prune keeps
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(record_path)
            _remove_idle_locks(cache)
        return Pruned(removed, freed, held, recent)


def usage(cache: BlobCache) -> int:
    """Bytes that the cache alone holds (what `prune` counts)."""
    return sum(item.size for item in _scan(cache)[0] if item.owned)


@contextlib.contextmanager
def _prune_lock(cache: BlobCache) -> Iterator[None]:
    """One prune at a time per cache, across processes (a second waits, then finds little to do)."""
    fd = flock_file(cache.root / "locks" / "prune")
    assert fd is not None  # a blocking lock is always had
    try:
        yield
    finally:
        os.close(fd)


def _scan(cache: BlobCache) -> Tuple[List[Item], List[Path]]:
    """Everything removable in the cache, one item per inode; and the extent records whose archive is gone.

    The extent records are listed before the held archives: a record is written only
    once its archive is held, so one whose archive is not listed after is an orphan
    (its archive removed by a prune, or let go by a crash).
    """
    by_inode: Dict[Tuple[int, int], Item] = {}

    def add(path: Path, records: List[Path], busy: bool = False) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        key = (st.st_dev, st.st_ino)
        item = by_inode.get(key)
        if item is None:
            item = by_inode[key] = Item([], st.st_blocks * 512, max(st.st_atime, st.st_mtime), False)
        item.paths.append(path)
        item.records.extend(records)
        item.busy = item.busy or busy
        item.owned = st.st_nlink == len(item.paths)

    for algorithm in _listdir(cache.root / "blobs"):
        for name in _listdir(cache.root / "blobs" / algorithm):
            add(cache.root / "blobs" / algorithm / name, [])
    archives = cache.root / "archives"
    for name in _listdir(archives):
        if not name.endswith(".json"):
            add(archives / name, [archives / f"{name}.json"])
    extents = _extents_by_held(cache)
    held = cache.root / "held"
    names = set(_listdir(held))
    for name in names:
        if not name.endswith(WRITING):
            add(held / name, extents.get(name, []), busy=name + WRITING in names)
    orphans = [path for name, records in extents.items() if name not in names for path in records]
    return list(by_inode.values()), orphans


def _extents_by_held(cache: BlobCache) -> Dict[str, List[Path]]:
    """The extent records of each held archive, by its name."""
    found: Dict[str, List[Path]] = {}
    for algorithm in _listdir(cache.root / "extents"):
        for name in _listdir(cache.root / "extents" / algorithm):
            path = cache.root / "extents" / algorithm / name
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.setdefault(os.path.basename(json.loads(path.read_text())["held"]), []).append(path)
    return found


def _still_unused(item: Item, cutoff: float) -> bool:
    """Whether the item was not used since it was looked at (a pull may have got it meanwhile)."""
    try:
        st = item.paths[0].stat()
    except FileNotFoundError:
        return False  # gone already (another prune, or a pull that replaced it)
    return max(st.st_atime, st.st_mtime) <= cutoff


def _remove(item: Item) -> None:
    for path in [*item.records, *item.paths]:  # the records first: a blob's extent never outlives its archive
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _remove_idle_locks(cache: BlobCache) -> None:
    """One lock file is left behind per digest ever fetched: those nobody holds go (the next fetch makes it again)."""
    for algorithm in _listdir(cache.root / "locks"):
        if (cache.root / "locks" / algorithm).is_dir():
            for name in _listdir(cache.root / "locks" / algorithm):
                with contextlib.suppress(FileNotFoundError):
                    remove_idle_lock(cache.root / "locks" / algorithm / name)


def _listdir(path: Path) -> List[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
