"""The static discovery document the arvados-python-client sdist ships, found without committing a copy.

Taken from `../shared/arvados/arvados-v1-discovery-<version>.json` beside the project when that
copy is for the installed client's version; otherwise from the sdist of that version, fetched once
with `pip download` into a cache directory ($WES_ARVADOS_TEST_CACHE, else
~/.cache/wes-arvados-tests) and kept there.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Dict

SHARED = Path(__file__).resolve().parents[3] / "shared" / "arvados"
DOCUMENT = "arvados-v1-discovery.json"


def client_version() -> str:
    """The installed arvados-python-client's version."""
    return metadata.version("arvados-python-client")


def cache_dir() -> Path:
    """Where the document fetched from the sdist is kept between runs."""
    base = os.environ.get("WES_ARVADOS_TEST_CACHE") or Path.home() / ".cache" / "wes-arvados-tests"
    return Path(base) / "arvados"


def _from_sdist(version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", f"arvados-python-client=={version}",
                        "--no-deps", "--no-binary", ":all:", "--dest", tmp], check=True, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sdist = next(Path(tmp).glob("arvados*python*client-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/" + DOCUMENT))
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
    json.loads(data)  # refuse to cache something that is not JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # other test runs may fetch the same file at the same time


@functools.lru_cache(maxsize=None)
def static_document(version: str = "") -> Dict[str, Any]:
    """The sdist's discovery document for `version` (default: the installed client's)."""
    version = version or client_version()
    shared = SHARED / f"arvados-v1-discovery-{version}.json"
    if shared.is_file():
        return json.loads(shared.read_text())
    cached = cache_dir() / f"arvados-v1-discovery-{version}.json"
    if not cached.is_file():
        _from_sdist(version, cached)
    return json.loads(cached.read_text())
