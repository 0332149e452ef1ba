"""Builds the connexion application that serves WES at /ga4gh/wes/v1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import connexion
from connexion.middleware import MiddlewarePosition
from connexion.validators import (
    AbstractRequestBodyValidator,
    JSONRequestBodyValidator,
    ParameterValidator,
)

from ..config import Config, load_config
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


class NamedParameterValidator(ParameterValidator):
    """Connexion's parameter checks, with messages that name the parameter."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        """Return an error message naming the parameter, or None when the value is valid."""
        error = ParameterValidator.validate_parameter(parameter_type, value, param, param_name)
        if error and not error.startswith("Missing"):
            return f"{parameter_type} parameter '{param['name']}' is invalid: {error.splitlines()[0]}"
        return error


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
    auth.install(flask_app, config)
    app.add_api(
        spec_path(),
        base_path=BASE_PATH,
        validate_responses=config.validate_responses,
        swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui_path="/ui"),
        validator_map={
            "parameter": NamedParameterValidator,
            "body": {
                "application/json": JSONRequestBodyValidator,
                "application/x-www-form-urlencoded": StreamedMultipart,
                "multipart/form-data": StreamedMultipart,
            }
        },
    )
    errors.install(app)
    # Outermost, so that it sees every answer's status, errors' included.
    app.add_middleware(Operations, position=MiddlewarePosition.BEFORE_EXCEPTION, backend=backend,
                       routes=Routes(spec_path(), BASE_PATH))
    return app
