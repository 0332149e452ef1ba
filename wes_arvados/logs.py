"""How the server's processes log: lines of text, or one JSON object per line (``--log-format json``).

Every process of a server sets its logging here from the one Config: the
``serve`` process, the web workers (through gunicorn's ``logconfig_dict``, see
web/gunicorn_conf.py), run supervisors, image pulls and Arvados preparations.
Python's warnings go through logging too, so that in JSON nothing reaches
stderr as free text. A record's ``run_id``, ``pull_id``, ``image`` or
``task_id`` (given with ``extra=``) is a field of its own; uvicorn's access
lines become client, method, path and status fields.

No token or credential is ever logged: requests are logged by path, without
headers, and the credentials the code holds are never formatted into messages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import sys
from typing import Any, Dict

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("run_id", "pull_id", "image", "task_id")
ACCESS_LOGGER = "uvicorn.access"


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, and the fields it carries."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line (without its newline)."""
        event: Dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                event[name] = value
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            event.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for a log format ("text" or "json")."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class _Fields(logging.Filter):
    """Gives every record the fields of the process (a supervisor's run_id, a pull's pull_id) it lacks."""

    def __init__(self, fields: Dict[str, str]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the missing fields; keep the record."""
        for name, value in self.fields.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def configure(level: str, log_format: str, **fields: str) -> None:
    """Send this process's log records (and Python's warnings) to stderr in `log_format`, from `level` up.

    `fields` (e.g. ``run_id=`` in a run's supervisor) go into every record of the process.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    if fields:
        handler.addFilter(_Fields(fields))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def gunicorn_config(level: str) -> Dict[str, Any]:
    """gunicorn's ``logconfig_dict`` for JSON: its own loggers, uvicorn's and the root, all one JSON handler."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {name: dict(quiet) for name in ("gunicorn.error", "gunicorn.access", "uvicorn.error",
                                                    ACCESS_LOGGER)},
    }
