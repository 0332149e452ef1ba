"""GetRunStatus, GetRunLog and GetServiceInfo answered in ASGI, ahead of connexion and flask.

Clients poll the first two all the time (toil-wes-cwl-runner once a second per
run), and dashboards service-info.
Through connexion's middleware stack and the thread hop into flask, the framework
took about nine tenths of each answer; the backend's read a tenth. Here the same
steps run without it: the caller found by `web.auth.request_caller`, the backend
call the handler makes, the body `web.shape` makes, errors as `ErrorResponse`.
Nothing is cached: every answer is read from the backend when asked.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import anyio
import yaml
from werkzeug.sansio.utils import get_host

from ..auth import Authenticator
from ..config import Config
from ..errors import WesError
from ..wes.backend import Backend
from ..wes.service_info import service_info
from . import shape
from .auth import request_caller

log = logging.getLogger(__name__)

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The schema each answer must match, checked when the configuration asks for response validation (tests).
SCHEMAS = {"status": "RunStatus", "log": "RunLog", "service-info": "ServiceInfo"}


class FastReads:
    """The ASGI middleware: GET /runs/{run_id}, /runs/{run_id}/status and /service-info; every other request passes
    on."""

    def __init__(self, app: ASGIApp, backend: Backend, config: Config, authenticator: Authenticator,
                 base_path: str, spec_path: Any) -> None:
        self.app = app
        self.backend = backend
        self.config = config
        self.authenticator = authenticator
        self.base_path = base_path
        self.path = re.compile(re.escape(base_path) + r"(?:/runs/([^/]+)(/status)?|/service-info)")
        self.validator = _validator(spec_path) if config.validate_responses else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a run read, or pass the request on."""
        match = self.path.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        kind = "service-info" if match.group(1) is None else "status" if match.group(2) else "log"
        # In a thread: a backend may ask another service (Arvados) and a token may need an issuer's keys.
        status, body = await anyio.to_thread.run_sync(self._answer, scope, match.group(1) or "", kind)
        payload = json.dumps(body).encode() + b"\n"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, scope: Scope, run_id: str, kind: str) -> Tuple[int, Dict[str, Any]]:
        headers = _headers(scope)
        try:
            caller = request_caller(self.authenticator, scope["path"], "GET", headers.get("authorization"))
            backend = self.backend.for_caller(caller)
            if kind == "service-info":
                body: Dict[str, Any] = service_info(backend, self.config)
            elif kind == "status":
                body = shape.run_status(run_id, backend.get_state(run_id))
            else:
                body = shape.run_log(backend.get_run(run_id), self._base_url(scope, headers))
        except WesError as exc:
            return exc.status_code, exc.to_response()
        except Exception as exc:  # as web/errors.py's `unexpected`
            log.error("unhandled error", exc_info=exc)
            return 500, {"msg": "internal server error; the server log has the details", "status_code": 500}
        if self.validator is not None:
            self.validator(SCHEMAS[kind], body)
        return 200, body

    def _base_url(self, scope: Scope, headers: Dict[str, str]) -> str:
        """As `shape.base_url`: the configured public URL, else the scheme and host the client used."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/") + self.base_path
        server = scope.get("server")
        host = get_host(scope["scheme"], headers.get("host"), tuple(server) if server else None)
        return f"{scope['scheme']}://{host}" + self.base_path


def _headers(scope: Scope) -> Dict[str, str]:
    pairs: List[Tuple[bytes, bytes]] = scope["headers"]
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in pairs if k in (b"authorization", b"host")}


def _validator(spec_path: Any) -> Callable[[str, Dict[str, Any]], None]:
    """Checks an answer against a schema of the OpenAPI document, as connexion's response validation would."""
    from connexion.json_schema import Draft4ResponseValidator  # OpenAPI's `nullable`, as connexion reads it

    with open(spec_path, encoding="utf-8") as fh:
        components = yaml.safe_load(fh)["components"]

    def validate(schema: str, body: Dict[str, Any], _components: Optional[Dict[str, Any]] = components) -> None:
        Draft4ResponseValidator({"$ref": f"#/components/schemas/{schema}", "components": _components}).validate(body)

    return validate
