"""The repository tracks sources only: no virtualenv, no bytecode, no large generated file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
# Larger tracked files must be deliberate test data, named here.
MAX_BYTES = 1 << 20
DELIBERATE_LARGE: List[str] = []


def _tracked() -> List[str]:
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in done.stdout.decode().split("\0") if name]


def _is_virtualenv_file(name: str) -> bool:
    parts = Path(name).parts
    return name.endswith("pyvenv.cfg") or any(
        part.startswith((".venv", "venv")) or part in ("site-packages", "__pycache__", ".eggs")
        or part.endswith(".egg-info") for part in parts)


def test_no_virtualenv_bytecode_or_build_output_is_tracked() -> None:
    offending = [name for name in _tracked() if _is_virtualenv_file(name) or name.endswith((".pyc", ".pyo"))]
    assert offending == [], f"generated files are tracked: {offending[:10]}"


def test_no_large_file_is_tracked_unless_it_is_deliberate_test_data() -> None:
    large = [name for name in _tracked() if name not in DELIBERATE_LARGE
             and (ROOT / name).is_file() and (ROOT / name).stat().st_size > MAX_BYTES]
    assert large == [], f"files over {MAX_BYTES} bytes are tracked: {large}"


def test_the_hygiene_check_recognizes_what_it_forbids() -> None:
    assert _is_virtualenv_file(".venv-peers/bin/python3")
    assert _is_virtualenv_file("wes_arvados/__pycache__/cli.cpython-311.pyc")
    assert _is_virtualenv_file("wes_arvados.egg-info/PKG-INFO")
    assert not _is_virtualenv_file("wes_arvados/local/runner.py")
