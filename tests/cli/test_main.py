"""The `wes-arvados` command line: sub-commands, flags into the one Config, and exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from wes_arvados.cli import main as cli


def test_serve_flags_fill_the_images_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: Dict[str, Any] = {}
    monkeypatch.setattr("wes_arvados.web.server.serve", lambda config: seen.setdefault("config", config) and 0)
    cli.main(["serve", "--state-dir", str(tmp_path), "--registry-mirror", "docker.io=http://127.0.0.1:5000",
              "--registry-mirror", "docker.io=http://127.0.0.1:5001", "--deny-image", "x/*",
              "--container-runtime", "none", "--no-image-resolve", "--pull-jobs", "2"])
    images = seen["config"].images
    assert images.mirrors == ["docker.io=http://127.0.0.1:5000", "docker.io=http://127.0.0.1:5001"]
    assert (images.deny, images.runtime, images.resolve, images.pull_jobs) == (["x/*"], "none", False, 2)


def test_a_bad_setting_is_exit_status_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["serve", "--state-dir", str(tmp_path), "--registry-mirror", "docker.io"]) == 2
    assert "images.mirrors" in capsys.readouterr().err


def test_every_sub_command_is_reachable_from_the_installed_entry_point() -> None:
    for command in ("serve", "pull", "cache"):
        done = subprocess.run([sys.executable, "-m", "wes_arvados", command, "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and f"wes-arvados {command}" in done.stdout, done.stderr
    unknown = subprocess.run([sys.executable, "-m", "wes_arvados", "nope"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
