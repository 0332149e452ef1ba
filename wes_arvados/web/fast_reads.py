"""GetRunStatus, GetRunLog, ListRuns and GetServiceInfo answered in ASGI, ahead of connexion and flask.

Clients poll the first two all the time (toil-wes-cwl-runner once a second per
run), and dashboards the others. A ListRuns whose query is not plainly well
formed passes on, for connexion to validate and answer.
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
from urllib.parse import parse_qsl

import anyio
import yaml
from werkzeug.sansio.utils import get_host

from ..auth import Authenticator
from ..config import Config
from ..errors import WesError
from ..wes.backend import Backend
from ..wes.pages import MAX_PAGE_SIZE
from ..wes.service_info import service_info
from ..wes.states import State
from . import shape
from .auth import request_caller
from .handlers import run_list

log = logging.getLogger(__name__)

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The schema each answer must match, checked when the configuration asks for response validation (tests).
SCHEMAS = {"status": "RunStatus", "log": "RunLog", "list": "RunListResponse", "service-info": "ServiceInfo"}
LIST_PARAMETERS = ("page_size", "page_token", "state", "tag")
STATES = frozenset(state.value for state in State)


class FastReads:
    """The ASGI middleware: GET /runs/{run_id}, /runs/{run_id}/status, /runs and /service-info; every other request
    passes on."""

    def __init__(self, app: ASGIApp, backend: Backend, config: Config, authenticator: Authenticator,
                 base_path: str, spec_path: Any) -> None:
        self.app = app
        self.backend = backend
        self.config = config
        self.authenticator = authenticator
        self.base_path = base_path
        self.path = re.compile(re.escape(base_path) + r"(?:/runs/([^/]+)(/status)?|/runs|/service-info)")
        self.validator = _validator(spec_path) if config.validate_responses else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a run read, or pass the request on."""
        match = self.path.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        query: Optional[Dict[str, Any]] = None
        if match.group(1) is not None:
            kind = "status" if match.group(2) else "log"
        elif scope["path"].endswith("/runs"):
            kind, query = "list", _list_query(scope.get("query_string", b""))
            if query is None:
                await self.app(scope, receive, send)
                return
        else:
            kind = "service-info"
        # In a thread: a backend may ask another service (Arvados) and a token may need an issuer's keys.
        status, body = await anyio.to_thread.run_sync(self._answer, scope, match.group(1) or "", kind, query)
        payload = json.dumps(body).encode() + b"\n"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, scope: Scope, run_id: str, kind: str,
                query: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
        headers = _headers(scope)
        try:
            caller = request_caller(self.authenticator, scope["path"], "GET", headers.get("authorization"))
            backend = self.backend.for_caller(caller)
            if kind == "service-info":
                body: Dict[str, Any] = service_info(backend, self.config)
            elif kind == "list":
                body = run_list(backend, **(query or {}))
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


def _list_query(query_string: bytes) -> Optional[Dict[str, Any]]:
    """ListRuns' parameters from a query that plainly matches the document, else None.

    Only what the schema allows is taken: the four parameters, ``page_size``
    and ``page_token`` once, ``page_size`` a decimal integer within the bounds, each ``state`` a
    WES state, no empty ``tag``, UTF-8 throughout. Anything else is connexion's
    to judge.
    """
    try:
        pairs = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    values: Dict[str, List[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    if not set(values) <= set(LIST_PARAMETERS) or any(len(values.get(k, ())) > 1 for k in ("page_size", "page_token")):
        return None
    size = values.get("page_size", [None])[0]
    if size is not None and not (size.isascii() and size.isdigit() and 1 <= int(size) <= MAX_PAGE_SIZE):
        return None  # the schema's bounds
    if not set(values.get("state", ())) <= STATES or not all(values.get("tag", ())):
        return None
    return {"page_size": None if size is None else int(size), "page_token": values.get("page_token", [None])[0],
            "state": values.get("state"), "tag": values.get("tag")}


def _headers(scope: Scope) -> Dict[str, str]:
    pairs: List[Tuple[bytes, bytes]] = scope["headers"]
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in pairs if k in (b"authorization", b"host")}


def _validator(spec_path: Any) -> Callable[[str, Dict[str, Any]], None]:
    """Checks an answer against a schema of the OpenAPI document, as connexion's response validation would."""
    from connexion.json_schema import (
        Draft4ResponseValidator,  # OpenAPI's `nullable`, as connexion reads it
    )

    with open(spec_path, encoding="utf-8") as fh:
        components = yaml.safe_load(fh)["components"]

    def validate(schema: str, body: Dict[str, Any], _components: Optional[Dict[str, Any]] = components) -> None:
        Draft4ResponseValidator({"$ref": f"#/components/schemas/{schema}", "components": _components}).validate(body)

    return validate
