"""The metrics files of a server's processes: allocated up front, so a full disk never kills a process that counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .tmpfs import fill, tmpfs
from .wes import ROOT

COUNT = """
import os, sys
from wes_arvados import metrics
for i in range(12):  # labels enough to reach pages past the first, not to outgrow the file
    metrics.HTTP_REQUESTS.labels(f"/route/{i}", "GET", "200").inc()
    metrics.HTTP_SECONDS.labels(f"/route/{i}", "GET").observe(0.1)
print(os.environ.get(metrics.MULTIPROC_ENV, "in memory"))
"""


def _count(directory: Path) -> subprocess.CompletedProcess:
    """A fresh process that counts into `directory` (as a server's processes do) and says where it counted."""
    return subprocess.run([sys.executable, "-c", COUNT], env={"PROMETHEUS_MULTIPROC_DIR": str(directory),
                                                             "PATH": "/usr/bin:/bin"},
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


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
