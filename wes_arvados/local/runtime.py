"""The local container runtime (Docker or Podman) that the local engine runs tools in, driven by its CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import ServerError
from ..images.errors import ImageError

# Seconds a `load` of a large image may take.
LOAD_TIMEOUT = 3600


class ContainerRuntimeError(ImageError, ServerError):
    """The container runtime is missing or failed: the server's fault (500), and an image could not be had."""

    def __init__(self, msg: str) -> None:
        ImageError.__init__(self, msg)


@dataclass(frozen=True)
class ContainerRuntime:
    """A runtime CLI: ``docker`` or ``podman``."""

    name: str
    executable: str

    def _run(self, args: List[str], timeout: float = 120, stdin: Optional[int] = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.executable, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=stdin if stdin is not None else subprocess.DEVNULL)

    def available(self) -> bool:
        """Whether its daemon (or podman itself) answers."""
        try:
            return self._run(["version"], timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def image_id(self, name: str) -> Optional[str]:
        """The ID (config digest) of the image the runtime has under `name`, or None."""
        result = self._run(["image", "inspect", "--format", "{{.Id}}", name])
        if result.returncode != 0:
            return None
        image_id = result.stdout.strip()
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}" if image_id else None

    def load(self, archive: Path) -> None:
        """Load a ``docker save`` archive (its RepoTags become the image's names)."""
        with open(archive, "rb") as src:
            try:
                result = self._run(["load"], timeout=LOAD_TIMEOUT, stdin=src.fileno())
            except subprocess.TimeoutExpired:
                raise ContainerRuntimeError(f"{self.name} load of {archive.name} took over {LOAD_TIMEOUT} s") from None
        if result.returncode != 0:
            detail = " ".join((result.stderr or result.stdout).split())
            raise ContainerRuntimeError(f"{self.name} load failed: {detail}")

    def tag(self, source: str, target: str) -> None:
        """Give the image `source` the name `target` too."""
        result = self._run(["tag", source, target])
        if result.returncode != 0:
            raise ContainerRuntimeError(f"{self.name} tag {source} {target} failed: {' '.join(result.stderr.split())}")


def detect_runtime(choice: str = "auto") -> Optional[ContainerRuntime]:
    """The runtime `choice` names (auto: docker, else podman) if its CLI is installed and answers, else None."""
    if choice == "none":
        return None
    names = ["docker", "podman"] if choice == "auto" else [choice]
    for name in names:
        executable = shutil.which(name, path=os.environ.get("PATH"))
        if executable is None:
            continue
        runtime = ContainerRuntime(name, executable)
        if runtime.available():
            return runtime
    return None
