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
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Dict, Iterator

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What a process's file is given up front: prometheus_client's first size, which the few labels of a supervisor or
# a pull never fill (it doubles a full file); a web worker, which counts by route and status, gets WORKER_BYTES.
RESERVED_BYTES = 1 << 16
WORKER_BYTES = 1 << 20
_FILE_KINDS = ("counter", "histogram")  # the file of each metric type this server has


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
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        for metric in _OWN:
            registry.register(metric)
    registry.register(RunsByState(state_counts))
    return bytes(generate_latest(registry))
