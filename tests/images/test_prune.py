"""Bounding the blob cache: least recently used first, nothing in use, nothing the cache does not own."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import List

import pytest

from wes_arvados.cli.main import main
from wes_arvados.config import load_config
from wes_arvados.errors import ConfigError
from wes_arvados.images.cache import BlobCache
from wes_arvados.images.prune import parse_size, prune, usage
from wes_arvados.images.pull import PullOptions, pull
from wes_arvados.images.reference import parse_normalized_named

from .builder import ImageFactory, push
from .registry import FaultProxy, Registry

DAY = 86400.0


def _blob(cache: BlobCache, size: int, seed: int, age_days: float = 0.0) -> str:
    """A verified entry of `size` bytes, last used `age_days` ago; its digest."""
    data = hashlib.sha256(bytes([seed])).digest() * (size // 32)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = cache.put(digest, data)
    if age_days:
        when = time.time() - age_days * DAY
        os.utime(path, (when, when))
    return digest


def _on_disk(path: Path) -> int:
    return path.stat().st_blocks * 512


def _tree(cache: BlobCache, sub: str) -> List[str]:
    return sorted(p.name for p in (cache.root / sub).rglob("*") if p.is_file())


def test_sizes_read_as_powers_of_1024() -> None:
    assert [parse_size(s) for s in ("0", "512", "4k", "500M", "20G", "20GB", "1.5TiB", " 2 g ")] == \
        [0, 512, 4096, 500 << 20, 20 << 30, 20 << 30, 3 << 39, 2 << 30]
    for bad in ("", "ten", "-1G", "5X", "1e9"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)


def test_the_least_recently_used_entries_go_first_until_the_cache_fits(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    oldest = _blob(cache, 64 << 10, 1, age_days=3)
    older = _blob(cache, 32 << 10, 2, age_days=2)
    old = _blob(cache, 16 << 10, 3, age_days=1)
    sizes = {d: _on_disk(cache.path(d)) for d in (oldest, older, old)}
    assert usage(cache) == sum(sizes.values())
    pruned = prune(cache, max_bytes=sizes[older] + sizes[old])
    assert (pruned.removed, pruned.freed, pruned.held, pruned.recent) == (1, sizes[oldest], sizes[older] + sizes[old], 0)
    assert _tree(cache, "blobs") == sorted(d.split(":")[1] for d in (older, old))
    pruned = prune(cache, max_bytes=sizes[old])
    assert (pruned.removed, pruned.held) == (1, sizes[old]) and cache.path(old).exists()
    assert prune(cache, max_bytes=0).held == 0 and _tree(cache, "blobs") == []


def test_what_was_used_within_the_grace_period_stays_whatever_the_size(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    fresh = _blob(cache, 16 << 10, 1)
    looked_up = _blob(cache, 16 << 10, 2, age_days=2)
    read = _blob(cache, 16 << 10, 3, age_days=2)
    forgotten = _blob(cache, 16 << 10, 4, age_days=2)
    assert cache.get(looked_up) is not None and cache.read(read) is not None  # both mark the entry used
    pruned = prune(cache, max_bytes=0)
    assert pruned.removed == 1 and _tree(cache, "blobs") == sorted(d.split(":")[1] for d in (fresh, looked_up, read))
    assert pruned.held == pruned.recent == usage(cache) > 0
    assert cache.path(forgotten).exists() is False
    assert prune(cache, max_bytes=0, grace=0).held == 0  # no grace: everything goes


def test_a_dry_run_says_what_would_go_and_removes_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    digests = [_blob(cache, 16 << 10, seed, age_days=1) for seed in range(3)]
    would = prune(cache, max_bytes=0, dry_run=True)
    assert would.removed == 3 and would.held == 0 and would.freed == sum(_on_disk(cache.path(d)) for d in digests)
    assert all(cache.path(d).exists() for d in digests)
    assert prune(cache, max_bytes=0) == would


def _age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def test_a_held_archive_goes_with_its_extents_once_no_output_links_it(fault_proxy: FaultProxy, registry: Registry,
                                                                       repo: str, tmp_path: Path,
                                                                       image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(3)
    push(registry, repo, "1", image)
    ref = f"{fault_proxy.host}/{repo}:1"
    cache = BlobCache(tmp_path / "cache")
    out = tmp_path / "out.tar"
    pull(parse_normalized_named(ref), out, PullOptions(cache_dir=cache.root, layers="compressed"))
    expected = out.read_bytes()
    [held] = os.listdir(cache.root / "held")
    _age(out, 2)
    # While the output exists the held archive is the user's file: it costs the cache nothing and stays.
    assert usage(cache) < _on_disk(out)
    assert prune(cache, max_bytes=0, grace=0).removed == 2 and _tree(cache, "blobs") == []  # manifest, config
    assert os.listdir(cache.root / "held") == [held] and len(_tree(cache, "extents")) == len(image.layers)
    size = _on_disk(out)
    out.unlink()
    pruned = prune(cache, max_bytes=0)  # two days old: the grace period does not keep it
    assert (pruned.removed, pruned.freed, pruned.held) == (1, size, 0)
    assert os.listdir(cache.root / "held") == [] and _tree(cache, "extents") == []
    assert all(cache.get(lay.digest) is None for lay in image.layers)
    # Nothing half-done: the next pull fetches what went, once, and writes the same bytes.
    fault_proxy.clear()
    pull(parse_normalized_named(ref), out, PullOptions(cache_dir=cache.root, layers="compressed"))
    assert out.read_bytes() == expected
    assert [fault_proxy.blob_gets(lay.digest) for lay in image.layers] == [1] * len(image.layers)


def test_an_archive_being_written_or_still_an_output_stays(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    output.write_bytes(b"x" * (64 << 10))
    holder = cache.hold(output)
    assert holder is not None
    holder.record("sha256:" + hashlib.sha256(b"x" * 512).hexdigest(), 0, 512)
    output.unlink()  # the cache's link is the only one now, but the writer has not finished
    _age(holder.path, 2)
    assert prune(cache, max_bytes=0, grace=0).removed == 0 and holder.path.exists()
    holder.keep()
    assert prune(cache, max_bytes=0, grace=0).removed == 1 and not holder.path.exists()
    assert _tree(cache, "extents") == []


def test_a_stored_archive_goes_with_its_record_once_the_output_is_gone(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    output.write_bytes(b"a" * (64 << 10))
    assert cache.store_archive("k" * 64, output)
    long_ago = time.time_ns() - int(2 * DAY * 1e9)
    os.utime(output, ns=(long_ago, long_ago))
    assert cache.archive("k" * 64) is None  # its mtime is part of what a lookup checks: changed, it is dropped
    assert cache.store_archive("k" * 64, output)
    assert cache.archive("k" * 64) is not None  # a lookup marks it used (its atime), and leaves its mtime
    assert cache.archive("k" * 64) is not None and output.stat().st_mtime_ns == long_ago
    assert prune(cache, max_bytes=0).removed == 0  # still the user's output, and just used
    output.unlink()
    assert prune(cache, max_bytes=0).removed == 0  # the cache's own now, but used within the hour
    assert prune(cache, max_bytes=0, grace=0).removed == 1
    assert os.listdir(cache.root / "archives") == [] and cache.archive("k" * 64) is None


def test_an_extent_whose_archive_is_gone_is_dropped(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    output = tmp_path / "out.tar"
    data = b"layer" * 1000
    output.write_bytes(data)
    holder = cache.hold(output)
    assert holder is not None
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    holder.record(digest, 0, len(data))
    holder.keep()
    os.unlink(holder.path)  # as a crash between the two removals would leave it
    prune(cache, max_bytes=1 << 30)
    assert _tree(cache, "extents") == []


def test_the_cache_prune_command(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    digests = [_blob(cache, 16 << 10, seed, age_days=1) for seed in range(2)]
    size = sum(_on_disk(cache.path(d)) for d in digests)
    args = ["cache", "prune", "--cache-dir", str(cache.root), "--json"]
    assert main(args + ["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cache_dir": str(cache.root), "dry_run": True, "removed": 2,
                                                   "freed": size, "held": 0, "recent": 0}
    assert main(args[:-1] + ["--max-size", "1G"]) == 0
    assert "removed 0 items" in capsys.readouterr().out and _tree(cache, "blobs") != []
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 2 and _tree(cache, "blobs") == []
    assert main(args + ["--max-size", "lots"]) == 2
    assert "--max-size: 'lots' is not a size" in capsys.readouterr().err
    assert main(["cache", "prune", "--cache-dir", str(tmp_path / "nothing")]) == 2
    assert "is not a blob cache" in capsys.readouterr().err


def test_the_server_setting_is_a_size(tmp_path: Path) -> None:
    config = load_config(None, {"images": {"cache_max_size": "20G"}}, environ={})
    assert config.images.cache_max_bytes == 20 << 30
    assert load_config(None, {}, environ={}).images.cache_max_bytes is None
    with pytest.raises(ConfigError, match="images.cache_max_size: 'most of it' is not a size"):
        load_config(None, {}, environ={"WES_ARVADOS_IMAGES_CACHE_MAX_SIZE": "most of it"})


def test_a_prune_right_after_a_pull_keeps_what_the_pull_used(fault_proxy: FaultProxy, registry: Registry, repo: str,
                                                             tmp_path: Path, image_factory: ImageFactory) -> None:
    image = image_factory.many_layers(3)
    push(registry, repo, "1", image)
    ref = f"{fault_proxy.host}/{repo}:1"
    cache = BlobCache(tmp_path / "cache")
    first = tmp_path / "first.tar"
    pull(parse_normalized_named(ref), first, PullOptions(cache_dir=cache.root))
    first.unlink()
    assert prune(cache, max_bytes=0).removed == 0  # the grace period keeps the blobs the pull just used
    fault_proxy.clear()
    result = pull(parse_normalized_named(ref), tmp_path / "again.tar", PullOptions(cache_dir=cache.root, layers="compressed"))
    assert result.downloaded == 0 and [fault_proxy.blob_gets(lay.digest) for lay in image.layers] == [0, 0, 0]


def test_idle_lock_files_go_and_locking_stays_exclusive(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    idle, held = (_blob(cache, 4096, seed) for seed in (1, 2))
    for digest in (idle, held):
        with cache.lock(digest):
            pass
    locks = cache.root / "locks" / "sha256"
    entered = threading.Event()
    with cache.lock(held):
        pruner = threading.Thread(target=prune, args=(cache, 1 << 30))
        pruner.start()
        pruner.join(10)
        assert not pruner.is_alive()  # a held lock is skipped, not waited for
        assert sorted(os.listdir(locks)) == [held.split(":")[1]]  # and stays

    # A locker that opened the file before it was removed, and a newcomer who made it again,
    # must still take turns: the first finds its file gone once it gets it, and waits for the newcomer's.
    path = locks / idle.split(":")[1]
    first = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(first, fcntl.LOCK_EX)

    def locker() -> None:
        with cache.lock(idle):
            entered.set()

    thread = threading.Thread(target=locker)
    thread.start()
    time.sleep(0.3)  # the thread has opened the file and waits on it
    os.unlink(path)
    newcomer = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(newcomer, fcntl.LOCK_EX)
    os.close(first)
    assert not entered.wait(0.5)  # its file is gone: it must wait for the newcomer's
    os.close(newcomer)
    assert entered.wait(10)
    thread.join()
