"""The API service's HTTP face: routes from the discovery document, tokens, bodies, JSON answers and errors."""

from __future__ import annotations

import json
import re
import secrets
import string
import sys
import time
import traceback
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import ApiError, NotFound
from .https import QuietHandler

DISCOVERY_PATH = "/discovery/v1/apis/arvados/v1/rest"
PUBLIC = {("configs", "get"), ("vocabularies", "get")}  # answered without a token, as the controller does


@dataclass
class Route:
    """One method of the discovery document: HTTP method, path pattern, resource and method name."""

    http_method: str
    pattern: "re.Pattern[str]"
    literal: bool
    resource: str
    action: str


@dataclass
class Call:
    """One API call as the double received it (for tests, and to learn what a client does)."""

    http_method: str
    method: str  # discovery name, e.g. "collections.create"
    params: Dict[str, Any]
    body: Any
    status: int = 200

# The controller's live log of a request's container (not in the discovery document).
LIVE_LOG = re.compile(r"^/arvados/v1/container_requests/([^/]+)/log/([^/]+)/(.+)$")


def routes(discovery: Dict[str, Any]) -> List[Route]:
    """Every method the discovery document declares, literal paths (users/current) before templated ones."""
    out = []
    for resource, spec in discovery["resources"].items():
        for action, method in spec["methods"].items():
            path = method["path"]
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
            out.append(Route(method["httpMethod"], re.compile(f"^{regex}$"), "{" not in path, resource, action))
    out.sort(key=lambda r: not r.literal)
    return out


def request_id() -> str:
    """A request id as the clients make them."""
    return "req-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(20))


def error_document(error: ApiError, req_id: str) -> Dict[str, Any]:
    """The API server's error body: messages tagged with the request id, and an error token."""
    return {"errors": [f"{m} ({req_id})" for m in error.messages],
            "error_token": f"{int(time.time())}+{secrets.randbits(32):08x}"}


def _params(query: str) -> Dict[str, Any]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}


class ApiHandler(QuietHandler):
    """/discovery/v1/apis/arvados/v1/rest and /arvados/v1/...; `self.server.app` is the `ApiService`."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        service = self.server.app  # type: ignore[attr-defined]
        req_id = self.headers.get("X-Request-Id") or request_id()
        body = self.read_body()
        call: Optional[Call] = None
        try:
            path, _, query = self.path.partition("?")
            if path == DISCOVERY_PATH and method == "GET":
                return self.send_json(200, service.discovery_document(), headers={"Cache-Control": "no-store"})
            params = _params(query)
            live = LIVE_LOG.match(path)
            if live and method in ("GET", "HEAD"):
                return self._live_log(service, req_id, method, params, *live.groups())
            override = self.headers.get("X-HTTP-Method-Override")
            if method == "POST" and override:  # a GET whose URL was too long
                method = override.upper()
            if "form-urlencoded" in (self.headers.get("Content-Type") or ""):
                params.update(_params(body.decode()))
                body = b""
            route, path_params = self._route(service.routes, method, path)
            params.update(path_params)
            document = json.loads(body) if body.strip() else {}
            call = service.record_call(method, route.resource, route.action, params, document)
            public = (route.resource, route.action) in PUBLIC
            caller = None if public else service.cluster.tokens.caller(self._token(params))
            result = service.cluster.call(caller, route.resource, route.action, params, document)
            self.send_json(200, result, headers={"X-Request-Id": req_id})
        except Exception as error:
            if not isinstance(error, ApiError):
                if isinstance(error, json.JSONDecodeError):
                    error = ApiError(f"#<JSON::ParserError: {error}>")
                else:  # a bug in the double: answer 422 so clients fail now instead of retrying
                    traceback.print_exc(file=sys.stderr)
                    error = ApiError(f"internal error in the Arvados test double: {error!r}")
            if call is not None:
                call.status = error.status
            self.send_json(error.status, error_document(error, req_id), headers={"X-Request-Id": req_id})

    def _live_log(self, service: Any, req_id: str, method: str, params: Dict[str, Any], request_uuid: str,
                  container_uuid: str, name: str) -> None:
        """A log file of a request's container as the controller serves it while the container runs.

        The caller must be able to read the request, and the container must be the
        request's; the bytes are crunch-run's (`ArvadosDouble.write_live_log`); Range works.
        """
        caller = service.cluster.tokens.caller(self._token(params))
        request = service.cluster.call(caller, "container_requests", "get", {"uuid": request_uuid}, {})
        data = service.cluster.live_logs.get((container_uuid, urllib.parse.unquote(name)))
        if request.get("container_uuid") != container_uuid or data is None:
            raise NotFound()
        status, headers = 200, {"X-Request-Id": req_id, "Accept-Ranges": "bytes"}
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if ranged and int(ranged.group(1)) < len(data):
            start = int(ranged.group(1))
            end = min(int(ranged.group(2)) if ranged.group(2) else len(data) - 1, len(data) - 1)
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{len(data)}"
            data = data[start:end + 1]
        self.send_bytes(status, data, "text/plain; charset=utf-8", headers, head_only=method == "HEAD")

    def _route(self, table: List[Route], method: str, path: str) -> Tuple[Route, Dict[str, str]]:
        if path.startswith("/arvados/v1/"):
            sub = path[len("/arvados/v1/"):]
            for route in table:
                match = route.pattern.match(sub)
                if match and route.http_method == method:
                    return route, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        raise NotFound()

    def _token(self, params: Dict[str, Any]) -> Optional[str]:
        match = re.match(r"(OAuth2|Bearer) ([!-~]+)", self.headers.get("Authorization") or "")
        return match.group(2) if match else params.get("api_token")
