"""Resolving an image reference to one image manifest and its config, through the blob cache.

A tag is resolved with a manifest HEAD (which Docker Hub does not count against its
rate limit); manifests, index and config are read from the cache when it has their
digest, so an unchanged image costs that one request. An index resolves to one
platform (default linux/amd64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from .cache import BlobCache
from .errors import AuthError, DigestMismatch, ManifestError, NotFoundError, RegistryError
from .manifest import (
    DEFAULT_PLATFORM,
    Index,
    Manifest,
    diff_ids,
    parse_manifest,
    parse_platform,
    select_platform,
)
from .reference import Reference
from .registry import Repository


@dataclass
class ResolvedImage:
    """An image manifest with its config, and the index it was chosen from, if any."""

    manifest: Manifest
    config: bytes
    index_digest: Optional[str] = None


def _fetch_manifest(repo: Repository, cache: BlobCache, identifier: str, digest: Optional[str],
                    size: Optional[int] = None) -> Tuple[Union[Manifest, Index], bool]:
    """A manifest or index by digest from the cache, else verified from the registry; and whether it was cached.

    `size` is what an index's descriptor says: a manifest of another size is refused.
    """
    if digest is not None:
        raw = cache.read(digest)
        if raw is not None:
            if size is not None and len(raw) != size:
                raise DigestMismatch(f"manifest {digest} (not the size its descriptor says)",
                                     f"{digest} ({size} bytes)", f"{len(raw)} bytes")
            return parse_manifest(raw, "", digest), True
    verified = getattr(repo, "get_manifest_verified", None)
    if verified is not None:
        parsed = verified(identifier, digest) if size is None else verified(identifier, digest, size)
    else:  # a registry client without it: check the digest here
        raw, content_type = repo.get_manifest(identifier)
        parsed = parse_manifest(raw, content_type, digest)
    return parsed, False


def _head_digest(repo: Repository, identifier: str) -> Optional[str]:
    """The digest a tag points to now, or None when the registry does not say (then GET by tag)."""
    try:
        digest, _, _ = repo.head_manifest(identifier)
    except (AuthError, NotFoundError):
        raise
    except RegistryError:
        return None
    return digest


def resolve(repo: Repository, ref: Reference, cache: BlobCache, platform: Optional[str] = None,
            head: bool = True) -> ResolvedImage:
    """The manifest and config `ref` names, choosing from an index by `platform` (default linux/amd64)."""
    digest = ref.digest
    if digest is None and head:
        digest = _head_digest(repo, ref.identifier)
    top, cached = _fetch_manifest(repo, cache, ref.identifier if digest is None else digest, digest)
    if not cached and isinstance(top, Manifest):
        cache.put(top.digest, top.raw)
    index_digest = None
    if isinstance(top, Index):
        index, index_cached = top, cached
        wanted = parse_platform(platform) if platform else DEFAULT_PLATFORM
        entry = select_platform(top, wanted, image=ref.familiar_string())
        top, cached = _fetch_manifest(repo, cache, entry.digest, entry.digest, entry.size)
        if not cached:
            cache.put(top.digest, top.raw)
        if not index_cached:  # kept once the manifest it names is: an index that lies about it leaves nothing
            cache.put(index.digest, index.raw)
        index_digest = index.digest
        if not isinstance(top, Manifest):
            raise ManifestError(f"index entry {entry.digest} of {ref.familiar_string()} is not an image manifest")
    config = cache.read(top.config.digest)
    if config is None:
        with cache.lock(top.config.digest):  # concurrent pulls fetch it once
            config = cache.read(top.config.digest)
            if config is None:
                config = b"".join(repo.blob(top.config.digest, top.config.size))
                cache.put(top.config.digest, config)
    if len(diff_ids(config)) != len(top.layers):
        raise ManifestError(f"{ref.familiar_string()}: the manifest lists {len(top.layers)} layers "
                            f"but the config {len(diff_ids(config))} diff_ids")
    return ResolvedImage(top, config, index_digest)


