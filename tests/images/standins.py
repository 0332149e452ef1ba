"""Local stand-ins for the four Docker Hub images the CWL conformance suite's `docker` tests pull.

The machine has no way to Docker Hub, so the tests build look-alikes from what is installed
here and push them to a loopback registry under the names the suite uses:

- debian:stable-slim: the files of a few Essential Debian packages and their `Depends`
  closure, as `dpkg` lists them, trimmed as the real slim image is (no docs, man pages, locales);
- python:3-slim: that layer plus one with the `python3` package's closure, python on PATH;
- alpine:latest: the static busybox with a link per applet;
- bash:4.4: that plus bash and the shared libraries `ldd` names, behind the real image's entrypoint.

Only the host's files go in, so building needs no network and takes seconds; entries are
sorted and their mtimes fixed (builder.tar_bytes), so one machine always gets the same digests.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

from .builder import (
    BUSYBOX,
    PATH_ENV,
    Directory,
    Entry,
    File,
    Image,
    Layer,
    RegistryClient,
    Symlink,
    build_image,
    busybox_rootfs_layer,
    layer,
    push,
)

STANDINS: Dict[str, str] = {
    "docker.io/debian:stable-slim": "library/debian:stable-slim",
    "docker.io/python:3-slim": "library/python:3-slim",
    "docker.io/bash:4.4": "library/bash:4.4",
    "docker.io/alpine:latest": "library/alpine:latest",
}

# The Essential packages the conformance tools call (sh, cat, sort, rev, tar, awk...); the real
# image has dpkg, apt and perl-base too, which no tool uses and which would double the size.
DEBIAN_PACKAGES = ("base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils",
                   "diffutils", "findutils", "grep", "gzip", "hostname", "libc-bin", "mawk", "ncurses-base",
                   "sed", "tar", "util-linux")
PYTHON_PACKAGES = ("python3",)
ARCHITECTURE = "amd64"
LABEL = "org.wes-arvados.test.standin"

# What debuerreotype's slim images exclude from every package (its dpkg path-exclude rules).
_SLIM_EXCLUDED = re.compile(r"usr/share/(doc|info|groff|linda|lintian|locale|man)/")
_SLIM_KEPT = re.compile(r"usr/share/doc/[^/]+/copyright|usr/share/locale/locale\.alias")

# docker-library/bash's docker-entrypoint.sh: the conformance test `docker_entrypoint` runs
# `-c "echo 'moo' > cow"` as the command, which only works through it.
BASH_ENTRYPOINT = b"""#!/usr/bin/env bash
set -Eeuo pipefail

# first arg is `-f` or `--some-option`
# or there are no args
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
\t# docker run bash -c 'echo hi'
\texec bash "$@"
fi

exec "$@"
"""


class StandinError(RuntimeError):
    """The host cannot provide what a stand-in needs (a package, a tool, the architecture)."""


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StandinError(f"{' '.join(cmd)} failed: {getattr(exc, 'stderr', '') or exc}") from exc


# ------------------------------------------------------------------------------------------ dpkg


@dataclass(frozen=True)
class Package:
    """An installed Debian package: the name `dpkg -L` takes, what it provides, what it needs."""

    name: str
    provides: Tuple[str, ...]
    depends: Tuple[Tuple[str, ...], ...]  # each entry: alternatives, any one of which satisfies it


def _relation(field: str) -> List[Tuple[str, ...]]:
    """`a (>= 1) | b, c:any` -> [("a", "b"), ("c",)]: names only, versions and arch qualifiers dropped."""
    return [tuple(alt.split()[0].split(":")[0] for alt in group.split("|"))
            for group in field.split(",") if group.strip()]


@functools.lru_cache(maxsize=None)
def installed_packages() -> Dict[str, Package]:
    """The host's installed packages of the image architecture (or `all`), by package name."""
    fmt = "${db:Status-Abbrev}\t${Architecture}\t${binary:Package}\t${Package}\t${Provides}\t${Pre-Depends}\t" \
          "${Depends}\n"
    packages: Dict[str, Package] = {}
    for line in _run("dpkg-query", "-W", "-f", fmt).splitlines():
        status, arch, binary, name, provides, pre_depends, depends = line.split("\t")
        if status.startswith("ii") and arch in (ARCHITECTURE, "all"):
            packages[name] = Package(binary, tuple(p[0] for p in _relation(provides)),
                                     tuple(_relation(pre_depends) + _relation(depends)))
    return packages


