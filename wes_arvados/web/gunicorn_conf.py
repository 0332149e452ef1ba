"""Gunicorn settings used by `wes-arvados serve`."""

from wes_arvados.processes import die_with_parent

worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = 20
timeout = 120
accesslog = "-"
# Several servers may run on one machine; a shared control socket in $HOME would clash.
control_socket_disable = True


def post_fork(server, worker) -> None:
    """A worker whose master was killed must not keep the port open."""
    die_with_parent()
