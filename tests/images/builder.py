"""Build Docker/OCI test images without docker, and push them with the distribution HTTP protocol.

Layers are deterministic tarballs (sorted, mtime fixed, owner 0:0) compressed with gzip,
zstd or nothing; configs and manifests are the bytes a registry stores, so their digests
are what a client must verify. `push` speaks the registry API itself (HEAD, POST upload,
monolithic PUT or chunked PATCH, manifest PUT) and answers Basic and Bearer challenges.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import random
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import zstandard

MTIME = 1704067200  # 2024-01-01T00:00:00Z, for every tar entry
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
IN_TOTO = "application/vnd.in-toto+json"
ALL_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "ash", "echo", "cat", "ls", "sleep", "true", "false", "env", "id", "mkdir", "rm", "cp",
                   "mv", "ln", "chmod", "touch", "wc", "head", "tail", "grep", "sed", "awk", "sort", "tr", "cut",
                   "printf", "test", "[", "pwd", "uname", "hostname", "date", "find", "xargs", "tee", "dd", "du",
                   "df", "ps", "kill", "seq", "stat", "which", "sha256sum", "md5sum", "expr", "readlink", "whoami")


def digest_of(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ layers


@dataclass(frozen=True)
class File:
    """A regular file of a layer."""

    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    """A symbolic link of a layer."""

    target: str


@dataclass(frozen=True)
class Directory:
    """A directory of a layer (parents of files are added on their own)."""

    mode: int = 0o755


Entry = Union[bytes, File, Symlink, Directory]


def tar_bytes(files: Mapping[str, Entry]) -> bytes:
    """A deterministic tar of `files` (path -> entry), with missing parent directories added."""
    entries: Dict[str, Entry] = {}
    for path, entry in files.items():
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Directory())
        entries[path] = entry
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            entry = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            data = None
            if isinstance(entry, Directory):
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
            elif isinstance(entry, Symlink):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
            else:
                file = entry if isinstance(entry, File) else File(entry)
                info.size, info.mode, data = len(file.data), file.mode, io.BytesIO(file.data)
            tar.addfile(info, data)
    return out.getvalue()


def compress(data: bytes, compression: Optional[str], level: Optional[int] = None) -> bytes:
    """`data` compressed with "gzip", "gzip-members" (two gzip members, as pigz or `cat a.gz b.gz`
    make: the trailer's ISIZE is the last member's), "zstd" or None (as is), deterministically."""
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    if compression == "gzip-members":
        half = len(data) // 2
        return compress(data[:half], "gzip", level) + compress(data[half:], "gzip", level)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
    if compression is None:
        return data
    raise ValueError(f"unknown compression {compression}")


@dataclass
class Layer:
    """A layer: its tar (whose digest is the diff_id) and the blob the registry stores."""

    tar: bytes
    blob: bytes
    compression: Optional[str]
    created_by: str = "COPY . /"
    media_type_override: Optional[str] = None
    annotations: Dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def digest(self) -> str:
        """Digest of the stored blob."""
        return digest_of(self.blob)

    @functools.cached_property
    def diff_id(self) -> str:
        """Digest of the uncompressed tar (what the config's rootfs lists)."""
        return digest_of(self.tar)

    @property
    def size(self) -> int:
        """Size of the stored blob."""
        return len(self.blob)

    def media_type(self, oci: bool) -> str:
        """The layer media type for an OCI or a Docker schema2 manifest."""
        if self.media_type_override:
            return self.media_type_override
        if oci:
            return OCI_LAYER + ("" if self.compression is None else "+" + self.compression)
        if self.compression == "zstd":
            raise ValueError("Docker schema2 has no zstd layer media type; use an OCI manifest")
        return DOCKER_LAYER + (".gzip" if self.compression in ("gzip", "gzip-members") else "")

    def descriptor(self, oci: bool) -> dict:
        """The manifest's entry for this layer."""
        desc = {"mediaType": self.media_type(oci), "size": self.size, "digest": self.digest}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


def layer(files: Mapping[str, Entry], compression: Optional[str] = "gzip", created_by: str = "COPY . /",
          level: Optional[int] = None) -> Layer:
    """A layer holding `files`."""
    tar = tar_bytes(files)
    return Layer(tar, compress(tar, compression, level), compression, created_by)


def empty_layer(compression: Optional[str] = "gzip") -> Layer:
    """A layer with no entries at all (a real blob, unlike history's `empty_layer`)."""
    return layer({}, compression, created_by="RUN true")


def local_files(root: Path, prefix: str = "") -> Dict[str, Entry]:
    """Files, links and directories under `root` on this machine, as layer entries below `prefix`."""
    entries: Dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            key = f"{prefix}/{path.relative_to(root)}".strip("/")
            if path.is_symlink():
                entries[key] = Symlink(os.readlink(path))
            elif path.is_dir():
                entries[key] = Directory(path.stat().st_mode & 0o7777)
            elif path.is_file():
                entries[key] = File(path.read_bytes(), path.stat().st_mode & 0o7777)
    return entries


@functools.lru_cache(maxsize=None)
def busybox_rootfs_layer(compression: Optional[str] = "gzip", applets: Tuple[str, ...] = BUSYBOX_APPLETS) -> Layer:
    """A runnable root filesystem: the static /bin/busybox with a link per applet, /etc/passwd and /tmp."""
    files: Dict[str, Entry] = {"bin/busybox": File(BUSYBOX.read_bytes(), 0o755),
                               "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                               "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
                               "root": Directory(0o700), "tmp": Directory(0o1777)}
    files.update({f"bin/{applet}": Symlink("busybox") for applet in applets})
    return Layer(*_tar_and_blob(files, compression), compression, created_by="ADD busybox /")


def _tar_and_blob(files: Mapping[str, Entry], compression: Optional[str]) -> Tuple[bytes, bytes]:
    tar = tar_bytes(files)
    return tar, compress(tar, compression)


# ------------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture and an optional variant."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """`linux/arm64/v8` -> Platform("linux", "arm64", "v8")."""
        parts = text.split("/")
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else None)

    def to_json(self) -> dict:
        """The `platform` object of an index entry."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _dumps(obj: object, oci: bool) -> bytes:
    # distribution writes schema2 manifests indented by three spaces, BuildKit writes OCI ones compact;
    # either way a client must keep the bytes it got, never re-serialize them.
    return json.dumps(obj, indent=None if oci else 3, separators=(",", ":") if oci else None).encode()


@dataclass
class Image:
    """A single-platform image: layers, config and manifest bytes."""

    layers: List[Layer]
    config: bytes
    manifest: bytes
    oci: bool
    platform: Platform
    annotations: Dict[str, str] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        """The manifest's media type."""
        return OCI_MANIFEST if self.oci else DOCKER_MANIFEST

    @functools.cached_property
    def digest(self) -> str:
        """The manifest digest."""
        return digest_of(self.manifest)

    @property
    def config_digest(self) -> str:
        """The config blob digest (the image ID docker shows)."""
        return digest_of(self.config)

    @property
    def config_json(self) -> dict:
        """The parsed config."""
        return json.loads(self.config)

    def blobs(self) -> List[Tuple[str, bytes]]:
        """(digest, bytes) of the config and every layer."""
        return [(self.config_digest, self.config)] + [(lay.digest, lay.blob) for lay in self.layers]

    def descriptor(self, with_platform: bool = True) -> dict:
        """This manifest's entry in an index."""
        desc: dict = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        if with_platform:
            desc["platform"] = self.platform.to_json()
        return desc


