"""`wes-arvados pull IMAGE --server URL`: have a running server import the image into its store.

The pull goes through the server's image pull service (``POST /images``, then
``GET /images/{pull_id}`` until it ends), so the image lands where that server's
runs find it, with no Docker and no download on this machine. Credentials for
the image's registry in the ``--registry-config`` files (client/registry_auth.py)
travel in ``X-Registry-Auth`` for that pull only; the default Docker config is
never sent.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from ..client.registry_auth import registry_auth_header
from ..client.session import ClientError, WesSession
from ..images.errors import ImageError
from ..images.reference import parse_normalized_named
from ..images.registry.credentials import REGISTRY_AUTH_HEADER

POLL_SECONDS = 0.5
UNFINISHED = ("QUEUED", "RUNNING")


def pull_on_server(server: str, image: str, platform: Optional[str], config_files: List[str],
                   token: Optional[str] = None, timeout: float = 3600) -> Dict[str, Any]:
    """Ask `server` to import `image`; wait for the pull to end and return its record (raise `ImageError` if it failed)."""
    session = WesSession(server, token)
    auth, _ = registry_auth_header([parse_normalized_named(image).registry], config_files)
    body = {"image": image, **({"platform": platform} if platform else {})}
    try:
        pull_id = session.call("POST", "/images", body, expect=202,
                               headers={REGISTRY_AUTH_HEADER: auth} if auth else None)["pull_id"]
        deadline = time.monotonic() + timeout
        while (pull := session.call("GET", f"/images/{pull_id}"))["state"] in UNFINISHED:
            if time.monotonic() > deadline:
                raise ImageError(f"the pull on {session.base} did not end within {timeout:.0f} s (pull {pull_id})")
            time.sleep(POLL_SECONDS)
    except ClientError as exc:
        raise ImageError(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise ImageError(f"{session.base} answered what is not a pull record: {type(exc).__name__}: {exc}") from None
    finally:
        session.close()
    if pull["state"] != "COMPLETE":
        raise ImageError(pull.get("error") or f"the pull ended {pull['state']}")
    return pull
