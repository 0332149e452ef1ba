"""`wes-arvados pull IMAGE --arvados`: the image into Keep as arv-keepdocker would store it, with no Docker.

Uses the usual Arvados settings (ARVADOS_API_HOST, ARVADOS_API_TOKEN,
ARVADOS_API_HOST_INSECURE) through arvados-python-client, and the same
`ImageService.ensure` path as the server: a tag is re-resolved with a HEAD, an
image already in Keep gets at most its missing repo+tag link, layers already in
Keep are reused, and the rest is streamed from the registry into Keep blocks.
"""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from ..images.cache import default_cache_dir
from ..images.errors import ImageError
from ..images.policy import ImagePolicy
from ..images.reference import Reference
from ..images.registry import RegistryOptions
from ..images.service import ImageService, ImageSettings
from ..images.stores.keep import KeepImageStore

# mallopt's parameter number for the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3


def arvados_api() -> Any:
    """An API client from the environment; `ImageError` when it is not configured or not reachable."""
    try:
        import arvados
        import arvados.errors

        api = arvados.api("v1")
        api.users().current().execute(num_retries=2)
        return api
    except ImportError:
        raise ImageError("arvados-python-client is not installed") from None
    except Exception as exc:  # the SDK raises many kinds; the user needs the message
        raise ImageError(f"cannot use the Arvados API (ARVADOS_API_HOST / ARVADOS_API_TOKEN): "
                         f"{' '.join(str(exc).split())}") from None


def _return_big_blocks_to_the_system() -> None:
    """Have glibc map every block of 4 MiB or more on its own, so freed Keep blocks leave the process.

    Without it glibc raises its mmap threshold after the first frees and keeps
    the freed 16 MiB blocks in the heap, which then looks like a leak.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass


def pull_to_keep(image: Reference, registry: RegistryOptions, platform: Optional[str], project_uuid: Optional[str],
                 cache_dir: Optional[Path], jobs: int) -> Dict[str, Any]:
    """Store `image` in Keep; return what the command prints (collection uuid, portable data hash, ...)."""
    _return_big_blocks_to_the_system()
    store = KeepImageStore(arvados_api(), project_uuid=project_uuid)
    work = Path(tempfile.gettempdir()) / "wes-arvados-keep-work"
    settings = ImageSettings(cache_dir=cache_dir or default_cache_dir(), work_dir=work, registry=registry,
                             policy=ImagePolicy(), platform=platform or "linux/amd64", jobs=jobs)
    ensured = ImageService(store, settings).ensure(image)
    stored = ensured.stored
    return {"image": image.as_written, "collection_uuid": stored.location, "portable_data_hash": stored.portable_data_hash,
            "image_id": ensured.stored.image_id, "manifest_digest": ensured.stored.manifest_digest,
            "size": ensured.stored.size, "uploaded": ensured.pulled, "downloaded": ensured.downloaded,
            "seconds": round(ensured.seconds, 3)}
