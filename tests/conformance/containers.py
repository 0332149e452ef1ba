"""The container world of the conformance suite: stand-in images, a registry mirroring docker.io, a Docker daemon.

The suite's tools name four Docker Hub images (docker.io/debian:stable-slim,
docker.io/python:3-slim, docker.io/bash:4.4, docker.io/alpine:latest), and
nothing here reaches Docker Hub.  `Containers` builds stand-ins for them from
this machine's Debian packages (tests/images/standins.py), pushes them to a
loopback registry as library/debian:stable-slim and so on, so that the registry
can serve as a mirror of docker.io, and starts a Docker daemon.

Plain cwltool gets the images the way a user of it would have them: already in
the daemon (`load_standins`: ``docker pull`` from the registry, then ``docker
tag`` to the docker.io name).  The WES server must get them itself: take them
out again first (`remove_standins`), then start it with `wes_server`, which
gives it ``--registry-mirror docker.io=<registry>`` and ``DOCKER_HOST``.

The daemon is a private dockerd when this process may start one (root, and
dockerd installed), so that nothing outlives `close`; otherwise the machine's
own.  There, images it already had under the four names are kept under a
backup name meanwhile and given their names back at `close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from ..images.docker import DockerDaemon
from ..images.registry import REGISTRY_BIN, Registry
from ..images.standins import STANDINS, push_standins
from ..wes import WesServer

DOCKER_HUB = "docker.io/"
BACKUP_REPOSITORY = "wes-conformance-kept/"  # where the machine's own images wait meanwhile


def local_name(name: str) -> str:
    """The name docker shows for a docker.io image: ``docker.io/debian:stable-slim`` -> ``debian:stable-slim``."""
    return name[len(DOCKER_HUB):] if name.startswith(DOCKER_HUB) else name


class Containers:
    """A registry holding the stand-ins, mirroring docker.io, and a Docker daemon; start, use, close."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.registry = Registry(workdir / "registry")
        # A private daemon keeps the stand-ins (which carry real Docker Hub names) away from the machine's own.
        private = DockerDaemon.unavailable_reason(reuse_system=False) is None
        self.daemon = DockerDaemon(workdir / "docker", reuse_system=not private)
        self.on_machine_daemon = False  # set once the machine's own daemon is in use
        self.kept: Dict[str, str] = {}  # a name the machine's daemon had -> its backup name

    @staticmethod
    def unavailable_reason() -> Optional[str]:
        """Why the container world cannot be had here, or None when it can."""
        if not REGISTRY_BIN.exists():
            return f"{REGISTRY_BIN} is missing (apt-get install docker-registry)"
        return DockerDaemon.unavailable_reason(reuse_system=True)

    def start(self) -> "Containers":
        """Start the registry, push the stand-ins to it, start the daemon; close what started if a step fails."""
        try:
            self.registry.start()
            push_standins(self.registry.url)
            self.daemon.start()
            self.on_machine_daemon = not self.daemon.owned
            if self.on_machine_daemon:
                self._keep_machine_images()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def mirror(self) -> str:
        """The ``--registry-mirror`` value: docker.io served by the loopback registry."""
        return f"docker.io={self.registry.url}"

    @property
    def env(self) -> Dict[str, str]:
        """The environment that points docker, cwltool and the server at the daemon."""
        return {"DOCKER_HOST": self.daemon.host}

    def server_args(self) -> List[str]:
        """Arguments of `wes-arvados serve` that make it resolve images through the mirror into the daemon."""
        return ["--registry-mirror", self.mirror, "--container-runtime", "docker"]

    def wes_server(self, state_dir: Path, **kwargs: Any) -> WesServer:
        """A (not yet started) server that pulls images through the mirror and runs containers in the daemon."""
        return WesServer(state_dir, extra_args=self.server_args(), env=self.env, **kwargs)

    def load_standins(self) -> None:
        """Put the stand-ins into the daemon under their docker.io names, as plain cwltool expects them."""
        for name, repository in STANDINS.items():
            remote = f"{self.registry.host}/{repository}"
            self.daemon.docker("pull", remote)
            self.daemon.docker("tag", remote, local_name(name))
            self.daemon.docker("rmi", remote)  # an untag: the image keeps its docker.io name

    def remove_standins(self) -> None:
        """Take the four names out of the daemon, so that whoever needs the images must pull them."""
        names = [local_name(name) for name in STANDINS]
        self.daemon.docker("rmi", "--force", *names, check=False)
        left = [n for n in names if self.daemon.docker("image", "inspect", n, check=False).returncode == 0]
        if left:
            raise RuntimeError(f"docker still has {', '.join(left)} after docker rmi")

    def _keep_machine_images(self) -> None:
        for name in STANDINS:
            local = local_name(name)
            if self.daemon.docker("image", "inspect", local, check=False).returncode == 0:
                backup = BACKUP_REPOSITORY + local
                self.daemon.docker("tag", local, backup)
                self.kept[local] = backup

    def close(self) -> None:
        """Stop the daemon (on the machine's own: remove the stand-ins, give its images back) and the registry."""
        try:
            if self.on_machine_daemon:
                self.daemon.docker("rmi", "--force", *(local_name(n) for n in STANDINS), check=False)
                for local, backup in self.kept.items():
                    self.daemon.docker("tag", backup, local, check=False)
                    self.daemon.docker("rmi", backup, check=False)
                self.kept.clear()
                self.on_machine_daemon = False
            self.daemon.stop()
        finally:
            self.registry.stop()

    def __enter__(self) -> "Containers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
