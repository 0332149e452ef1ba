"""Prometheus metrics, summed over every process of a server (prometheus_client's multiprocess mode).

`wes-arvados serve` gives its processes a fresh directory in
``PROMETHEUS_MULTIPROC_DIR`` (``<state dir>/metrics``) before any of them
imports prometheus_client: the web workers, the background work, run supervisors and
image pulls each count into their own files there, and ``/metrics``
(`exposition`) adds them up. A process with no such directory (the ``pull``
command, a test's app) counts in memory. Runs by state are read from the
backend when scraped, not counted.

Counters and histograms only: they sum correctly across processes, dead ones
included, where a gauge would need a mode per metric.

prometheus_client maps each process's files as sparse files; a page first written
when the disk is full kills the process with SIGBUS. So each process allocates its
files on disk before it counts anything (`reserve_files`), and one that finds no
room counts in memory instead: its counts are missing from /metrics, nothing dies.

Every run starts processes of its own, each with its files (a quarter of a MiB a
run); a scrape reads them all. `Compactor`, beside the web workers, folds the files
of processes that have exited into one per kind (``counter_archive.db``…) and
removes them, so the directory holds the live processes and one archive: the sums
a scrape gives do not change. A lock keeps a scrape from reading while files are
swapped.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import sys
import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, DefaultDict, Dict, Iterator, List, Optional

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What a process's file is given up front: prometheus_client's first size, which the few labels of a supervisor or
# a pull never fill (it doubles a full file); a web worker, which counts by route and status, gets WORKER_BYTES.
RESERVED_BYTES = 1 << 16
WORKER_BYTES = 1 << 20
_FILE_KINDS = ("counter", "histogram")  # the file of each metric type this server has
ARCHIVE = "archive"  # `<kind>_archive.db`: what processes that have exited counted
LOCK_FILE = ".lock"  # shared by scrapes, exclusive while `compact` swaps files
COMPACT_AFTER = 32  # files of exited processes that make a compaction worth it
COMPACT_INTERVAL = 60.0

log = logging.getLogger(__name__)


def reserve_files(directory: str, pid: int, size: int = RESERVED_BYTES) -> bool:
    """Allocate the files process `pid` counts into, so counting never needs new space; False if there is no room."""
    created = []
    try:
        for kind in _FILE_KINDS:
            path = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(path):
                created.append(path)
            with open(path, "a+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, max(size, os.fstat(fh.fileno()).st_size))
    except OSError:
        for path in created:  # an empty file would break every scrape
            try:
                os.unlink(path)
            except OSError:
                pass
        return False
    return True


if os.environ.get(MULTIPROC_ENV) and not reserve_files(os.environ[MULTIPROC_ENV], os.getpid()) \
        and "prometheus_client" not in sys.modules:
    del os.environ[MULTIPROC_ENV]  # before prometheus_client reads it: count in memory rather than die of SIGBUS

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.mmap_dict import MmapedDict  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HTTP_REQUESTS = Counter("wes_arvados_http_requests_total",
                        "HTTP requests answered, by OpenAPI route, method and status",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("wes_arvados_http_request_duration_seconds",
                         "Time to answer an HTTP request, by OpenAPI route and method", ["route", "method"])
IMAGE_PULLS = Counter("wes_arvados_image_pulls_total",
                      "Images made ready for runs or the pull service, by outcome: pulled (from a registry), "
                      "present (the store had it), failed", ["outcome"])
IMAGE_PULL_BYTES = Counter("wes_arvados_image_pull_bytes_total", "Bytes of image blobs downloaded from registries")
IMAGE_PULL_SECONDS = Histogram("wes_arvados_image_pull_duration_seconds",
                               "Time to make an image ready, registry check to stored, by outcome", ["outcome"],
                               buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf")))
IMAGE_CACHE_HITS = Counter("wes_arvados_image_cache_hits_total",
                           "Images made ready without a byte from the registry: in the store already, or every "
                           "blob in the blob cache")
KEEP_BYTES_WRITTEN = Counter("wes_arvados_keep_bytes_written_total", "Bytes of image archives written to Keep")
KEEP_BYTES_DEDUPLICATED = Counter("wes_arvados_keep_bytes_deduplicated_total",
                                  "Bytes of image layers not written to Keep because it held them already")
_OWN = (HTTP_REQUESTS, HTTP_SECONDS, IMAGE_PULLS, IMAGE_PULL_BYTES, IMAGE_PULL_SECONDS, IMAGE_CACHE_HITS,
        KEEP_BYTES_WRITTEN, KEEP_BYTES_DEDUPLICATED)


class RunsByState:
    """A collector reading the backend's run counts by WES state at each scrape."""

    def __init__(self, state_counts: Callable[[], Dict[str, int]]) -> None:
        self.state_counts = state_counts

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per state; none when the backend cannot count (e.g. no token on Arvados)."""
        family = GaugeMetricFamily("wes_arvados_runs", "Runs by WES state", labels=["state"])
        try:
            counts = self.state_counts()
        except Exception:  # noqa: BLE001 - a scrape must not fail for it
            counts = {}
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family


def exposition(state_counts: Callable[[], Dict[str, int]]) -> bytes:
    """The text a scrape of /metrics gets: every process's counters, and the runs by state."""
    registry = CollectorRegistry()
    registry.register(RunsByState(state_counts))
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        for metric in _OWN:
            registry.register(metric)
        return bytes(generate_latest(registry))
    MultiProcessCollector(registry)
    with _locked(directory, fcntl.LOCK_SH):
        return bytes(generate_latest(registry))