def build_image(layers: Sequence[Layer], *, platform: Platform = Platform(), oci: bool = False,
                cmd: Optional[List[str]] = None, entrypoint: Optional[List[str]] = None,
                env: Sequence[str] = (PATH_ENV,), empty_history: Sequence[str] = (), created: str = CREATED,
                labels: Optional[Dict[str, str]] = None, config_media_type: Optional[str] = None) -> Image:
    """An image of `layers` for `platform`, in OCI or Docker schema2 form.

    `empty_history` adds history entries with `empty_layer: true` (ENV, LABEL…) before the layers'.
    """
    container: dict = {"Env": list(env)}
    if entrypoint is not None:
        container["Entrypoint"] = entrypoint
    container["Cmd"] = cmd if cmd is not None else ["sh"]
    if labels:
        container["Labels"] = labels
    history = [{"created": created, "created_by": step, "empty_layer": True} for step in empty_history]
    history += [{"created": created, "created_by": lay.created_by} for lay in layers]
    config: dict = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        config["variant"] = platform.variant
    config.update({"created": created, "config": container, "history": history,
                   "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]}})
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                "config": {"mediaType": config_media_type or (OCI_CONFIG if oci else DOCKER_CONFIG),
                           "size": len(config_bytes), "digest": digest_of(config_bytes)},
                "layers": [lay.descriptor(oci) for lay in layers]}
    return Image(list(layers), config_bytes, _dumps(manifest, oci), oci, platform)


def attestation_manifest(image: Image) -> Image:
    """The in-toto attestation manifest BuildKit attaches to `image`, annotated as BuildKit does."""
    statement = {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
                 "subject": [{"name": "pkg:docker/test@latest", "digest": {"sha256": image.digest[7:]}}],
                 "predicate": {"builder": {"id": "wes-arvados-tests"}, "buildType": "https://mobyproject.org/buildkit@v1"}}
    data = json.dumps(statement, separators=(",", ":")).encode()
    provenance = Layer(data, data, None, created_by="", media_type_override=IN_TOTO,
                       annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})
    config = {"architecture": "unknown", "os": "unknown", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [provenance.diff_id]}}
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config_bytes), "size": len(config_bytes)},
                "layers": [provenance.descriptor(True)]}
    att = Image([provenance], config_bytes, _dumps(manifest, True), True, Platform("unknown", "unknown"))
    att.annotations = {"vnd.docker.reference.digest": image.digest,
                       "vnd.docker.reference.type": "attestation-manifest"}
    return att


