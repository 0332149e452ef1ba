"""`wes-arvados pull IMAGE --server URL`: have a running server import the image into its store.

The pull goes through the server's image pull service (``POST /images``, then
``GET /images/{pull_id}`` until it ends), so the image lands where that server's
runs find it, with no Docker and no download on this machine. Credentials named
with ``--registry-config`` for the image's registry travel in ``X-Registry-Auth``
for that pull only; the default Docker config is never sent.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..http import Client, TransportError, read_capped
from ..images.errors import ImageError
from ..images.reference import parse_normalized_named
from ..images.registry.credentials import REGISTRY_AUTH_HEADER, DockerConfig

API_PATH = "/ga4gh/wes/v1"
POLL_SECONDS = 0.5
UNFINISHED = ("QUEUED", "RUNNING")
# The largest answer read from the server: a pull record is a few kB.
MAX_ANSWER = 1 << 20


def api_base(server: str) -> str:
    """The WES base URL of `server`, given as http(s)://host[:port] with or without /ga4gh/wes/v1."""
    base = server.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def registry_auth_header(image: str, config_files: List[str]) -> Optional[str]:
    """X-Registry-Auth with the `auths` entry for the image's registry from the given config files, if any."""
    registry = parse_normalized_named(image).registry
    for path in config_files:
        auth = DockerConfig.load(Path(path)).auths.get(registry)
        if auth:
            entry = {"username": auth.username, "password": auth.password, "identitytoken": auth.identity_token,
                     "registrytoken": auth.registry_token}
            doc = {"auths": {registry: {k: v for k, v in entry.items() if v}}}
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return None


def pull_on_server(server: str, image: str, platform: Optional[str], config_files: List[str],
                   token: Optional[str] = None, timeout: float = 3600) -> Dict[str, Any]:
    """Ask `server` to import `image`; wait for the pull to end and return its record (raise `ImageError` if it failed)."""
    base = api_base(server)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    auth = registry_auth_header(image, config_files)
    if auth:
        headers[REGISTRY_AUTH_HEADER] = auth
    body = {"image": image, **({"platform": platform} if platform else {})}
    client = Client(timeout=60)
    try:
        status, answer = _call(client, "POST", base + "/images", headers, json.dumps(body).encode())
        if status != 202:
            raise ImageError(f"{base} answered {status}: {_message(answer)}")
        pull_id = json.loads(answer)["pull_id"]
        deadline = time.monotonic() + timeout
        headers.pop(REGISTRY_AUTH_HEADER, None)
        while True:
            status, answer = _call(client, "GET", f"{base}/images/{pull_id}", headers)
            if status != 200:
                raise ImageError(f"{base} answered {status}: {_message(answer)}")
            pull = json.loads(answer)
            if pull["state"] not in UNFINISHED:
                break
            if time.monotonic() > deadline:
                raise ImageError(f"the pull on {base} did not end within {timeout:.0f} s (pull {pull_id})")
            time.sleep(POLL_SECONDS)
    except TransportError as exc:
        raise ImageError(f"cannot reach {base}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{base} answered what is not a pull record: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    if pull["state"] != "COMPLETE":
        raise ImageError(pull.get("error") or f"the pull ended {pull['state']}")
    return pull


def _call(client: Client, method: str, url: str, headers: Dict[str, str],
          body: Optional[bytes] = None) -> Tuple[int, bytes]:
    """The status and body of one request (a JSON body when `body` is given)."""
    sent = {**headers, "Content-Type": "application/json"} if body is not None else headers
    response = client.request(method, url, sent, body)
    return response.status, read_capped(response, MAX_ANSWER, f"the answer of {url}")


def _message(answer: bytes) -> str:
    try:
        return str(json.loads(answer).get("msg", answer.decode(errors="replace")))
    except (ValueError, AttributeError):
        return answer[:200].decode(errors="replace")
