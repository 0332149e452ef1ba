"""What operators and their tools ask of the server, beside WES: health, readiness, metrics.

`Operations` is the outermost ASGI middleware. It answers three paths itself,
with no token (probes and scrapers carry none, and the answers hold no run's
data):

- ``/healthz``: the process answers;
- ``/readyz``: the backend can work now (`Backend.ready`), else 503 saying why;
- ``/metrics``: Prometheus' text format, summed over the server's processes.

Every other request is counted and timed under the OpenAPI route it matched
(``/runs/{run_id}``), never its raw path, so that run ids do not become labels.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Pattern, Tuple

import anyio
import yaml

from .. import metrics
from ..errors import ServerError
from ..wes.backend import Backend

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH, READY, METRICS = "/healthz", "/readyz", "/metrics"
OTHER_ROUTE = "other"  # a path no operation has: its label, whatever it was
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


class Routes:
    """Labels for request paths: the OpenAPI path template each one matches."""

    def __init__(self, spec: Path, base_path: str) -> None:
        with open(spec, encoding="utf-8") as fh:
            paths = yaml.safe_load(fh).get("paths") or {}
        templates = list(paths.keys())
        self.patterns: List[Tuple[Pattern[str], str]] = [
            (re.compile(re.escape(base_path) + _template_pattern(t) + "/?"), base_path + t) for t in templates]
        self._methods = {base_path + t: [m.upper() for m in item if m.upper() in HTTP_METHODS]
                         for t, item in paths.items()}
        self.prefixes = [(base_path + "/ui", base_path + "/ui"), (base_path + "/openapi", base_path + "/openapi")]

    def allowed(self, path: str) -> List[str]:
        """The methods the document gives `path`'s route (HEAD with GET, as the server answers it)."""
        methods = list(self._methods.get(self.label(path), []))
        return methods + ["HEAD"] if "GET" in methods and "HEAD" not in methods else methods

    def label(self, path: str) -> str:
        """The route `path` belongs to, or OTHER_ROUTE."""
        for pattern, template in self.patterns:
            if pattern.fullmatch(path):
                return template
        for prefix, label in self.prefixes:
            if path.startswith(prefix):
                return label
        return OTHER_ROUTE


def _template_pattern(template: str) -> str:
    """A regular expression for an OpenAPI path template; ``{path}`` (an output's path) may hold slashes."""
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join(("(.+)" if p == "{path}" else "([^/]+)") if p.startswith("{") else re.escape(p) for p in parts)


class Operations:
    """The ASGI middleware: the three operating paths, and HTTP metrics for the rest."""

    def __init__(self, app: ASGIApp, backend: Backend, routes: Routes) -> None:
        self.app = app
        self.backend = backend
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an operating path, or pass the request on and count it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == HEALTH:
            await _answer(send, 200, _json({"status": "ok"}))
            return
        if path == READY:
            await self._ready(send)
            return
        if path == METRICS:
            body = await anyio.to_thread.run_sync(metrics.exposition, self.backend.state_counts)
            await _answer(send, 200, body, metrics.CONTENT_TYPE)
            return
        started = time.perf_counter()
        status: Optional[int] = None

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route, method = self.routes.label(path), scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(route, method, str(status or 500)).inc()
            metrics.HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)

    async def _ready(self, send: Send) -> None:
        try:
            await anyio.to_thread.run_sync(self.backend.ready)
        except ServerError as exc:
            await _answer(send, 503, _json({"status": "unavailable", "reason": exc.msg}))
            return
        await _answer(send, 200, _json({"status": "ready"}))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


async def _answer(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