@contextmanager
def _locked(directory: str, operation: int) -> Iterator[None]:
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def _exited(directory: str) -> Dict[str, List[str]]:
    """Per kind, the files of processes that no longer exist (by the pid in their names)."""
    found: Dict[str, List[str]] = {}
    for kind in _FILE_KINDS:
        for path in glob.glob(os.path.join(directory, f"{kind}_*.db")):
            pid = _pid(kind, path)
            if pid > 0 and not _exists(pid):
                found.setdefault(kind, []).append(path)
    return found


def _pid(kind: str, path: str) -> int:
    """The pid in a process's file name (`<kind>_<pid>.db`); 0 for the archive."""
    name = os.path.basename(path)[len(kind) + 1:-len(".db")]
    return int(name) if name.isdigit() else 0


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has that pid now
        return True
    return True


def compact(directory: str, at_least: int = COMPACT_AFTER) -> int:
    """Fold the files of exited processes into the archive of their kind and remove them; how many were removed.

    Nothing is done for fewer than `at_least` such files, nor when the disk
    has no room for the new archive (allocated before it is written, as
    `reserve_files` does). It holds the directory's lock throughout: one
    compaction at a time (servers may share a state directory), and no scrape
    between an archive's swap and its sources' removal.
    """
    with _locked(directory, fcntl.LOCK_EX):
        exited = _exited(directory)
        if sum(len(files) for files in exited.values()) < at_least:
            return 0
        removed = 0
        for kind, files in exited.items():
            folded = _fold(directory, kind, files)
            if folded is None:
                break
            removed += folded
        return removed


def _fold(directory: str, kind: str, files: List[str]) -> Optional[int]:
    """Merge `files` into the archive of `kind` and remove them; how many, or None if there is no room (nothing
    changed then)."""
    archive = os.path.join(directory, f"{kind}_{ARCHIVE}.db")
    sources = ([archive] if os.path.exists(archive) else []) + files
    totals: DefaultDict[str, float] = defaultdict(float)
    needed = 0  # what the sources use, more than the merged archive needs
    for path in sources:
        used = 8  # the header
        for key, value, _timestamp, position in MmapedDict.read_all_values_from_file(path):
            totals[key] += value
            used = max(used, position + 16)  # a value is two doubles
        needed += used
    new = os.path.join(directory, f".{kind}_{ARCHIVE}.new")  # not *.db: no scrape reads it
    try:
        with open(new, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, max(RESERVED_BYTES, needed))
        merged = MmapedDict(new)
        try:
            for key, value in totals.items():
                merged.write_value(key, value, 0.0)
        finally:
            merged.close()
    except OSError as exc:
        log.warning("metrics not compacted: %s", exc)
        _unlink(new)
        return None
    if any(_exists(_pid(kind, path)) for path in files):  # a process reused one of the pids: it counts on there
        _unlink(new)
        return 0
    os.replace(new, archive)
    for path in files:
        _unlink(path)
    return len(files)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Compactor:
    """The server's background work that keeps its metrics directory small (`compact` every minute)."""

    name = "metrics-compactor"

    def __init__(self, directory: str, interval: float = COMPACT_INTERVAL, at_least: int = COMPACT_AFTER) -> None:
        self.directory = directory
        self.interval = interval
        self.at_least = at_least
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        """Compact until `stop` is called."""
        while not self.stopping.wait(self.interval):
            try:
                compact(self.directory, self.at_least)
            except Exception:  # noqa: BLE001 - counting must not stop the server; the next pass retries
                log.exception("compacting the metrics directory failed")

    def stop(self) -> None:
        """Ask `run_forever` to return."""
        self.stopping.set()
