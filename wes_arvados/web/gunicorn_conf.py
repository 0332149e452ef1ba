"""Gunicorn settings used by `wes-arvados serve`; the server's Config comes in its environment."""

import logging
import os

from wes_arvados.config import RESOLVED_ENV, Config
from wes_arvados.logs import gunicorn_config
from wes_arvados.metrics import MULTIPROC_ENV, WORKER_BYTES, reserve_files
from wes_arvados.processes import die_with_parent

worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = 20
timeout = 120
accesslog = "-"
# Several servers may run on one machine; a shared control socket in $HOME would clash.
control_socket_disable = True

if RESOLVED_ENV in os.environ:
    _config = Config.from_json(os.environ[RESOLVED_ENV])
    if _config.log_format == "json":
        logconfig_dict = gunicorn_config(_config.log_level)
logging.captureWarnings(True)  # the workers' import warnings, through the log's handlers


def post_fork(server, worker) -> None:
    """A worker whose master was killed must not keep the port open; its metrics files are allocated first thing."""
    die_with_parent()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and not reserve_files(directory, os.getpid(), WORKER_BYTES):
        logging.getLogger(__name__).warning("no room for the metrics files of worker %d in %s: it may be killed "
                                            "(SIGBUS) when it counts", os.getpid(), directory)
