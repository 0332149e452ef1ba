"""A local run's INITIALIZING phase: every Docker image it needs, in the local runtime before cwltool starts.

The workflow is loaded as cwltool will load it (`images.cwl`), its
DockerRequirements are collected, and each image goes through the one
server-side path (`images.service`): policy, a HEAD at the registry, a pull
only when the runtime does not have that exact image, ``docker load`` under the
name the workflow uses. cwltool then runs with ``--disable-pull``: it never
pulls by itself, so what runs is what was resolved and logged here.

Every image's progress and outcome is a system_logs line. An image that cannot
be had, which a requirement names, fails the run before the engine starts; one
that only a hint names is reported and left to the engine's rule for hints.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional
from urllib.parse import unquote, urlsplit

from ..config import Config, image_settings
from ..download import DownloadError, download
from ..fetch_guard import FetchGuard
from ..images.errors import ImageError
from ..images.reference import parse_normalized_named
from ..images.registry import AuthConfig
from ..images.service import ImageService
from .engine_options import EngineRequest
from .image_store import LocalImageStore
from .runtime import ContainerRuntime, detect_runtime

if TYPE_CHECKING:
    from ..images.cwl import ImageNeed

DISABLE_PULL = "--disable-pull"
NO_CONTAINER = "--no-container"
DOCKER_REQUIREMENT = b"DockerRequirement"
# Files of a run larger than this are data, not CWL documents: not scanned for DockerRequirement.
SCAN_MAX_BYTES = 8 << 20
# Largest dockerLoad archive fetched over http(s).
LOAD_MAX_BYTES = 16 << 30
# Longest a dockerLoad URL may take to download, in seconds.
LOAD_TIMEOUT = 3600.0

Log = Callable[[str], None]


@dataclass
class Preparation:
    """What the INITIALIZING phase decided."""

    engine_options: List[str] = field(default_factory=list)  # added to cwltool's command line
    error: Optional[str] = None  # set: the run ends SYSTEM_ERROR with this, and no engine starts


def _option_value(options: List[str], name: str) -> Optional[str]:
    for i, option in enumerate(options):
        if option == name and i + 1 < len(options):
            return options[i + 1]
        if option.startswith(name + "="):
            return option.split("=", 1)[1]
    return None


def _mentions_docker(run_root: Path) -> bool:
    """Whether any document of the run (attachments, job) says DockerRequirement.

    Loading a workflow with cwltool costs seconds; most runs of the local
    backend name no image at all, and this scan of their few small files tells.
    """
    for path in run_root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_size <= SCAN_MAX_BYTES and DOCKER_REQUIREMENT in path.read_bytes():
                return True
        except OSError:
            continue
    return False


def _who(need: "ImageNeed") -> str:
    shown = ", ".join(need.processes[:3]) + (f" and {len(need.processes) - 3} more" if len(need.processes) > 3 else "")
    return f"{'required' if need.required else 'hinted'} by {shown}"


def local_image_service(config: Config, runtime: ContainerRuntime) -> ImageService:
    """The image service of the local backend: images loaded into `runtime`, records in the state directory."""
    settings = image_settings(config)
    store = LocalImageStore(runtime, config.images_dir / "store.sqlite", settings.work_dir, jobs=settings.jobs)
    return ImageService(store, settings)


def prepare_images(config: Config, run_root: Path, request: EngineRequest, log: Log,
                   credentials: Optional[Dict[str, AuthConfig]] = None,
                   canceled: Callable[[], bool] = lambda: False) -> Preparation:
    """Get every image the run needs into the local runtime; say what the engine must be told.

    `credentials` (the run's own, from X-Registry-Auth) are used for this run's pulls only.
    """
    if not config.images.resolve:
        return Preparation()
    if NO_CONTAINER in request.options:
        log("images: not resolved: the run asked for --no-container")
        return Preparation()
    default_container = _option_value(request.options, "--default-container")
    if default_container is None and not _mentions_docker(run_root):
        return Preparation()  # no document of the run names an image: no need to load the workflow
    from ..images.cwl import (  # here: cwltool takes a second to import
        WorkflowLoadError,
        find_images,
    )

    try:
        needs = find_images(request.workflow, default_container)
    except WorkflowLoadError as exc:
        log(f"images: the workflow could not be read to find its images ({' '.join(str(exc).split())}); "
            "the engine will say why")
        return Preparation()
    if not needs:
        return Preparation()
    for need in needs:
        if need.source in ("file", "import") and need.required:
            kind = "dockerFile" if need.source == "file" else "dockerImport"
            return Preparation(error=f"DockerRequirement {kind} ({_who(need)}) cannot be met: this server builds "
                                     "no images (there is no build daemon); publish the image to a registry and "
                                     "use dockerPull")
    runtime = detect_runtime(config.images.runtime)
    if runtime is None:
        return _without_runtime(config, needs, log)
    log(f"images: {len(needs)} to resolve into {runtime.name}")
    service = local_image_service(config, runtime)
    for need in needs:
        if canceled():
            return Preparation()
        error = _resolve_one(service, runtime, need, run_root, log, credentials, config.fetch_guard)
        if error is not None:
            return Preparation(error=error)
    return Preparation([DISABLE_PULL])


def _without_runtime(config: Config, needs: List["ImageNeed"], log: Log) -> Preparation:
    required = [n for n in needs if n.required]
    if required:
        return Preparation(error=f"image {required[0].image or required[0].location} ({_who(required[0])}) needs a "
                                 f"container runtime, and this server has none (images.runtime: "
                                 f"{config.images.runtime}; docker and podman not found or not answering)")
    if config.images.hints_without_container:
        log("images: no container runtime on this server; tools whose image only a hint names run without "
            "containers (images.hints_without_container)")
        return Preparation([NO_CONTAINER])
    return Preparation(error=f"image {needs[0].image} ({_who(needs[0])}) needs a container runtime, and this server "
                             "has none; the operator may let hints run without containers "
                             "(images.hints_without_container)")


def _resolve_one(service: ImageService, runtime: ContainerRuntime, need: "ImageNeed", run_root: Path,
                 log: Log, credentials: Optional[Dict[str, AuthConfig]] = None,
                 guard: Optional[FetchGuard] = None) -> Optional[str]:
    """Resolve one image, logging it; the run's error message when a requirement cannot be met."""
    what = need.image or need.location
    try:
        if need.source == "pull":
            log(f"image {need.image}: resolving ({_who(need)})")
            log(service.ensure(parse_normalized_named(need.image), credentials).summary())
        elif need.source == "load":
            log(f"image {what}: loading {need.location} ({_who(need)})")
            _load(runtime, need, run_root, service.settings.work_dir, guard)
            log(f"image {what}: loaded from {need.location}")
        elif need.source == "id":
            if runtime.image_id(need.image) is None:
                raise ImageError(f"dockerImageId {need.image} is an image ID, which cannot be pulled, and "
                                 f"{runtime.name} does not have it")
            log(f"image {need.image}: present in {runtime.name}")
        else:
            log(f"image {what}: {need.source} hint not resolved (this server builds no images); "
                "the engine applies its rule for hints")
    except (ImageError, OSError) as exc:
        cause = " ".join(str(exc).split())
        if need.required:
            return f"image {what} ({_who(need)}): {cause}"
        log(f"image {what} ({_who(need)}): not available: {cause}; the engine applies its rule for hints")
    return None


def _load(runtime: ContainerRuntime, need: "ImageNeed", run_root: Path, work_dir: Path,
          guard: Optional[FetchGuard] = None) -> None:
    """``docker load`` a dockerLoad archive: a file of the run (its attachments) or an http(s) URL `guard` allows."""
    parts = urlsplit(need.location)
    if parts.scheme in ("http", "https"):
        # The pid in the name, as the image store's archives have it: one a killed process left is removed later.
        target = work_dir / f"load.{os.getpid()}.{secrets.token_hex(8)}.tar"
        try:
            download(need.location, target, LOAD_MAX_BYTES, LOAD_TIMEOUT, f"dockerLoad {need.location}", guard)
            runtime.load(target)
        except DownloadError as exc:
            raise ImageError(str(exc)) from None
        finally:
            target.unlink(missing_ok=True)
        return
    path = Path(unquote(parts.path) if parts.scheme == "file" else need.location).resolve()
    if run_root.resolve() not in path.parents:
        raise ImageError(f"dockerLoad {need.location} is not a file of the run; attach it to the run request")
    if not path.is_file():
        raise ImageError(f"dockerLoad {need.location} does not exist")
    runtime.load(path)
    if need.image and runtime.image_id(need.image) is None:
        raise ImageError(f"{path.name} was loaded but holds no image named {need.image}")

