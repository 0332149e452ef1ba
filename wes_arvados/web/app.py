"""Builds the connexion application that serves WES at /ga4gh/wes/v1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional

import connexion
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.middleware import MiddlewarePosition
from connexion.validators import (
    AbstractRequestBodyValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
    TextResponseBodyValidator,
)
from werkzeug.exceptions import RequestEntityTooLarge

from ..auth import Authenticator
from ..config import Config, load_config
from ..errors import NotFound, TooLarge
from ..wes.backend import make_backend
from . import auth, errors
from .operations import Operations, Routes

BASE_PATH = "/ga4gh/wes/v1"
EXTENSION_KEY = "wes_arvados"


def spec_path() -> Path:
    """Where the OpenAPI document is: the source tree, or the installed data files."""
    candidates = [
        Path(__file__).resolve().parents[2] / "openapi" / "wes.yaml",
        Path(sys.prefix) / "share" / "wes-arvados" / "openapi" / "wes.yaml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("openapi/wes.yaml not found; is wes-arvados installed?")


class StreamedMultipart(AbstractRequestBodyValidator):
    """Leaves form bodies (RunWorkflow's) to the handler, which streams and checks them itself.

    Connexion's own form validator buffers the whole body in memory and caps
    each field at 1 MiB; RunWorkflow uploads can be large and its checks give
    more precise errors than a schema can.
    """

    def __init__(self, **kwargs) -> None:  # noqa: D107 - same signature as connexion's
        super().__init__(**kwargs)

    async def wrap_receive(self, receive, *, scope):
        """Pass the body through untouched."""
        return receive, scope

    def _parse(self, stream, scope):  # pragma: no cover - never called
        raise NotImplementedError

    def _validate(self, body):  # pragma: no cover - never called
        raise NotImplementedError


class Utf8JSONBody(JSONRequestBodyValidator):
    """Connexion's JSON body validator, with a body that is not UTF-8 a 400 rather than a crash."""

    async def _parse(self, stream, scope):
        try:
            return await super()._parse(stream, scope)
        except UnicodeDecodeError as exc:
            raise BadRequestProblem(detail=f"the request body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None


class PlainTextResponse(TextResponseBodyValidator):
    """A text/plain answer (a log) checked as the text it is.

    Connexion's own parses the text as JSON when it can, so a log that holds a
    JSON object failed the document's ``type: string``; and a log with bytes that
    are not UTF-8 made it raise.
    """

    def _parse(self, stream):
        return b"".join(stream).decode(self._encoding, errors="replace")


class NamedParameterValidator(ParameterValidator):
    """Connexion's parameter checks, with messages that name the parameter."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        """Return an error message naming the parameter, or None when the value is valid."""
        error = ParameterValidator.validate_parameter(parameter_type, value, param, param_name)
        if error and not error.startswith("Missing"):
            return f"{parameter_type} parameter '{param['name']}' is invalid: {error.splitlines()[0]}"
        return error


def refuse_unrouted() -> None:
    """`NotFound` for a request that reached Flask without connexion's routing.

    Starlette's mount does not match a path with a newline in it (its ``.*``)
    while Flask's router does; connexion's handler wrapper then fails on the
    missing operation. Such a path names no endpoint connexion serves.
    """
    try:
        connexion.context.operation.operation_id
    except RuntimeError:
        raise NotFound("no such endpoint") from None


def body_too_large(limit: int) -> Callable[[RequestEntityTooLarge], NoReturn]:
    """Flask's handler for a body over MAX_CONTENT_LENGTH: a `TooLarge` that names the limit.

    Connexion parses RunWorkflow's form before the handler runs, so this is where it is refused.
    """
    def refuse(_exc: RequestEntityTooLarge) -> NoReturn:
        raise TooLarge(f"the request body is too large: this server's limit is {limit} bytes (max_upload_bytes)")
    return refuse


def create_app(config: Optional[Config] = None) -> connexion.FlaskApp:
    """The WES application for a configuration (read from the environment when not given)."""
    config = config or load_config()
    app = connexion.FlaskApp(__name__)
    flask_app = app.app
    flask_app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    flask_app.config["MAX_FORM_MEMORY_SIZE"] = config.max_upload_bytes
    flask_app.config["MAX_FORM_PARTS"] = config.max_attachments + 100  # a backstop: wes/limits.py says it first
    backend = make_backend(config)
    flask_app.extensions[EXTENSION_KEY] = {"config": config, "backend": backend}
    flask_app.before_request(refuse_unrouted)
    flask_app.register_error_handler(RequestEntityTooLarge, body_too_large(config.max_upload_bytes))
    authenticator = Authenticator(config)
    auth.install(flask_app, authenticator)
    app.add_api(
        spec_path(),
        base_path=BASE_PATH,
        validate_responses=config.validate_responses,
        swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui_path="/ui"),
        validator_map={
            "parameter": NamedParameterValidator,
            "body": {
                "application/json": Utf8JSONBody,
                "application/x-www-form-urlencoded": StreamedMultipart,
                "multipart/form-data": StreamedMultipart,
            },
            "response": MediaTypeDict({
                "*/*json": JSONResponseBodyValidator,
                "text/plain": PlainTextResponse,
            }),
        },
    )
    routes = Routes(spec_path(), BASE_PATH)
    errors.install(app, routes)
    # Outermost, so that it sees every answer's status, errors' included.
    app.add_middleware(Operations, position=MiddlewarePosition.BEFORE_EXCEPTION, backend=backend,
                       routes=routes)
    # Inside Operations (counted like any request), ahead of connexion and flask.
    from .fast_reads import FastReads  # here: it shapes answers with shape.py, which imports this module
    app.add_middleware(FastReads, position=MiddlewarePosition.BEFORE_EXCEPTION, backend=backend, config=config,
                       authenticator=authenticator, base_path=BASE_PATH, spec_path=spec_path())
    return app
