"""`wes-arvados serve`: the web workers (gunicorn + uvicorn) and the run scheduler, stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import List

from .config import RESOLVED_ENV, Config
from .processes import die_with_parent
from .local.scheduler import Scheduler

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
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(config.state_dir, exist_ok=True)
    scheduler = Scheduler(config)
    env = dict(os.environ, **{RESOLVED_ENV: config.to_json()})
    web = subprocess.Popen(gunicorn_command(config), env=env, preexec_fn=die_with_parent)
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=scheduler.run_forever, name="scheduler", daemon=True)
    thread.start()
    log.info("serving WES on http://%s:%d/ga4gh/wes/v1 (state in %s)", config.host, config.port, config.state_dir)
    while not stop.is_set() and web.poll() is None:
        stop.wait(0.5)
    scheduler.stopping.set()
    if web.poll() is None:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
    thread.join(timeout=10)
    # Runs keep going under their supervisors; the next start picks them up.
    return 0 if stop.is_set() else (web.returncode or 1)
