"""The package's dependencies: the client alone (`pip install .`) brings none of the server's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = {"gunicorn", "connexion", "flask", "arvados-cwl-runner", "arvados-python-client", "uvicorn-worker"}


def _would_install(tmp_path: Path, target: str) -> set:
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), target], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


def test_the_client_alone_installs_none_of_the_servers_packages(tmp_path: Path) -> None:
    client = _would_install(tmp_path, str(ROOT))
    assert {"wes-arvados", "cwltool", "urllib3"} <= client
    assert client.isdisjoint(SERVER_ONLY), sorted(client & SERVER_ONLY)
    server = _would_install(tmp_path, f"{ROOT}[server]")
    assert SERVER_ONLY <= server
