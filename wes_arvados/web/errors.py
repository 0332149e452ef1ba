"""Every error leaves the server as a WES `ErrorResponse`, never HTML or a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Optional

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from starlette.exceptions import HTTPException

from ..errors import InsufficientStorage, WesError, out_of_space
from ..images.compression import CorruptLayer
from ..images.errors import DigestMismatch, ImageError, RegistryError
from ..images.policy import ImageDenied
from .operations import Routes

log = logging.getLogger(__name__)


def error_response(status_code: int, msg: str, headers: Optional[Mapping[str, str]] = None) -> ConnexionResponse:
    """An `ErrorResponse` body with its status code (and headers the status needs, e.g. 405's Allow)."""
    return ConnexionResponse(
        status_code=status_code,
        body=json.dumps({"msg": msg, "status_code": status_code}),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def wes_error(_request, exc: WesError) -> ConnexionResponse:
    """Our own errors carry their status and a message safe to show."""
    return error_response(exc.status_code, exc.msg)


# The image library knows no HTTP: whose fault each of its errors is, as a status. First match wins.
IMAGE_STATUSES = ((ImageDenied, 403), (RegistryError, 502), (DigestMismatch, 502), (CorruptLayer, 502))


def image_status(exc: ImageError) -> int:
    """The HTTP status of an image error: the registry's failures 502, the operator's policy 403, else 400."""
    if isinstance(exc, WesError):  # a server-side error that is also about an image
        return exc.status_code
    return next((status for kind, status in IMAGE_STATUSES if isinstance(exc, kind)), 400)


def image_error(_request, exc: ImageError) -> ConnexionResponse:
    """An image that could not be had: the message is the library's, the status says whose fault."""
    return error_response(image_status(exc), exc.msg)


def problem(_request, exc: ProblemException) -> ConnexionResponse:
    """Connexion's validation problems, reshaped."""
    msg = exc.detail or exc.title or "bad request"
    return error_response(exc.status or 400, str(msg))


def http_error(_request, exc: HTTPException) -> ConnexionResponse:
    """Routing and protocol errors (404 path, 405, 413 from the request parser)."""
    messages = {
        404: "no such endpoint",
        405: "method not allowed on this endpoint",
        413: "request body too large for this server",
    }
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code not in messages else None
    return error_response(exc.status_code, detail or messages.get(exc.status_code, "request failed"), exc.headers)


def method_not_allowed(routes: Routes) -> Callable[[Any, HTTPException], ConnexionResponse]:
    """`http_error`, with a 405's Allow header listing every method of the path's route.

    Connexion routes each method of a path separately, so Starlette's own Allow
    names only the first one's.
    """
    def handler(request: Any, exc: HTTPException) -> ConnexionResponse:
        response = http_error(request, exc)
        if exc.status_code == 405:
            allowed = routes.allowed(request.url.path)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response
    return handler


def unexpected(_request, exc: Exception) -> ConnexionResponse:
    """Anything else is a server fault: logged in full, reported without details; a full disk is a 507."""
    if out_of_space(exc):
        log.warning("no space left to keep a request: %s", exc)
        return wes_error(_request, InsufficientStorage(
            "the server has no storage space left for this request; nothing of it was kept: send it again later"))
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal server error; the server log has the details")


def install(app, routes: Optional[Routes] = None) -> None:
    """Register the handlers on a connexion app (with `routes`, 405s list the path's methods)."""
    app.add_error_handler(WesError, wes_error)
    app.add_error_handler(ImageError, image_error)
    app.add_error_handler(ProblemException, problem)
    app.add_error_handler(HTTPException, method_not_allowed(routes) if routes else http_error)
    app.add_error_handler(Exception, unexpected)
