"""A pull that runs out of disk space fails clearly and leaves no partial entry in the blob cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import pytest

from wes_arvados.cli.main import main

from ..tmpfs import fill, tmpfs
from .builder import ImageFactory, push
from .registry import Registry


def _partial_entries(cache: Path) -> List[str]:
    """Entries being written, archives being held, and blobs whose bytes do not hash to their name."""
    left = [str(p) for p in (cache / "tmp").iterdir()] + [str(p) for p in (cache / "held").glob("*.writing")]
    for path in (cache / "blobs" / "sha256").iterdir():
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            left.append(str(path))
    return left


@pytest.mark.parametrize("room", [0.5, 1.5], ids=["while-downloading", "while-writing-the-archive"])
def test_a_pull_out_of_space_fails_leaves_no_partial_cache_entry_and_succeeds_once_space_returns(
        room: float, capsys: pytest.CaptureFixture, registry: Registry, repo: str, tmp_path: Path,
        image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    push(registry, repo, "1", image)
    reference = f"{registry.host}/{repo}:1"
    with tmpfs(tmp_path / "disk", "16m") as disk:
        cache, output = disk / "cache", disk / "out" / "image.tar"
        output.parent.mkdir()
        # Room for the manifest and config, and for half the layers, or for them but not the archive too.
        filler = fill(disk, leave=int(sum(layer.size for layer in image.layers) * room))
        status = main(["pull", reference, "-o", str(output), "--cache-dir", str(cache)])
        err = capsys.readouterr().err
        assert status != 0
        assert "No space left on device" in err and reference in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert _partial_entries(cache) == []
        assert list(output.parent.iterdir()) == []  # no half-written archive under any name

        filler.unlink()
        status = main(["pull", reference, "-o", str(output), "--cache-dir", str(cache)])
        err = capsys.readouterr().err
        assert status == 0, err
        assert output.stat().st_size > sum(layer.size for layer in image.layers)
        assert _partial_entries(cache) == []
