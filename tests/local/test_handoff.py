"""Run credentials go from the web worker to the supervisor over a socket, never through a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wes_arvados.images.registry import AuthConfig
from wes_arvados.local import handoff


def test_credentials_are_handed_over_once_and_never_written(tmp_path: Path) -> None:
    credentials = {"registry.lan:5000": AuthConfig("alice", "s3cret"), "docker.io": AuthConfig(identity_token="t")}
    handoff.offer(tmp_path, credentials)
    assert all(b"s3cret" not in p.read_bytes() for p in tmp_path.iterdir())
    assert handoff.collect(tmp_path) == credentials
    assert handoff.collect(tmp_path) is None  # offered once: the marker is gone


def test_a_run_without_credentials_collects_none(tmp_path: Path) -> None:
    assert handoff.collect(tmp_path) is None


def test_credentials_whose_keeper_is_gone_are_reported_lost(tmp_path: Path) -> None:
    handoff.name_file(tmp_path).write_text("wes-arvados-credentials-nobody-listens-here")
    with pytest.raises(handoff.CredentialsLost):
        handoff.collect(tmp_path, timeout=2)
    assert not handoff.name_file(tmp_path).exists()


def test_a_withdrawn_offer_is_not_collected(tmp_path: Path) -> None:
    handoff.offer(tmp_path, {"docker.io": AuthConfig("u", "p")})
    handoff.withdraw(tmp_path)
    assert handoff.collect(tmp_path) is None
