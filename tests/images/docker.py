"""A docker daemon for tests: the machine's own when one answers, else a private `dockerd` we start.

Tests use it to check that what the project writes (docker-save archives) and what the
builder pushes are accepted by the real docker, never to reach a public registry.
A private daemon has its own data root, exec root, socket and containerd namespace,
no bridge and no iptables rules, so containers run with `--network none` only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Set

SYSTEM_SOCKET = Path("/var/run/docker.sock")


def answers(sock_path: Path, timeout: float = 5) -> bool:
    """Whether a docker daemon answers `GET /_ping` on the unix socket `sock_path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(sock_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
    except OSError:
        return False


class DockerDaemon:
    """The daemon tests talk to, through the docker CLI with its own config directory."""

    def __init__(self, workdir: Path, *, reuse_system: bool = True) -> None:
        self.workdir = workdir
        self.reuse_system = reuse_system
        self.socket = SYSTEM_SOCKET
        self.owned = False
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "dockerd.log"
        self.data_root = workdir / "data"
        self.exec_root: Optional[Path] = None
        self.loaded: Set[str] = set()

    @staticmethod
    def unavailable_reason(reuse_system: bool = True) -> Optional[str]:
        """Why no daemon can be had here, or None when one can."""
        if shutil.which("docker") is None:
            return "the docker CLI is missing (apt-get install docker.io)"
        if reuse_system and answers(SYSTEM_SOCKET):
            return None
        if shutil.which("dockerd") is None:
            return "dockerd is missing (apt-get install docker.io)"
        if os.geteuid() != 0:
            return "starting dockerd needs root"
        return None

    @property
    def host(self) -> str:
        """The DOCKER_HOST value for this daemon."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60) -> "DockerDaemon":
        """Use the system daemon if it answers (and reuse is allowed), else start a private one."""
        if self.reuse_system and answers(SYSTEM_SOCKET):
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        # containerd's sockets live under the exec root; a short /tmp path keeps them under 108 bytes.
        self.exec_root = Path(tempfile.mkdtemp(prefix="wes-dk-", dir="/tmp"))
        self.socket = self.exec_root / "docker.sock"
        namespace = f"wes-tests-{os.getpid()}"
        cmd = ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root / "exec"),
               "--host", self.host, "--pidfile", str(self.exec_root / "docker.pid"),
               "--bridge=none", "--iptables=false", "--ip-masq=false",
               "--containerd-namespace", namespace, "--containerd-plugins-namespace", namespace + "-plugins"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.owned = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if answers(self.socket):
                return self
            time.sleep(0.2)
        log_tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"dockerd did not start:\n{log_tail}")

    def docker(self, *args: str, input: Optional[bytes] = None, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess:
        """Run `docker ARGS` against this daemon; output is captured as text."""
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.workdir / "cli-config"))
        result = subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=timeout)
        out = subprocess.CompletedProcess(result.args, result.returncode,
                                          result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def load(self, tarball: Path) -> List[str]:
        """`docker load` a docker-save archive; return the loaded references (removed again at `stop`)."""
        out = self.docker("load", "--input", str(tarball)).stdout
        refs = [line.split(": ", 1)[1].strip() for line in out.splitlines() if line.startswith("Loaded image")]
        self.loaded.update(refs)
        return refs

    def track(self, ref: str) -> None:
        """Remove `ref` at `stop` (e.g. an image a test pulled)."""
        self.loaded.add(ref)

    def stop(self) -> None:
        """Remove the images tests loaded; stop a daemon we started and delete its directories."""
        if not self.owned:
            if self.loaded:
                self.docker("image", "rm", "--force", *sorted(self.loaded), check=False)
            self.loaded.clear()
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        for root in (self.data_root, self.exec_root):
            if root is None:
                continue
            with open("/proc/mounts") as mounts:  # a killed daemon may leave overlay mounts behind
                stale = [line.split()[1] for line in mounts if line.split()[1].startswith(str(root))]
            for mount in sorted(stale, reverse=True):
                subprocess.run(["umount", "-l", mount], check=False)
            shutil.rmtree(root, ignore_errors=True)
        self.owned = False
        self.loaded.clear()

    def __enter__(self) -> "DockerDaemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