def package_closure(roots: Iterable[str]) -> Set[str]:
    """`roots` and, recursively, the installed packages their Depends and Pre-Depends name."""
    installed = installed_packages()
    providers: Dict[str, List[str]] = {}
    for name in sorted(installed):
        for virtual in installed[name].provides:
            providers.setdefault(virtual, []).append(name)
    chosen: Set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in chosen:
            continue
        if name not in installed:
            raise StandinError(f"package {name} is not installed (apt-get install {name})")
        chosen.add(name)
        for group in installed[name].depends:
            candidates = [c for alt in group for c in ([alt] if alt in installed else providers.get(alt, []))]
            if not candidates:
                raise StandinError(f"{name} depends on {' | '.join(group)}, which is not installed")
            if not chosen.intersection(candidates):
                todo.append(candidates[0])
    return chosen


# ------------------------------------------------------------------------------------------ files


@functools.lru_cache(maxsize=None)
def _canonical(path: str) -> str:
    """The layer path of host `path`: its directory resolved (/bin/sh -> usr/bin/sh on merged /usr)."""
    head, name = os.path.split(path)
    return os.path.join(os.path.realpath(head), name).strip("/")


def host_entries(paths: Iterable[str]) -> Dict[str, Entry]:
    """Layer entries for host `paths` (files, links, directories as they are here), slimmed.

    A path reached through a symlinked directory is stored at its real place, with the link
    itself as an entry, so /bin -> usr/bin survives and no entry hides below a link.
    """
    entries: Dict[str, Entry] = {}
    for path in paths:
        parts = path.rstrip("/").split("/")
        for i in range(2, len(parts) + 1):
            prefix = "/".join(parts[:i])
            key = _canonical(prefix)
            if not key or key in entries or (_SLIM_EXCLUDED.match(key) and not _SLIM_KEPT.fullmatch(key)):
                continue
            try:
                info = os.lstat(prefix)
            except FileNotFoundError:  # a conffile the admin deleted, or a diverted path
                break
            if os.path.islink(prefix):
                entries[key] = Symlink(os.readlink(prefix))
            elif i == len(parts):
                mode = info.st_mode & 0o7777
                entries[key] = Directory(mode) if os.path.isdir(prefix) else File(Path(prefix).read_bytes(), mode)
    return entries


def package_entries(packages: Iterable[str]) -> Dict[str, Entry]:
    """Entries for every file `dpkg -L` lists for `packages` (names from `installed_packages`)."""
    installed = installed_packages()
    listing = _run("dpkg-query", "-L", *sorted(installed[name].name for name in packages))
    # Lines such as "package diverts others to: /bin/sh.distrib" are not paths.
    return host_entries(sorted({line for line in listing.splitlines() if line.startswith("/")}))


def alternative_links(entries: Mapping[str, Entry], root: Path = Path("/var/lib/dpkg/alternatives")) -> Dict[str, Entry]:
    """The update-alternatives links (/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk) that
    `entries` can serve, since postinst scripts make them and `dpkg -L` does not list them.

    The host's choice wins when the image has it, else the highest priority the image has.
    """
    links: Dict[str, Entry] = {}
    for state in sorted(root.iterdir()) if root.is_dir() else ():
        lines = state.read_text().split("\n")
        master, slaves = lines[1], []
        i = 2
        while lines[i]:
            slaves.append((lines[i], lines[i + 1]))
            i += 2
        choices = []
        i += 1
        while i + 1 < len(lines) and lines[i]:
            target, priority = lines[i], int(lines[i + 1])
            choices.append((target, priority, lines[i + 2:i + 2 + len(slaves)]))
            i += 2 + len(slaves)
        usable = [c for c in choices if _canonical(c[0]) in entries]
        if not usable:
            continue
        current = os.path.realpath(f"/etc/alternatives/{state.name}")
        target, _, slave_targets = max(usable, key=lambda c: (os.path.realpath(c[0]) == current, c[1]))
        for (name, link), slave_target in [((state.name, master), target)] + list(zip(slaves, slave_targets)):
            if slave_target and _canonical(slave_target) in entries:
                links[_canonical(link)] = Symlink(f"/etc/alternatives/{name}")
                links[f"etc/alternatives/{name}"] = Symlink(slave_target)
    return links


def debian_entries(packages: Tuple[str, ...]) -> Dict[str, Entry]:
    """A runnable root filesystem of `packages`' closure, with the files their maintainer scripts make."""
    return dict(_debian_entries(packages))


@functools.lru_cache(maxsize=None)
def _debian_entries(packages: Tuple[str, ...]) -> Dict[str, Entry]:
    entries = package_entries(package_closure(packages))
    entries.update(alternative_links(entries))
    masters = Path("/usr/share/base-passwd")  # what update-passwd installs as /etc/passwd and /etc/group
    entries["etc/passwd"] = File((masters / "passwd.master").read_bytes())
    entries["etc/group"] = File((masters / "group.master").read_bytes())
    return entries


