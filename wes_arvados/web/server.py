"""The server process: gunicorn + uvicorn web workers, and the backend's background work, stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, List

from ..config import Config
from ..logs import configure as configure_logging
from ..processes import die_with_parent
from .. import metrics
from ..wes.backend import BackgroundWork, make_backend

log = logging.getLogger(__name__)


def gunicorn_command(config: Config) -> List[str]:
    """The gunicorn command line for this configuration."""
    return [
        sys.executable, "-m", "gunicorn",
        "--config", "python:wes_arvados.web.gunicorn_conf",
        "--workers", str(config.workers),
        "--bind", f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}",
        "--log-level", config.log_level,
        "wes_arvados.web.app:create_app()",
    ]


def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; return the exit status."""
    configure_logging(config.log_level, config.log_format)
    os.makedirs(config.state_dir, exist_ok=True)
    work: List[BackgroundWork] = list(make_backend(config).background_work())
    if os.environ.get(metrics.MULTIPROC_ENV):
        work.append(metrics.Compactor(os.environ[metrics.MULTIPROC_ENV]))
    env = config.child_env()
    web = subprocess.Popen(gunicorn_command(config), env=env, preexec_fn=die_with_parent)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=w.run_forever, name=w.name, daemon=True) for w in work]
    for thread in threads:
        thread.start()
    log.info("serving WES on http://%s:%d/ga4gh/wes/v1 (state in %s)", config.host, config.port, config.state_dir)
    if config.backend == "local" and not config.auth_enabled:
        log.warning("authentication is off: every caller is one user, who sees every run (allowed on loopback "
                    "only; configure auth_token_file or oidc_issuer to give users runs of their own)")
    while not stop.is_set() and web.poll() is None:
        stop.wait(0.5)
    for w in work:
        w.stop()
    if web.poll() is None:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
    for thread in threads:
        thread.join(timeout=10)
    # Runs keep going under their supervisors; the next start picks them up.
    return 0 if stop.is_set() else (web.returncode or 1)
