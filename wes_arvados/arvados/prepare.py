"""Preparing a run on Arvados: its images into Keep, pinned in the staged workflow, then a-c-r commits it.

It runs with the caller's token, outside the web worker, while the run's placeholder
request is Uncommitted. Its progress is in the placeholder's properties
(`PREPARATION_PROPERTY`), with a heartbeat, so that any replica can tell a
preparation going on from one whose server stopped. A failure marks the placeholder
failed with a message naming the cause; nothing is ever silently canceled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence

from ..images.cwl import PULL, find_images
from ..images.errors import ImageError
from ..images.reference import parse_normalized_named
from ..images.registry import AuthConfig
from ..images.service import ImageService, ImageSettings
from ..images.stores.keep import KeepImageStore
from ..timestamps import utcnow
from . import work
from .pin import pin_images
from .runs import (
    LOG_PROPERTY,
    PREPARATION_PROPERTY,
    REQUEST_PROPERTY,
    RUN_PROPERTY,
    SUBMIT_SECONDS,
    TAG_PREFIX,
)
from .submit import add_properties_hint, submit_command

HEARTBEAT_SECONDS = 30.0
Log = Callable[[str], None]


class PreparationFailed(Exception):
    """The run cannot be submitted; the message says why, for the user."""


class PreparationCanceled(Exception):
    """The run was canceled while it was being prepared."""


@dataclass
class PreparationJob:
    """What a-c-r needs to commit a run: where it is staged and how to reach Arvados as the caller."""

    run_id: str
    staged: Path
    workflow: str  # relative to `staged`, with its #fragment if any
    job: Dict[str, Any]
    api_host: str
    token: str = field(repr=False)
    # Registry credentials sent with the run (X-Registry-Auth), for its images only.
    credentials: Dict[str, AuthConfig] = field(default_factory=dict, repr=False)
    insecure: bool = False
    runner_image: str = ""
    project_uuid: Optional[str] = None
    options: Sequence[str] = ()  # from workflow_engine_parameters, checked (submit.ARVADOS_CWL_RUNNER)
    notes: Sequence[str] = ()  # what the server made of the request, for system_logs
    runner: str = "arvados-cwl-runner"


_MARKING = threading.Lock()  # the heartbeat and the preparation update the same properties


def _mark(api: Any, run_id: str, **fields: Any) -> Dict[str, Any]:
    """Update the preparation's record in the placeholder's properties; return the properties as they were.

    Only while the request is Uncommitted: once a-c-r commits it, its properties are a-c-r's and the runner's.
    """
    with _MARKING:
        request = api.container_requests().get(uuid=run_id).execute()
        properties = dict(request["properties"] or {})
        if request["state"] != "Uncommitted":
            return properties
        previous = dict(properties)
        record = dict(properties.get(PREPARATION_PROPERTY) or {})
        if record.get("state") == "canceled":
            fields.pop("state", None)  # a cancel stays a cancel
        properties[PREPARATION_PROPERTY] = dict(record, heartbeat=utcnow(), **fields)
        api.container_requests().update(uuid=run_id, body={"properties": properties}).execute()
        return previous


def images_into_keep(service: ImageService, workflow: Path, runner_image: str, log: Log,
                      credentials: Dict[str, AuthConfig]) -> Dict[str, str]:
    """Every image the workflow pulls, and the runner image, stored in Keep: image name → portable data hash."""
    pinned: Dict[str, str] = {}
    needs = find_images(str(workflow))
    unsupported = [n for n in needs if n.source != PULL]
    if unsupported:
        raise PreparationFailed(f"image {unsupported[0].image or unsupported[0].location} is a "
                                f"{unsupported[0].source} image; on Arvados only dockerPull images are resolved")
    for name in [n.image for n in needs] + [runner_image]:
        ensured = service.ensure(parse_normalized_named(name), credentials or None)
        pinned[name] = str(ensured.stored.portable_data_hash)
        log(ensured.summary())
    return pinned


def prepare(api: Any, submission: PreparationJob, settings: ImageSettings, log: Log,
            heartbeat_seconds: float = HEARTBEAT_SECONDS,
            turn: Callable[[threading.Event], ContextManager[None]] = lambda _: contextlib.nullcontext()) -> str:
    """Prepare and submit the run; return a-c-r's output. `PreparationFailed` (marked on the run) if it cannot.

    The run stays queued, beating, until `turn` lets it work (see `work.turn`); it holds its turn until a-c-r is done.
    """
    canceled = threading.Event()
    lines: List[str] = []

    def note(line: str) -> None:  # for the run's system_logs: shown while it is prepared, kept once committed
        log(line)
        lines.append(f"{utcnow()} {line}")
        _mark(api, submission.run_id, lines=lines)

    try:
        def beat() -> None:
            if (_mark(api, submission.run_id).get(PREPARATION_PROPERTY) or {}).get("state") == "canceled":
                canceled.set()

        with contextlib.ExitStack() as held:
            with work.beating(beat, heartbeat_seconds, submission.run_id):
                held.enter_context(turn(canceled))
                properties = _mark(api, submission.run_id, state="preparing")
                for line in submission.notes:
                    note(line)
                store = KeepImageStore(api, project_uuid=submission.project_uuid)
                path, _, fragment = submission.workflow.partition("#")
                pinned = images_into_keep(ImageService(store, settings), submission.staged / path,
                                           submission.runner_image, note, submission.credentials)
                pin_images(submission.staged, pinned)
                kept = {key: value for key, value in properties.items() if isinstance(value, str) and
                        (key in (RUN_PROPERTY, REQUEST_PROPERTY) or key.startswith(TAG_PREFIX))}
                add_properties_hint(submission.staged / path, fragment, dict(kept, **{LOG_PROPERTY: json.dumps(lines)}))
            # a-c-r may take a while and will replace the properties: no heartbeat may write them meanwhile.
            before = _mark(api, submission.run_id, state="submitting")
            if canceled.is_set() or (before.get(PREPARATION_PROPERTY) or {}).get("state") == "canceled":
                raise PreparationCanceled()
            output = _submit(submission)
        log(output)
        return output
    except work.Canceled:
        raise PreparationCanceled() from None
    except PreparationCanceled:
        raise
    except (ImageError, PreparationFailed) as exc:
        message = " ".join(str(exc).split())
        _mark(api, submission.run_id, state="failed", message=message)
        raise PreparationFailed(message) from exc
    except Exception as exc:  # recorded, never left preparing
        _mark(api, submission.run_id, state="failed", message=f"internal error: {type(exc).__name__}")
        raise


def run_a_c_r(command: List[str], cwd: Path, api_host: str, token: str, insecure: bool,
              timeout: float) -> "subprocess.CompletedProcess[str]":
    """Run a-c-r as the caller (token in its environment only), with a HOME of its own; `PreparationFailed`
    with its output if it cannot run or fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")}
    env.update(ARVADOS_API_HOST=api_host, ARVADOS_API_TOKEN=token, ARVADOS_API_HOST_INSECURE="1" if insecure else "0")
    env.pop("XDG_CACHE_HOME", None)
    with tempfile.TemporaryDirectory(prefix="wes-arvados-acr-") as home:
        env["HOME"] = home
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PreparationFailed(f"arvados-cwl-runner could not run: {exc}") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr + done.stdout).split())[-2000:]
        raise PreparationFailed(f"arvados-cwl-runner exited {done.returncode}: {tail}")
    return done


def _submit(submission: PreparationJob) -> str:
    """Run a-c-r to commit the prepared run; its output, or `PreparationFailed` with it."""
    job = submission.staged / ".wes-job.json"
    job.write_text(json.dumps(submission.job))
    command: List[str] = submit_command(submission.runner, submission.workflow, str(job), submission.run_id,
                                        submission.runner_image, submission.project_uuid, submission.options)
    done = run_a_c_r(command, submission.staged, submission.api_host, submission.token, submission.insecure,
                     SUBMIT_SECONDS)
    return (done.stderr + done.stdout).strip()