def shared_library_entries(binary: Path) -> Dict[str, Entry]:
    """The shared libraries and loader `binary` needs, at the paths `ldd` names, as regular files."""
    entries: Dict[str, Entry] = {}
    for line in _run("ldd", str(binary)).splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            path = Path(match.group(1))
            real = path.resolve()
            entries[str(path).lstrip("/")] = File(real.read_bytes(), real.stat().st_mode & 0o7777)
    return entries


# ------------------------------------------------------------------------------------------ layers


def _check_architecture() -> None:
    arch = _run("dpkg", "--print-architecture").strip()
    if arch != ARCHITECTURE:  # host binaries would not run on what the config claims
        raise StandinError(f"stand-ins are {ARCHITECTURE} images; this machine is {arch}")


@functools.lru_cache(maxsize=None)
def debian_layer() -> Layer:
    """The debian:stable-slim root filesystem."""
    _check_architecture()
    return layer(debian_entries(DEBIAN_PACKAGES), created_by="dpkg: " + " ".join(DEBIAN_PACKAGES))


@functools.lru_cache(maxsize=None)
def python_layer() -> Layer:
    """What python:3-slim adds to debian:stable-slim: python3's closure and /usr/local/bin/python{,3}."""
    base = debian_entries(DEBIAN_PACKAGES)
    full = debian_entries(DEBIAN_PACKAGES + PYTHON_PACKAGES)
    files = {path: entry for path, entry in full.items() if base.get(path) != entry}
    # The real image's python lives in /usr/local; tools and users call it by that path too.
    files["usr/local/bin/python3"] = Symlink("/usr/bin/python3")
    files["usr/local/bin/python"] = Symlink("python3")
    return layer(files, created_by="dpkg: " + " ".join(PYTHON_PACKAGES))


def _applets() -> Tuple[str, ...]:
    # `busybox` itself is in the list; as a link it would replace the binary.
    return tuple(sorted(set(_run(str(BUSYBOX), "--list").split()) - {"busybox", "bash"}))


@functools.lru_cache(maxsize=None)
def alpine_layers() -> Tuple[Layer, ...]:
    """alpine:latest: busybox with every applet in /bin, and /usr/bin/env for `#!/usr/bin/env` scripts."""
    return (busybox_rootfs_layer("gzip", _applets()),
            layer({"usr/bin/env": Symlink("/bin/busybox")}, created_by="ln -s /bin/busybox /usr/bin/env"))


@functools.lru_cache(maxsize=None)
def bash_layer() -> Layer:
    """What bash:4.4 adds to alpine: the host's bash with its libraries, and the image's entrypoint."""
    _check_architecture()
    bash = Path("/bin/bash").resolve()
    files = shared_library_entries(bash)
    files["bin/bash"] = File(bash.read_bytes(), 0o755)
    files["usr/local/bin/bash"] = Symlink("/bin/bash")
    files["usr/local/bin/docker-entrypoint.sh"] = File(BASH_ENTRYPOINT, 0o755)
    return layer(files, created_by="COPY bash docker-entrypoint.sh")


# ------------------------------------------------------------------------------------------ images


@functools.lru_cache(maxsize=None)
def build_standin(name: str) -> Image:
    """The linux/amd64 stand-in for `name`, one of STANDINS' keys (cached per process)."""
    labels = {LABEL: f"{name}, built from this machine's files"}
    if name == "docker.io/debian:stable-slim":
        return build_image([debian_layer()], cmd=["bash"], labels=labels)
    if name == "docker.io/python:3-slim":
        return build_image([debian_layer(), python_layer()], cmd=["python3"], env=(PATH_ENV, "LANG=C.UTF-8"),
                           labels=labels)
    if name == "docker.io/alpine:latest":
        return build_image(list(alpine_layers()), cmd=["/bin/sh"], labels=labels)
    if name == "docker.io/bash:4.4":
        return build_image([*alpine_layers(), bash_layer()], entrypoint=["docker-entrypoint.sh"], cmd=["bash"],
                           labels=labels)
    raise KeyError(f"no stand-in for {name}; there are: {', '.join(STANDINS)}")


def push_standins(registry_url: str, names: Iterable[str] = STANDINS, *,
                  credentials: Optional[Tuple[str, str]] = None) -> Dict[str, str]:
    """Push the stand-ins for `names` to the registry at `registry_url`; return name -> manifest digest."""
    client = RegistryClient(registry_url, credentials)
    digests: Dict[str, str] = {}
    for name in names:
        repo, tag = STANDINS[name].rsplit(":", 1)
        digests[name] = push(registry_url, repo, tag, build_standin(name), client=client)
    return digests


if __name__ == "__main__":  # python -m tests.images.standins http://127.0.0.1:5000
    for standin, digest in push_standins(sys.argv[1]).items():
        print(standin, digest)
