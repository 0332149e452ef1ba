"""The content-addressed blob cache: verification, atomicity, locking across threads and processes."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from wes_arvados.images.cache import BlobCache, Holder, default_cache_dir
from wes_arvados.images.errors import DigestMismatch
from wes_arvados.images.output import create, write_at

from ..wes import require

DATA = b"hello blob\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _entries(cache: BlobCache) -> List[str]:
    return sorted(p.name for p in (cache.root / "blobs").rglob("*") if p.is_file())


def _temps(cache: BlobCache) -> List[str]:
    return sorted(os.listdir(cache.root / "tmp"))


def test_default_directory_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "wes-arvados"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "wes-arvados"


def test_put_get_and_read_a_verified_read_only_entry(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    assert cache.get(DIGEST) is None and cache.read(DIGEST) is None
    path = cache.put(DIGEST, DATA)
    assert path == cache.get(DIGEST) == cache.get(DIGEST, len(DATA))
    assert path.name == DIGEST.split(":")[1] and path.stat().st_mode & 0o777 == 0o444
    assert cache.read(DIGEST) == DATA
    assert _temps(cache) == []


def test_bytes_that_do_not_match_their_digest_leave_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    with pytest.raises(DigestMismatch):
        cache.put(DIGEST, DATA + b"!")
    with pytest.raises(DigestMismatch):
        with cache.writer(DIGEST, size=len(DATA)) as writer:
            writer.write(DATA[:-1])
    assert _entries(cache) == [] and _temps(cache) == []


def test_a_source_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)

    def broken() -> Iterator[bytes]:
        yield DATA[:100]
        raise ConnectionError("reset")
    with pytest.raises(ConnectionError):
        for _ in cache.stream_into(DIGEST, len(DATA), broken()):
            pass
    stream = cache.stream_into(DIGEST, len(DATA), iter([DATA[:10], DATA[10:]]))
    next(stream)
    stream.close()  # the consumer gave up
    assert _entries(cache) == [] and _temps(cache) == []
    assert list(cache.stream_into(DIGEST, len(DATA), iter([DATA[:10], DATA[10:]]))) == [DATA[:10], DATA[10:]]
    assert cache.read(DIGEST) == DATA


def test_a_corrupt_or_short_entry_is_a_miss(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    path = cache.put(DIGEST, DATA)
    os.chmod(path, 0o644)
    path.write_bytes(DATA[:-1] + b"?")
    assert cache.read(DIGEST) is None and cache.get(DIGEST) is None
    cache.put(DIGEST, DATA)
    assert cache.get(DIGEST, size=len(DATA) + 1) is None and cache.get(DIGEST) is None


def test_stale_temp_files_are_removed_when_the_cache_opens(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    stale, fresh = cache.root / "tmp" / "stale", cache.root / "tmp" / "fresh"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 3 * 24 * 3600,) * 2)
    BlobCache(tmp_path)
    assert _temps(cache) == ["fresh"]


def test_a_temporary_cache_is_removed_afterwards(tmp_path: Path) -> None:
    with BlobCache.temporary(tmp_path) as cache:
        cache.put(DIGEST, DATA)
        root = cache.root
        assert root.parent == tmp_path
    assert not root.exists()


def _fetch_once(cache: BlobCache, fetches: List[int]) -> None:
    with cache.lock(DIGEST):
        if cache.get(DIGEST) is None:
            fetches.append(1)
            time.sleep(0.05)
            cache.put(DIGEST, DATA)


def test_threads_fetching_one_digest_take_turns(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    fetches: List[int] = []
    threads = [threading.Thread(target=_fetch_once, args=(cache, fetches)) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetches == [1]


def _process_fetch(root: str, log: str) -> None:
    cache = BlobCache(root)
    with cache.lock(DIGEST):
        if cache.get(DIGEST) is None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
            time.sleep(0.2)
            cache.put(DIGEST, DATA)


def test_processes_fetching_one_digest_take_turns(tmp_path: Path) -> None:
    log = tmp_path / "fetches"
    log.touch()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_process_fetch, args=(str(tmp_path / "cache"), str(log)))
                 for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert len(log.read_text().split()) == 1


def test_a_stored_archive_is_a_hard_link_until_it_changes(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    output.write_bytes(b"archive bytes")
    assert cache.store_archive("k" * 64, output)
    stored = cache.archive("k" * 64)
    assert stored is not None and os.path.samefile(stored, output)
    assert output.stat().st_mode & 0o777 == 0o444
    os.chmod(output, 0o644)
    with open(output, "ab") as f:  # someone appends to the output in place
        f.write(b"!")
    assert cache.archive("k" * 64) is None
    assert sorted(os.listdir(cache.root / "archives")) == [] and _temps(cache) == []


# ---- blobs kept inside archives ----------------------------------------------------------------

HEADER = b"h" * 512


def _held_archive(tmp_path: Path) -> Tuple[BlobCache, Holder, Path]:
    """A cache holding tmp_path/out.tar, which has DATA at offset 512, recorded as an extent."""
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    output.write_bytes(HEADER + DATA + b"tail")
    holder = cache.hold(output)
    assert holder is not None and os.path.samefile(holder.path, output)
    holder.record(DIGEST, len(HEADER), len(DATA))
    return cache, holder, output


def _extents(cache: BlobCache) -> List[str]:
    return sorted(p.name for p in (cache.root / "extents").rglob("*") if p.is_file())


def test_a_blob_kept_in_an_archive_becomes_an_entry_when_needed(tmp_path: Path) -> None:
    cache, holder, output = _held_archive(tmp_path)
    holder.keep()
    assert _entries(cache) == [] and _extents(cache) == [DIGEST.split(":")[1]]
    assert os.listdir(cache.root / "held") == [holder.name]  # no longer marked as being written
    assert cache.get(DIGEST, len(DATA) + 1) is None  # the wrong size is a miss, and forgets the extent
    assert _extents(cache) == []
    holder.record(DIGEST, len(HEADER), len(DATA))
    path = cache.get(DIGEST, len(DATA))
    assert path == cache.path(DIGEST) and path.read_bytes() == DATA
    assert _extents(cache) == [] and _temps(cache) == []
    assert output.read_bytes() == HEADER + DATA + b"tail"


def test_a_kept_blob_changed_in_place_is_a_miss(tmp_path: Path) -> None:
    cache, holder, output = _held_archive(tmp_path)
    holder.keep()
    with open(output, "r+b") as f:  # the user edits the output, which the cache shares
        f.seek(len(HEADER) + 10)
        f.write(b"?")
    assert cache.get(DIGEST) is None
    assert _entries(cache) == [] and _extents(cache) == [] and _temps(cache) == []
    holder.record(DIGEST, len(HEADER), len(DATA))
    output.write_bytes(HEADER)  # truncated
    assert cache.get(DIGEST) is None and _extents(cache) == [] and _temps(cache) == []


@pytest.mark.parametrize("keep_blobs", [True, False])
def test_a_failed_archive_leaves_its_verified_blobs_as_entries(keep_blobs: bool, tmp_path: Path) -> None:
    cache, holder, output = _held_archive(tmp_path)
    holder.release(keep_blobs)
    assert os.listdir(cache.root / "held") == [] and _extents(cache) == [] and _temps(cache) == []
    assert _entries(cache) == ([DIGEST.split(":")[1]] if keep_blobs else [])
    assert cache.read(DIGEST) == (DATA if keep_blobs else None)
    assert output.exists()  # the caller's file: the caller removes it


@pytest.mark.parametrize("fails", [False, True])
def test_an_output_written_under_the_caches_hold_keeps_its_recorded_blobs_or_makes_entries_of_them(
        fails: bool, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    with contextlib.suppress(ValueError), create(output, hold=cache) as out:
        assert out.held and len(os.listdir(cache.root / "held")) == 2  # held (and marked) before any byte
        write_at(out.fd, HEADER + DATA, 0)
        out.record(DIGEST, len(HEADER), len(DATA))
        if fails:
            raise ValueError("a later layer failed")
    if fails:  # the verified blob became an entry, and the cache let go of the file
        assert os.listdir(cache.root / "held") == [] and _entries(cache) == [DIGEST.split(":")[1]]
    else:  # the blob stays where it lies (no copy) until a pull needs it
        assert len(os.listdir(cache.root / "held")) == 1 and _entries(cache) == []
        assert _extents(cache) == [DIGEST.split(":")[1]]
    assert cache.get(DIGEST, len(DATA)) == cache.path(DIGEST) and cache.read(DIGEST) == DATA
    assert _extents(cache) == [] and output.read_bytes() == HEADER + DATA


def test_an_archive_left_marked_by_a_dead_process_is_removed_after_a_day(tmp_path: Path) -> None:
    cache, dead, _ = _held_archive(tmp_path)
    other = tmp_path / "other.tar"
    other.write_bytes(b"x")
    kept, fresh = cache.hold(other), cache.hold(other)
    assert kept is not None and fresh is not None
    kept.record("sha256:" + "0" * 64, 0, 1)
    kept.keep()
    day_old = (time.time() - 3 * 24 * 3600,) * 2
    for path in (dead.path, dead.path.with_name(dead.name + ".writing"), kept.path):
        os.utime(path, day_old)  # `kept` shares its inode with `other`, so `other` is old too
    BlobCache(cache.root)
    assert sorted(os.listdir(cache.root / "held")) == sorted([kept.name, fresh.name, fresh.name + ".writing"])
    assert cache.get(DIGEST) is None and _extents(cache) == ["0" * 64]  # the dead one's extent missed


def test_an_archive_with_no_blob_in_it_is_not_kept(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    output.write_bytes(b"x")
    holder = cache.hold(output)
    assert holder is not None and len(os.listdir(cache.root / "held")) == 2
    holder.keep()  # every layer came from an entry: nothing to keep the file for
    assert os.listdir(cache.root / "held") == [] and output.read_bytes() == b"x"


def test_an_archive_on_another_filesystem_is_not_held(tmp_path: Path) -> None:
    require(Path("/dev/shm").is_dir(), "no /dev/shm (a tmpfs, another filesystem than the test's)")
    cache = BlobCache(tmp_path / "cache")
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as elsewhere:
        require(os.stat(elsewhere.name).st_dev != os.stat(cache.root).st_dev, "/dev/shm is on the test's filesystem")
        assert cache.hold(Path(elsewhere.name)) is None
    assert os.listdir(cache.root / "held") == []