@dataclass
class Index:
    """An OCI index or Docker manifest list over platform images and their attestations."""

    images: List[Image]
    attestations: List[Image]
    data: bytes
    oci: bool

    @property
    def media_type(self) -> str:
        """The index's media type."""
        return OCI_INDEX if self.oci else DOCKER_MANIFEST_LIST

    @functools.cached_property
    def digest(self) -> str:
        """The index digest."""
        return digest_of(self.data)

    @property
    def children(self) -> List[Image]:
        """Every manifest the index lists, attestations included, in index order."""
        return self.images + self.attestations

    def image_for(self, platform: Union[str, Platform]) -> Image:
        """The image for `platform` (e.g. "linux/arm64/v8")."""
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        return next(img for img in self.images if img.platform == wanted)


def build_index(images: Sequence[Image], *, oci: bool = True, attestations: bool = True,
                annotations: Optional[Dict[str, str]] = None) -> Index:
    """An index of `images` (one per platform), followed by one attestation manifest per image if asked."""
    atts = [attestation_manifest(img) for img in images] if attestations else []
    body: dict = {"schemaVersion": 2, "mediaType": OCI_INDEX if oci else DOCKER_MANIFEST_LIST,
                  "manifests": [img.descriptor() for img in images + atts]}
    if annotations:
        body["annotations"] = annotations
    return Index(list(images), atts, _dumps(body, oci), oci)


# ---------------------------------------------------------------------------------- big images


def _text(rng: random.Random, size: int) -> bytes:
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choices(vocab, k=20000)) + "\n").encode()
    return bytes(out[:size])


