"""The image model: media types, descriptors, manifests, indexes, configs and platform choice.

Formats follow the OCI image-spec (manifest.md, image-index.md, media-types.md)
and Docker's Image Manifest V2 Schema 2; platforms are in ``platform.py``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import DigestMismatch, InvalidReference, ManifestError, PlatformNotFound
from .platform import (  # noqa: F401 - re-exported: the image model's public names
    DEFAULT_PLATFORM,
    Platform,
    compatible_platforms,
    json_string,
    parse_platform,
    platform_matches,
    rank,
)
from .reference import validate_digest

# Docker Image Manifest V2, Schema 2.
DOCKER_MANIFEST_SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# OCI image-spec.
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# What to send as Accept when asking for a manifest (schema 1 is left out on purpose).
ACCEPT = (DOCKER_MANIFEST_SCHEMA2, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)

IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST_SCHEMA2, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1_TYPES = frozenset({DOCKER_MANIFEST_SCHEMA1, DOCKER_MANIFEST_SCHEMA1_SIGNED})
CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
LAYER_TYPES = frozenset({
    DOCKER_LAYER, DOCKER_FOREIGN_LAYER, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
})

SCHEMA1_REFUSED = (
    "schema 1 manifests are not supported (deprecated by Docker in 2017); "
    "push the image again with a current tool"
)

# BuildKit stores provenance and SBOMs as index entries with this annotation.
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_MANIFEST = "attestation-manifest"


# ---- descriptors, manifests and indexes -------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """A typed, sized, digest-addressed pointer to a blob or manifest."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Read and check a descriptor object."""
        if not isinstance(obj, dict):
            raise ManifestError(f"a descriptor must be a JSON object, not {obj!r}")
        digest, size = json_string(obj, "digest"), obj.get("size")
        try:
            validate_digest(digest)
        except InvalidReference as exc:
            raise ManifestError(f"descriptor digest {digest!r}: {exc.reason}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"descriptor {digest} has an invalid size {size!r}")
        media_type = json_string(obj, "mediaType")
        if not media_type:
            raise ManifestError(f"descriptor {digest} has no mediaType")
        platform = obj.get("platform")
        return cls(
            media_type=media_type, digest=digest, size=size,
            urls=tuple(str(u) for u in obj.get("urls") or ()),
            annotations=_annotations(obj),
            platform=Platform.from_json(platform) if platform is not None else None,
        )

    @property
    def is_attestation(self) -> bool:
        """Whether this index entry holds attestations (provenance, SBOM) rather than an image."""
        if self.annotations.get(REFERENCE_TYPE_ANNOTATION) == ATTESTATION_MANIFEST:
            return True
        p = self.platform
        return p is not None and (p.os, p.architecture) == ("unknown", "unknown")


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config and the layers, base first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes
    digest: str
    annotations: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Index:
    """An image index (Docker manifest list): one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes
    digest: str
    annotations: dict[str, str] = field(default_factory=dict, hash=False)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of `data`, e.g. ``sha256:…``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def parse_manifest(
    raw: bytes, content_type: str = "", expected_digest: str | None = None
) -> Manifest | Index:
    """Parse a manifest or index as a registry served it.

    The kind is the document's own ``mediaType``, else the HTTP Content-Type,
    else its shape. With `expected_digest`, the bytes must hash to it.
    """
    if expected_digest is None:
        digest = digest_of(raw)
    else:
        digest = digest_of(raw, validate_digest(expected_digest).split(":", 1)[0])
        if digest != expected_digest:
            raise DigestMismatch("manifest", expected_digest, digest)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    header_type = content_type.split(";", 1)[0].strip().lower()
    media_type = json_string(doc, "mediaType")
    if doc.get("schemaVersion") == 1 or (media_type or header_type) in SCHEMA1_TYPES:
        raise ManifestError(SCHEMA1_REFUSED)
    if not media_type:
        if header_type in IMAGE_MANIFEST_TYPES | INDEX_TYPES:
            media_type = header_type
        elif "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc:
            media_type = OCI_MANIFEST
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{media_type} has no manifests list")
        manifests = tuple(Descriptor.from_json(d) for d in entries)
        return Index(media_type, manifests, raw, digest, _annotations(doc))
    if media_type in IMAGE_MANIFEST_TYPES:
        if "config" not in doc:
            raise ManifestError(f"{media_type} has no config")
        layers = doc.get("layers") or []
        if not isinstance(layers, list):
            raise ManifestError(f"{media_type} layers must be a list")
        config = Descriptor.from_json(doc["config"])
        descriptors = tuple(Descriptor.from_json(d) for d in layers)
        return Manifest(media_type, config, descriptors, raw, digest, _annotations(doc))
    found = media_type or header_type or "unknown"
    supported = ", ".join(sorted(IMAGE_MANIFEST_TYPES | INDEX_TYPES))
    raise ManifestError(f"unsupported manifest media type {found!r}; supported: {supported}")


# Where an entry without a platform ranks: after every real match.
_UNPLATFORMED = (1 << 30, 0)


def select_platform(
    index: Index, wanted: Platform, *, strict: bool = False, image: str = ""
) -> Descriptor:
    """Choose the entry of `index` that best runs on `wanted`, as containerd does.

    Attestation entries and entries of unknown media types are never chosen.
    Entries without a platform rank after every match; the caller should check
    the chosen image's config then. `image` only names the image in errors.
    """
    ranked: list[tuple[tuple[int, int], int, Descriptor]] = []
    schema1_match = False
    for position, entry in enumerate(index.manifests):
        if entry.is_attestation:
            continue
        if entry.media_type in SCHEMA1_TYPES and entry.platform is not None:
            schema1_match |= platform_matches(wanted, entry.platform, strict)
            continue
        if entry.media_type not in IMAGE_MANIFEST_TYPES:
            continue
        if entry.platform is None:
            ranked.append((_UNPLATFORMED, position, entry))
            continue
        score = rank(wanted, entry.platform, strict)
        if score is not None:
            ranked.append((score, position, entry))
    if ranked:
        return min(ranked, key=lambda r: (r[0], r[1]))[2]
    if schema1_match:
        raise ManifestError(SCHEMA1_REFUSED)
    available = [
        str(e.platform) for e in index.manifests
        if e.platform is not None and not e.is_attestation and e.media_type in IMAGE_MANIFEST_TYPES
    ]
    raise PlatformNotFound(str(wanted), available, image)


# ---- image config ----------------------------------------------------------------------------


def _config(config_bytes: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(config_bytes)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"image config is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("image config is not a JSON object")
    return doc


def diff_ids(config_bytes: bytes) -> list[str]:
    """The digests of the uncompressed layers, base first, from an image config."""
    rootfs = _config(config_bytes).get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise ManifestError("image config has no rootfs.diff_ids list")
    for diff_id in ids:
        try:
            validate_digest(str(diff_id))
        except InvalidReference as exc:
            raise ManifestError(f"image config diff_id {diff_id!r}: {exc.reason}") from None
    return [str(d) for d in ids]


def created(config_bytes: bytes) -> str | None:
    """The image's creation time as written in its config (RFC 3339), if any."""
    value = _config(config_bytes).get("created")
    return value if isinstance(value, str) and value else None


def config_platform(config_bytes: bytes) -> Platform | None:
    """The platform an image config declares, or None if it declares no os and architecture."""
    doc = _config(config_bytes)
    if not doc.get("os") and not doc.get("architecture"):
        return None
    return Platform.from_json(doc)


# ---- helpers ---------------------------------------------------------------------------------


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    value = obj.get("annotations") or {}
    if not isinstance(value, dict):
        raise ManifestError("annotations must be a JSON object")
    return {str(k): str(v) for k, v in value.items()}
