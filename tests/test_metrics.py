"""The metrics files of a server's processes: allocated up front, so a full disk never kills a process that counts;
those of processes that have exited folded into one archive, with the sums a scrape gives unchanged."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wes_arvados import metrics as wes_metrics

from .tmpfs import fill, tmpfs
from .wes import ROOT

COUNT = """
import os, sys
from wes_arvados import metrics
routes = int(sys.argv[1]) if len(sys.argv) > 1 else 12
for i in range(routes):  # by default labels enough to reach pages past the first, not to outgrow the file
    metrics.HTTP_REQUESTS.labels(f"/route/{i}", "GET", "200").inc()
    metrics.HTTP_SECONDS.labels(f"/route/{i}", "GET").observe(0.1 * i)
metrics.IMAGE_PULL_BYTES.inc(1000)
print(os.environ.get(metrics.MULTIPROC_ENV, "in memory"), flush=True)
if len(sys.argv) > 2:  # stay, counting on, until told to go
    sys.stdin.read()
"""


def _env(directory: Path) -> Dict[str, str]:
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}


def _count(directory: Path, routes: int = 12) -> subprocess.CompletedProcess:
    """A fresh process that counts into `directory` (as a server's processes do) and says where it counted."""
    return subprocess.run([sys.executable, "-c", COUNT, str(routes)], env=_env(directory),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def _scrape(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[Tuple[str, Tuple], float]:
    """What /metrics would give for `directory`: each sample's value by name and labels."""
    monkeypatch.setenv(wes_metrics.MULTIPROC_ENV, str(directory))
    text = wes_metrics.exposition(lambda: {}).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_process_counts_into_files_allocated_before_the_disk_filled_and_in_memory_on_a_full_one(
        tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        metrics = disk / "metrics"
        metrics.mkdir()
        done = _count(metrics)
        assert done.returncode == 0 and done.stdout.strip() == str(metrics), done.stderr
        counted = sorted(p.name for p in metrics.iterdir())
        assert [name.split("_")[0] for name in counted] == ["counter", "histogram"], counted
        for path in metrics.iterdir():  # every byte of each file is on disk: no page left to allocate later
            assert path.stat().st_blocks * 512 >= path.stat().st_size, path

        fill(disk)
        done = _count(metrics)
        assert done.returncode == 0, f"killed by signal {-done.returncode}: {done.stderr}"
        assert done.stdout.strip() == "in memory"
        assert sorted(p.name for p in metrics.iterdir()) == counted  # and no empty file to break a scrape


def test_files_of_exited_processes_fold_into_one_archive_and_every_sum_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    for routes in (3, 5, 7):
        assert _count(directory, routes).returncode == 0
    live = subprocess.Popen([sys.executable, "-c", COUNT, "2", "stay"], env=_env(directory), cwd=str(ROOT),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == str(directory)
        before = _scrape(directory, monkeypatch)
        assert before[("wes_arvados_image_pull_bytes_total", ())] == 4000
        assert wes_metrics.compact(str(directory), at_least=7) == 0  # 6 files of exited processes: too few for 7
        assert wes_metrics.compact(str(directory), at_least=1) == 6
        assert sorted(p.name for p in directory.glob("*.db")) == sorted(
            ["counter_archive.db", "histogram_archive.db", f"counter_{live.pid}.db", f"histogram_{live.pid}.db"])
        assert _scrape(directory, monkeypatch) == before

        for routes in (1, 9):  # more processes come and go; the archive takes them in on the next pass
            assert _count(directory, routes).returncode == 0
        grown = _scrape(directory, monkeypatch)
        assert grown[("wes_arvados_image_pull_bytes_total", ())] == 6000
        assert wes_metrics.compact(str(directory), at_least=1) == 4
        assert _scrape(directory, monkeypatch) == grown
        assert not [p for p in directory.iterdir() if p.name.endswith(".new")]
    finally:
        live.communicate("", timeout=60)
    assert wes_metrics.compact(str(directory), at_least=1) == 2  # the live one has gone too
    assert sorted(p.name for p in directory.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert _scrape(directory, monkeypatch) == grown


def test_scrapes_during_compactions_never_fail_nor_see_a_sum_go_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    seen, failures, done = [], [], threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                seen.append(_scrape(directory, monkeypatch).get(("wes_arvados_image_pull_bytes_total", ()), 0))
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                failures.append(repr(exc))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(8):
            for _ in range(2):
                assert _count(directory, 2).returncode == 0
            wes_metrics.compact(str(directory), at_least=1)
    finally:
        done.set()
        scraper.join(60)
    assert failures == []
    assert len(seen) > 8 and seen == sorted(seen) and seen[-1] == 16000, seen[-5:]


def test_a_compaction_with_no_room_on_the_disk_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        directory = disk / "metrics"
        directory.mkdir()
        for _ in range(3):
            assert _count(directory).returncode == 0
        before = _scrape(directory, monkeypatch)
        files = sorted(p.name for p in directory.iterdir())
        fill(disk)
        assert wes_metrics.compact(str(directory), at_least=1) == 0
        assert sorted(p.name for p in directory.iterdir()) == files
        assert _scrape(directory, monkeypatch) == before
        (disk / "filler").unlink()
        assert wes_metrics.compact(str(directory), at_least=1) == 6
        assert _scrape(directory, monkeypatch) == before


def test_the_servers_compactor_folds_files_as_they_come_until_stopped(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    compactor = wes_metrics.Compactor(str(directory), interval=0.05, at_least=2)
    worker = threading.Thread(target=compactor.run_forever)
    worker.start()
    try:
        for _ in range(3):
            assert _count(directory, 1).returncode == 0
            deadline = time.monotonic() + 30
            while sorted(p.name for p in directory.glob("*.db")) != ["counter_archive.db", "histogram_archive.db"]:
                assert time.monotonic() < deadline, sorted(p.name for p in directory.iterdir())
                time.sleep(0.05)
    finally:
        compactor.stop()
        worker.join(10)
    assert not worker.is_alive()
