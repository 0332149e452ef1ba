"""Fixtures: one Arvados double per session, with users `admin` (an admin) and `user`, and clients for it."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

from ..wes import require
from .discovery import SHARED
from .double import ArvadosDouble

HELLO_WORLD_TAR = SHARED / "hello-world-ManifestV2.tar"


@pytest.fixture(scope="session")
def arvados_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArvadosDouble]:
    """A started double; `arvados_double.users` has ("admin" and "user") -> (uuid, token)."""
    double = ArvadosDouble(tmp_path_factory.mktemp("arvados-double"))
    try:
        double.start()
    except Exception as error:  # e.g. the discovery document cannot be had: offline and no ../shared copy
        double.stop()
        require(False, f"the Arvados double cannot start: {error!r}")
    double.add_user("admin", admin=True)
    double.add_user("user")
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="session")
def arvados_client(arvados_double: ArvadosDouble) -> Callable[[str], Any]:
    """Builds an unmodified `arvados.api('v1')` client for a token (no process-wide settings touched)."""
    import arvados

    def build(token: str) -> Any:
        return arvados.api("v1", host=arvados_double.host, token=token, insecure=True)
    return build


@pytest.fixture(scope="session")
def hello_world_image() -> Dict[str, Any]:
    """The docker-save tar of hello-world from ../shared: its bytes, image id and creation time."""
    require(HELLO_WORLD_TAR.is_file(), f"{HELLO_WORLD_TAR} is missing")
    data = HELLO_WORLD_TAR.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        config_name = json.load(tar.extractfile("manifest.json"))[0]["Config"]  # type: ignore[arg-type]
        created = json.load(tar.extractfile(config_name))["created"]  # type: ignore[arg-type]
    return {"tar": data, "id": "sha256:" + Path(config_name).stem, "created": created}
