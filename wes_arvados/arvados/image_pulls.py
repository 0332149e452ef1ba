"""The image pull service on Arvados: ``POST /images`` imports an image into Keep as the caller.

A pull is an Arvados link (class `PULL_LINK`, named after the image, owned by the
project the image goes into, else by the caller) whose properties hold its state,
a heartbeat and its result; the link's uuid is the pull_id. So any replica answers
for any pull, and Arvados' permissions decide who sees it. The import runs in a
process of its own (``python -m wes_arvados.arvados.image_pulls <pull_id>``) with
the caller's token and any ``X-Registry-Auth`` credentials on its stdin, through
the same `ImageService` as the images of runs: arv-keepdocker's collection and
links, with the layers Keep already holds reused. When the pull is done the link's
head is the image's collection. A pull whose process stopped (its heartbeat stale)
is reported SYSTEM_ERROR by whichever replica reads it first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any, ContextManager, Dict, Optional

from ..config import Config, image_settings, load_config
from ..logs import configure as configure_logging
from ..images.errors import ImageError
from ..images.reference import Reference, parse_normalized_named
from ..images.registry import AuthConfig
from ..images.service import ImageService
from ..images.stores.keep import KeepImageStore
from ..timestamps import utcnow
from ..wes.models import ImagePull
from ..wes.states import State
from . import work
from .api import client_for

log = logging.getLogger("wes_arvados.arvados.image_pulls")  # not __main__: it runs with -m

PULL_LINK = "wes_arvados_image_pull"
QUEUED, RUNNING, COMPLETE, SYSTEM_ERROR = (s.value for s in (State.QUEUED, State.RUNNING, State.COMPLETE,
                                                            State.SYSTEM_ERROR))
GONE = "the process doing this pull stopped before it finished (its server or machine restarted); ask again"
PULLS = work.LinkWork(PULL_LINK, "image pull", GONE)
# What a finished pull records of the stored image, as the ImagePull fields of the same names.
RESULT_FIELDS = ("image_id", "manifest_digest", "size", "downloaded", "cached", "portable_data_hash", "location")


def start(api: Any, config: Config, image: Reference, platform: Optional[str], project_uuid: Optional[str],
          token: str, credentials: Optional[Dict[str, AuthConfig]] = None) -> str:
    """Record the pull (QUEUED) as the caller and start its process; return the pull's id."""
    image_settings(config).policy.check(image)  # a denied image is refused at once
    project = project_uuid or config.arvados.project_uuid
    link = PULLS.create(api, config, image.as_written, project, platform=platform)
    try:
        work.start(config, __name__, link["uuid"], {
            "pull_id": link["uuid"], "image": image.as_written, "platform": platform, "project_uuid": project,
            "token": token, "credentials": {r: asdict(a) for r, a in (credentials or {}).items()}})
    except OSError as exc:
        PULLS.record(api, link["uuid"], state=SYSTEM_ERROR, end_time=utcnow(), error=f"the pull could not start: {exc}")
    return str(link["uuid"])


def get(api: Any, pull_id: str, now: Optional[datetime] = None) -> ImagePull:
    """The pull as the caller may see it; `NotFound` if there is none. One whose process stopped is SYSTEM_ERROR."""
    link = PULLS.current(api, pull_id, now)
    properties = link.get("properties") or {}
    return ImagePull(id=pull_id, image=link["name"], platform=properties.get("platform"),
                     state=str(properties.get("state") or SYSTEM_ERROR), submitted_time=link["created_at"],
                     end_time=properties.get("end_time"), error=properties.get("error"), store=KeepImageStore.kind,
                     **{k: properties.get(k) for k in RESULT_FIELDS})


def run(api: Any, service: ImageService, job: Dict[str, Any], heartbeat_seconds: float,
        turn: ContextManager[None] = contextlib.nullcontext()) -> ImagePull:
    """Do the pull `job` describes once `turn` lets it (QUEUED until then), keeping its record beating.

    Records how it ended and returns it.
    """
    pull_id = job["pull_id"]
    credentials = {r: AuthConfig(**fields) for r, fields in (job.get("credentials") or {}).items()}
    try:
        with work.beating(lambda: PULLS.record(api, pull_id), heartbeat_seconds, pull_id), turn:
            PULLS.record(api, pull_id, state=RUNNING)
            ensured = service.ensure(parse_normalized_named(job["image"]), credentials or None, job.get("platform"))
    except (ImageError, OSError) as exc:
        PULLS.record(api, pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=" ".join(str(exc).split()))
    except Exception as exc:  # recorded, never left RUNNING
        PULLS.record(api, pull_id, state=SYSTEM_ERROR, end_time=utcnow(), error=f"internal error: {type(exc).__name__}")
        raise
    else:
        stored = ensured.stored
        PULLS.record(api, pull_id, head_uuid=stored.location, state=COMPLETE, end_time=utcnow(),
                     image_id=stored.image_id, manifest_digest=stored.manifest_digest, size=stored.size,
                     downloaded=ensured.downloaded, cached=not ensured.pulled,
                     portable_data_hash=stored.portable_data_hash, location=stored.location)
    return get(api, pull_id)


def main() -> int:
    """Do the pull described on stdin as the caller whose token it carries; 0 if the image is in Keep."""
    config = load_config()
    configure_logging(config.log_level, config.log_format, pull_id=sys.argv[1])
    job = json.loads(sys.stdin.read())
    arvados = config.arvados
    api = client_for(arvados.api_host, job["token"], arvados.api_host_insecure)
    store = KeepImageStore(api, project_uuid=job.get("project_uuid"), claim=True)  # as arv-keepdocker would
    service = ImageService(store, image_settings(config))
    pull = run(api, service, job, heartbeat_seconds=arvados.heartbeat_timeout / 4, turn=work.turn(config))
    log.info("image pull %s of %s: %s %s", pull.id, pull.image, pull.state, pull.error or pull.portable_data_hash,
             extra={"image": pull.image})
    return 0 if pull.state == COMPLETE else 1


if __name__ == "__main__":
    sys.exit(main())