@functools.lru_cache(maxsize=None)
def _libraries() -> Tuple[Path, ...]:
    """The shared libraries under /usr/lib, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk("/usr/lib"):
        dirnames.sort()
        found += [Path(dirpath, name) for name in sorted(filenames) if ".so" in name]
    return tuple(p for p in found if not p.is_symlink())


def _library_files(budget: int, start: int) -> Iterator[Tuple[str, bytes]]:
    """Real binaries and libraries from /usr/lib, `budget` bytes from the `start`-th file on."""
    paths = _libraries()
    if not paths:
        return
    i = start
    while budget > 0 and i < start + 10 * len(paths):
        path = paths[i % len(paths)]
        with open(path, "rb") as file:
            data = file.read(budget)
        budget -= len(data)
        yield f"usr/lib/{i}/{path.name}", data
        i += 1


def big_image(total_size: int, layers: int = 8, *, seed: int = 0, compression: Optional[str] = "gzip",
              level: Optional[int] = None, oci: Optional[bool] = None) -> Image:
    """An image of about `total_size` uncompressed bytes in `layers` layers, for benchmarks.

    Each layer mixes incompressible random bytes (40%), text (30%) and copies of this
    machine's shared libraries (30%), cut into files of at most 8 MiB. The manifest is
    OCI when `oci` says so or the layers are zstd, else Docker schema2. Gzip at the
    default level builds about 20 MB/s; pass `level=1` or zstd for speed.
    """
    rng = random.Random(seed)
    per_layer = max(1, total_size // layers)
    built = []
    for n in range(layers):
        files: Dict[str, Entry] = {}
        for kind, share in (("random", 0.4), ("text", 0.3)):
            left, part = int(per_layer * share), 0
            while left > 0:
                size = min(left, 8 << 20)
                files[f"data/{n}/{kind}-{part}"] = rng.randbytes(size) if kind == "random" else _text(rng, size)
                left, part = left - size, part + 1
        files.update(_library_files(per_layer - int(per_layer * 0.7), start=n * 50))
        built.append(layer(files, compression, created_by=f"COPY data/{n} /data/{n}", level=level))
    return build_image(built, oci=compression == "zstd" if oci is None else oci)


# --------------------------------------------------------------------------------- ready-made


def _marker(name: str, compression: Optional[str] = "gzip") -> Layer:
    return layer({f"etc/wes-test/{name}": f"{name}\n".encode()}, compression, created_by=f"RUN echo {name}")


class ImageFactory:
    """The standard test images, built once each and kept (they are deterministic)."""

    def __init__(self) -> None:
        self._cache: Dict[tuple, Union[Image, Index]] = {}

    def _cached(self, key: tuple, build) -> Union[Image, Index]:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def docker_schema2(self) -> Image:
        """linux/amd64, Docker schema2, gzip layers: busybox plus a marker; runs `sh`."""
        return self._cached(("docker",), lambda: build_image(  # type: ignore[return-value]
            [busybox_rootfs_layer(), _marker("docker-schema2")], empty_history=["ENV PATH=/bin"]))

    def oci(self) -> Image:
        """linux/amd64, OCI manifest and media types, gzip layers; runs `sh`."""
        return self._cached(("oci",), lambda: build_image(  # type: ignore[return-value]
            [busybox_rootfs_layer(), _marker("oci")], oci=True))

    def index(self, oci: bool = True, attestations: bool = True) -> Index:
        """linux/amd64 (busybox, runnable), linux/arm64/v8 and linux/arm/v7 (marker only), with attestations."""
        def build() -> Index:
            amd64 = build_image([busybox_rootfs_layer(), _marker("index-amd64")], oci=oci)
            arm64 = build_image([_marker("index-arm64")], platform=Platform("linux", "arm64", "v8"), oci=oci)
            armv7 = build_image([_marker("index-armv7")], platform=Platform("linux", "arm", "v7"), oci=oci)
            return build_index([amd64, arm64, armv7], oci=oci, attestations=attestations)
        return self._cached(("index", oci, attestations), build)  # type: ignore[return-value]

    def zstd(self) -> Image:
        """An OCI image whose layers are `application/vnd.oci.image.layer.v1.tar+zstd`."""
        return self._cached(("zstd",), lambda: build_image(  # type: ignore[return-value]
            [busybox_rootfs_layer("zstd"), _marker("zstd", "zstd")], oci=True))

    def many_layers(self, count: int = 20, oci: bool = False) -> Image:
        """`count` small layers, each adding a file and rewriting /etc/wes-test/last."""
        return self._cached(("many", count, oci), lambda: build_image(  # type: ignore[return-value]
            [layer({f"layer/{i:03d}": f"layer {i}\n".encode() * (i + 1),
                    "etc/wes-test/last": f"{i}\n".encode()}, created_by=f"RUN step {i}") for i in range(count)],
            oci=oci))

    def empty_layer(self) -> Image:
        """An image with a real empty tar layer between two others, and an `empty_layer` history entry."""
        return self._cached(("empty",), lambda: build_image(  # type: ignore[return-value]
            [_marker("before-empty"), empty_layer(), _marker("after-empty")], empty_history=["ENV A=b"]))

    def gzip_members(self) -> Image:
        """busybox between two layers that are each two gzip members (their ISIZE trailers mislead)."""
        return self._cached(("gzip-members",), lambda: build_image(  # type: ignore[return-value]
            [_marker("members-first", "gzip-members"), busybox_rootfs_layer(),
             layer({"etc/wes-test/members": b"m\n" * 40000}, "gzip-members")]))

    def uncompressed(self, oci: bool = True) -> Image:
        """Layers stored as plain tar (`…layer.v1.tar` / `…rootfs.diff.tar`)."""
        return self._cached(("plain", oci), lambda: build_image(  # type: ignore[return-value]
            [_marker("uncompressed", None)], oci=oci))

    def big(self, total_size: int, layers: int = 8, seed: int = 0, compression: Optional[str] = "gzip") -> Image:
        """See `big_image`; cached by its arguments."""
        return self._cached(("big", total_size, layers, seed, compression),  # type: ignore[return-value]
                            lambda: big_image(total_size, layers, seed=seed, compression=compression))


# ------------------------------------------------------------------------------------------ push


class RegistryError(RuntimeError):
    """The registry answered something other than what the protocol step expects."""


def _expect(response: requests.Response, *statuses: int) -> requests.Response:
    if response.status_code not in statuses:
        raise RegistryError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}")
    return response


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode(parse_qsl(parts.query) + list(params.items()))))


class RegistryClient:
    """Just enough of the distribution API to push test images and read them back, with Basic/Bearer auth."""

    def __init__(self, url: str, credentials: Optional[Tuple[str, str]] = None,
                 session: Optional[requests.Session] = None) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.session = session or requests.Session()
        self._authorization: Dict[str, str] = {}  # scope -> Authorization header value

    def _authorize(self, challenge: str, scope: str) -> Optional[str]:
        """An Authorization value answering `challenge` (Basic, or Bearer through the token realm)."""
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials:
            return requests.auth._basic_auth_str(*self.credentials)
        if scheme.lower() == "bearer":
            params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            response = _expect(self.session.get(params["realm"], params={"service": params.get("service"),
                                                                         "scope": scope},
                                                auth=self.credentials, timeout=30), 200)
            body = response.json()
            return "Bearer " + (body.get("token") or body["access_token"])
        return None

    def request(self, method: str, url: str, repo: str, **kwargs) -> requests.Response:
        """`method` on `url` (absolute, or a path under the base URL), authenticating on a 401 once."""
        if not url.startswith("http"):
            url = self.url + url
        scope = f"repository:{repo}:" + ("pull" if method in ("GET", "HEAD") else "pull,push")
        headers = dict(kwargs.pop("headers", None) or {})
        response = None
        for _ in range(2):
            if scope in self._authorization:
                headers["Authorization"] = self._authorization[scope]
            response = self.session.request(method, url, headers=headers, timeout=300, **kwargs)
            if response.status_code != 401:
                return response
            authorization = self._authorize(response.headers.get("WWW-Authenticate", ""), scope)
            if authorization is None:
                return response
            self._authorization[scope] = authorization
        return response  # type: ignore[return-value]

    def blob_exists(self, repo: str, digest: str) -> bool:
        """HEAD the blob."""
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo).status_code == 200

    def push_blob(self, repo: str, data: bytes, digest: Optional[str] = None, chunk_size: int = 16 << 20) -> str:
        """Upload a blob in one PUT, or in PATCH chunks when it is larger than `chunk_size`."""
        digest = digest or digest_of(data)
        response = _expect(self.request("POST", f"/v2/{repo}/blobs/uploads/", repo), 202)
        location = urljoin(self.url + "/", response.headers["Location"])
        octets = {"Content-Type": "application/octet-stream"}
        if len(data) <= chunk_size:
            _expect(self.request("PUT", _with_query(location, digest=digest), repo, data=data, headers=octets), 201)
            return digest
        for start in range(0, len(data), chunk_size):
            piece = data[start:start + chunk_size]
            headers = {**octets, "Content-Range": f"{start}-{start + len(piece) - 1}"}
            response = _expect(self.request("PATCH", location, repo, data=piece, headers=headers), 202)
            location = urljoin(self.url + "/", response.headers["Location"])
        _expect(self.request("PUT", _with_query(location, digest=digest), repo, headers=octets), 201)
        return digest

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest or index under a tag or digest; return the digest the registry computed."""
        response = _expect(self.request("PUT", f"/v2/{repo}/manifests/{reference}", repo, data=data,
                                        headers={"Content-Type": media_type}), 201)
        return response.headers["Docker-Content-Digest"]

    def get_manifest(self, repo: str, reference: str, accept: Sequence[str] = ALL_MANIFESTS) -> requests.Response:
        """GET a manifest with an Accept header listing `accept`."""
        return self.request("GET", f"/v2/{repo}/manifests/{reference}", repo, headers={"Accept": ", ".join(accept)})

    def get_blob(self, repo: str, digest: str) -> bytes:
        """GET a blob's bytes."""
        return _expect(self.request("GET", f"/v2/{repo}/blobs/{digest}", repo), 200).content


def push(target: object, repo: str, tag: Optional[str], image: Union[Image, Index], *,
         credentials: Optional[Tuple[str, str]] = None, chunk_size: int = 16 << 20,
         client: Optional[RegistryClient] = None) -> str:
    """Push `image` (or an index and all its manifests) as `repo:tag`; return the top manifest digest.

    `target` is a Registry, a FaultProxy or a base URL; credentials default to the target's.
    Blobs larger than `chunk_size` go up in PATCH chunks, the rest in one PUT.
    """
    if client is None:
        url = target if isinstance(target, str) else getattr(target, "url")
        client = RegistryClient(url, credentials or getattr(target, "credentials", None))
    manifests: Iterable[Image] = image.children if isinstance(image, Index) else [image]
    for child in manifests:
        for digest, data in child.blobs():
            if not client.blob_exists(repo, digest):
                client.push_blob(repo, data, digest, chunk_size=chunk_size)
        if isinstance(image, Index) or tag is None:
            client.put_manifest(repo, child.digest, child.manifest, child.media_type)
    if isinstance(image, Index):
        return client.put_manifest(repo, tag or image.digest, image.data, image.media_type)
    return client.put_manifest(repo, tag, image.manifest, image.media_type) if tag else image.digest
