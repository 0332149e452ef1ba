"""Getting an image into an image store for a run or a pull request: policy, resolution, pull, store.

`ImageService.ensure(name)` is the one path every server-side image takes:

1. the name is parsed and checked against the operator's policy (`policy`);
2. the tag is re-resolved at the registry with a manifest HEAD (`resolve`; mirrors,
   credentials and insecure registries from the server's settings);
3. if the store already holds that exact image (same config digest) under the
   name, nothing else happens ("cached");
4. else, under a lock on (name, image) shared by every process on this machine,
   the image is opened by digest (`pull.open_image`, through the server's blob
   cache, so concurrent pulls fetch each blob once) and the store takes it: the
   local store writes a docker-save archive and loads it, the Keep store streams
   it into Keep blocks;
5. if the settings bound the cache (``images.cache_max_size``), it is pruned
   (`prune`): the least recently used blobs go until it fits.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional

from .. import metrics
from .cache import PRUNE_GRACE_SECONDS, BlobCache
from .policy import ImagePolicy
from .prune import prune
from .pull import PullOptions, open_image
from .reference import Reference
from .registry import AuthConfig, RegistryOptions, Repository
from .resolve import resolve
from .stores.base import ImageStore, StoredImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ensured:
    """What `ensure` did for one image."""

    stored: StoredImage
    pulled: bool  # False: the store had it already
    downloaded: int  # bytes fetched from the registry
    seconds: float

    def summary(self) -> str:
        """One line for a run's system_logs."""
        how = f"pulled ({self.downloaded / 1e6:.1f} MB downloaded)" if self.pulled else "cached"
        return (f"image {self.stored.name}: {how}; image id {self.stored.image_id}, manifest "
                f"{self.stored.manifest_digest or 'unknown'}, {self.stored.size / 1e6:.1f} MB, "
                f"{self.seconds:.1f} s")


@dataclass(frozen=True)
class ImageSettings:
    """What the service needs: where its cache and work files go, how to reach registries, what is allowed."""

    cache_dir: Path
    work_dir: Path  # archives being made, beside the cache
    registry: RegistryOptions
    policy: ImagePolicy
    platform: str = "linux/amd64"
    jobs: int = 4
    cache_max_bytes: Optional[int] = None  # after each pull, the cache is pruned to this (`prune`); None: no limit
    cache_grace: float = PRUNE_GRACE_SECONDS  # what was used this recently stays whatever the size


class ImageService:
    """Puts images into one store, as the settings allow."""

    def __init__(self, store: ImageStore, settings: ImageSettings) -> None:
        self.store = store
        self.settings = settings
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        self.cache = BlobCache(settings.cache_dir)

    def check(self, ref: Reference) -> None:
        """Raise `ImageDenied` if the operator's policy does not allow `ref`."""
        self.settings.policy.check(ref)

    def _registry(self, credentials: Optional[Dict[str, AuthConfig]]) -> RegistryOptions:
        if not credentials:
            return self.settings.registry
        return replace(self.settings.registry, credentials=self.settings.registry.credentials.with_explicit(credentials))

    def ensure(self, ref: Reference, credentials: Optional[Dict[str, AuthConfig]] = None,
               platform: Optional[str] = None) -> Ensured:
        """Make the store hold the image `ref` names as the registry has it now; raise an `ImageError` naming the cause.

        `credentials` (registry → AuthConfig) are used for this call only.
        """
        started = time.monotonic()
        try:
            ensured = self._ensure(ref, credentials, platform, started)
        except Exception as exc:
            metrics.IMAGE_PULLS.labels("failed").inc()
            metrics.IMAGE_PULL_SECONDS.labels("failed").observe(time.monotonic() - started)
            log.warning("image %s: failed: %s", ref.as_written, exc, extra={"image": ref.as_written})
            raise
        outcome = "pulled" if ensured.pulled else "present"
        log.info("%s", ensured.summary(), extra={"image": ref.as_written})
        metrics.IMAGE_PULLS.labels(outcome).inc()
        metrics.IMAGE_PULL_SECONDS.labels(outcome).observe(ensured.seconds)
        metrics.IMAGE_PULL_BYTES.inc(ensured.downloaded)
        if not ensured.downloaded:
            metrics.IMAGE_CACHE_HITS.inc()
        return ensured

    def _ensure(self, ref: Reference, credentials: Optional[Dict[str, AuthConfig]], platform: Optional[str],
                started: float) -> Ensured:
        self.check(ref)
        name = ref.as_written  # stores keep images under the name the workflow wrote
        registry = self._registry(credentials)
        platform = platform or self.settings.platform
        resolved = resolve(Repository(ref, registry), ref, self.cache, platform)
        image_id = resolved.manifest.config.digest
        stored = self.store.lookup(name, image_id)
        if stored is not None:
            return Ensured(stored, False, 0, time.monotonic() - started)
        key = "sha256:" + hashlib.sha256(f"{self.store.kind}\0{name}\0{image_id}".encode()).hexdigest()
        with self.cache.lock(key):  # one pull and one load per image, whoever else wants it
            stored = self.store.lookup(name, image_id)
            if stored is not None:
                return Ensured(stored, False, 0, time.monotonic() - started)
            pinned = ref.with_tag(ref.tag_or_default).with_digest(resolved.index_digest or resolved.manifest.digest) \
                if ref.tag_or_default else ref
            options = PullOptions(platform=platform, jobs=self.settings.jobs, cache_dir=self.settings.cache_dir,
                                  registry=registry)
            with open_image(pinned, options) as image:
                stored = self.store.put(name, image)
                downloaded = image.downloaded
        self._prune()
        return Ensured(stored, True, downloaded, time.monotonic() - started)

    def _prune(self) -> None:
        """Keep the cache within `cache_max_bytes`, if set; a failure to prune is logged, not raised."""
        if self.settings.cache_max_bytes is None:
            return
        try:
            pruned = prune(self.cache, self.settings.cache_max_bytes, grace=self.settings.cache_grace)
        except OSError as exc:
            log.warning("image cache %s: pruning failed: %s", self.cache.root, exc)
            return
        if pruned.removed:
            log.info("image cache %s: %s", self.cache.root, pruned.summary())
