"""``python -m wes_arvados.arvados.preparer RUN_ID``: one run's preparation, in a process of its own.

The web worker that took RunWorkflow starts it and writes the job on its stdin: the
run id, the staged directory (handed over: it is removed at the end), the workflow,
the inputs, the caller's token and any registry credentials sent with the run, which
are never written anywhere.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from ..config import image_settings, load_config
from ..logs import configure as configure_logging
from ..images.registry import AuthConfig
from . import runs, work
from .api import client_for
from .backend import runner_image
from .prepare import PreparationCanceled, PreparationFailed, PreparationJob, prepare

log = logging.getLogger("wes_arvados.arvados.preparer")


def main() -> int:
    """Prepare and submit the run described on stdin; the exit status says whether a-c-r committed it."""
    config = load_config()
    job = json.loads(sys.stdin.read())
    configure_logging(config.log_level, config.log_format, run_id=job["run_id"])
    staged = Path(job["staged"])
    arvados = config.arvados
    submission = PreparationJob(run_id=job["run_id"], staged=staged, workflow=job["workflow"], job=job["job"],
                            api_host=arvados.api_host, token=job["token"], insecure=arvados.api_host_insecure,
                            runner_image=runner_image(config), project_uuid=arvados.project_uuid or None,
                            runner=str(Path(sys.executable).with_name("arvados-cwl-runner")),
                            options=job.get("options") or [], notes=job.get("notes") or [],
                            credentials={registry: AuthConfig(**fields)
                                         for registry, fields in (job.get("credentials") or {}).items()})
    api = client_for(arvados.api_host, job["token"], arvados.api_host_insecure)
    try:
        prepare(api, submission, image_settings(config), lambda line: log.info("run %s: %s", job["run_id"], line),
                heartbeat_seconds=arvados.heartbeat_timeout / 4, turn=lambda canceled: work.turn(config, canceled))
        return 0
    except (PreparationFailed, PreparationCanceled) as exc:
        log.info("run %s: not submitted: %s", job["run_id"], exc or "canceled")
        return 1
    except Exception as exc:  # marked failed by `prepare`; the log has the trace
        log.exception("run %s: preparation failed", job["run_id"])
        runs.fail_preparation(api, job["run_id"], f"internal error: {type(exc).__name__}")
        return 1
    finally:
        shutil.rmtree(staged, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
