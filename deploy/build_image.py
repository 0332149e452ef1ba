"""Build the server's image from the Dockerfile, offline: a debootstrap base and a pip wheelhouse.

Usage (as root, on Debian, with docker and debootstrap; DOCKER_HOST picks the daemon)::

    python3 deploy/build_image.py [--tag wes-arvados:VERSION] [--suite bookworm]

1. ``build/image/rootfs``: a minimal Debian of the host's release (debootstrap, about a
   minute, from the Debian mirror apt uses) with Python, Node.js (cwltool evaluates CWL
   expressions with it), libcurl (pycurl) and tini; made once, then reused.
2. ``wes-arvados-base:<suite>``: that rootfs imported into the daemon.
3. ``build/image/context/wheels``: the project and every package it needs, as wheels made
   here with ``pip wheel`` (so the build reaches no registry), for the base's Python.
4. ``docker build --network none`` with the OCI labels (version, revision, source).

It prints the image's name and size.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "image"
PACKAGES = ["python3", "python3-venv", "ca-certificates", "nodejs", "libcurl4", "tini"]
MIRROR = "http://deb.debian.org/debian"


def _run(cmd: List[str], **kw: object) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def rootfs(suite: str) -> Path:
    """The base's root filesystem, made with debootstrap unless it is there already."""
    target = WORK / f"rootfs-{suite}"
    if (target / "usr" / "bin" / "python3").exists():
        return target
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(partial), MIRROR])
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(partial / leftover, ignore_errors=True)
    os.replace(partial, target)
    return target


def base_image(suite: str, tree: Path) -> str:
    """The rootfs imported as ``wes-arvados-base:<suite>`` (again each time: the import is a few seconds)."""
    name = f"wes-arvados-base:{suite}"
    tar = subprocess.Popen(["tar", "-C", str(tree), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    _run(["docker", "import", "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", "-", name], stdin=tar.stdout)
    if tar.wait() != 0:
        raise SystemExit("tar of the rootfs failed")
    return name


def wheelhouse(tree: Path) -> Path:
    """Wheels of the project (from this tree) and of everything it and its `server` extra need."""
    ours = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (tree / "usr" / "bin" / ours).exists():
        found = sorted(p.name for p in (tree / "usr" / "bin").glob("python3.*"))
        raise SystemExit(f"this is {ours}; the base has {', '.join(found)}: run with that Python so the wheels fit")
    wheels = WORK / "context" / "wheels"
    for old in wheels.glob("wes_arvados-*.whl"):
        old.unlink()  # always this tree's code
    wheels.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), f"{ROOT}[server]"])
    return wheels.parent


def version() -> str:
    """The project's version, from setup.cfg."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["version"]


def revision() -> str:
    """The commit the tree is at (with -dirty if it has changes), or unknown."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def build(tag: str, suite: str) -> str:
    """Every step; the image's tag."""
    tree = rootfs(suite)
    base = base_image(suite, tree)
    context = wheelhouse(tree)
    _run(["docker", "build", "--network", "none", "--tag", tag, "--file", str(ROOT / "Dockerfile"),
          "--build-arg", f"BASE={base}", "--build-arg", f"VERSION={version()}",
          "--build-arg", f"REVISION={revision()}", str(context)], env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return tag


def main(argv: List[str]) -> int:
    """Build, then print the image and its size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default=f"wes-arvados:{version()}")
    parser.add_argument("--suite", default="bookworm", help="the Debian release of the base (bookworm)")
    args = parser.parse_args(argv)
    tag = build(args.tag, args.suite)
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                          text=True, check=True).stdout.strip()
    print(f"{tag}: {int(size) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
