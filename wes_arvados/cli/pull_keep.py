"""`wes-arvados pull IMAGE --arvados`: the image into Keep as arv-keepdocker would store it, with no Docker.

Uses the usual Arvados settings (ARVADOS_API_HOST, ARVADOS_API_TOKEN,
ARVADOS_API_HOST_INSECURE) through arvados-python-client, and the same
`ImageService.ensure` path as the server: a tag is re-resolved with a HEAD, an
image already in Keep gets at most its missing repo+tag link, layers already in
Keep are reused, and the rest is streamed from the registry into Keep blocks.
"""

from __future__ import annotations

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


def pull_to_keep(image: Reference, registry: RegistryOptions, platform: Optional[str], project_uuid: Optional[str],
                 cache_dir: Optional[Path], jobs: int) -> Dict[str, Any]:
    """Store `image` in Keep; return what the command prints (collection uuid, portable data hash, ...)."""
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
