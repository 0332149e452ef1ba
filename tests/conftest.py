"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .wes import WesClient, WesServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WesServer]:
    """A running server with a fresh state directory."""
    srv = WesServer(tmp_path / "state").start()
    try:
        yield srv
    finally:
        srv.stop()
        srv.kill_runs()


@pytest.fixture
def client(server: WesServer) -> WesClient:
    """A client of `server`."""
    return WesClient(server.url)
