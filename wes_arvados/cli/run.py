"""`wes-arvados run WORKFLOW [JOB]`: run a CWL workflow on a wes-arvados server as cwl-runner would, no Docker here.

It sends what the run needs (`client.dependencies`), streamed, follows the run on
stderr, downloads the outputs into ``--outdir`` and prints the output object. The
exit code is 0 on success, the run's own exit code when the workflow failed
(33 for an unsupported requirement, as cwltool says), and 1 for anything else,
with one line saying why. ``--attach RUN_ID`` follows a run already submitted.
Ctrl-C asks first (a second one within seconds cancels the run, else the run goes
on and the client says how to attach again); with ``--cancel-on-interrupt`` it
cancels at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..client.dependencies import Dependencies, DependencyError, find
from ..client.follow import Interrupted, follow
from ..client.multipart import MultipartBody
from ..client.outputs import download_outputs
from ..client.registry_auth import registries_of, registry_auth_header
from ..client.session import ClientError, WesSession
from ..images.errors import ImageError
from ..images.progress import human_size
from ..images.registry.credentials import REGISTRY_AUTH_HEADER

SERVER_VARIABLES = ("WES_ARVADOS_SERVER", "WES_ENDPOINT")
CONFIRM_SECONDS = 5.0
PROGRESS_SECONDS = 2.0  # between two lines of upload progress
TOKEN_VARIABLES = ("WES_ARVADOS_TOKEN", "ARVADOS_API_TOKEN")


def add_run_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Callable[[argparse.Namespace], int]:
    """Add `run` to the command's sub-commands; return its runner."""
    parser = sub.add_parser("run", help="run a CWL workflow on a wes-arvados server, as cwl-runner does",
                            description=__doc__)
    parser.add_argument("workflow", nargs="?", help="the CWL document (a path, with #fragment if need be)")
    parser.add_argument("job", nargs="?", help="the inputs (YAML or JSON)")
    add_server_options(parser, "run")
    parser.add_argument("--outdir", default=".", help="where the outputs go (default: here)")
    parser.add_argument("--basedir", help="what relative input paths are relative to (default: the job's folder)")
    parser.add_argument("--engine-parameter", action="append", default=[], metavar="OPTION[=VALUE]",
                        help="an engine option for the server to pass (workflow_engine_parameters), e.g. "
                             "--engine-parameter=--disable-reuse; repeatable")
    parser.add_argument("--attach", metavar="RUN_ID", help="follow (and download) a run already submitted")
    parser.add_argument("--cancel-on-interrupt", action="store_true",
                        help="Ctrl-C cancels the run at once (else a second Ctrl-C does)")
    parser.add_argument("--no-wait", action="store_true", help="print the run id once submitted, and exit")
    return run


def add_server_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The options every client command shares: the server, the caller's token, registry credentials, --quiet."""
    parser.add_argument("--server", default=_first(SERVER_VARIABLES),
                        help="the server, http(s)://host[:port] (default $WES_ARVADOS_SERVER or $WES_ENDPOINT)")
    parser.add_argument("--token", default=_first(TOKEN_VARIABLES),
                        help="the bearer token (default $WES_ARVADOS_TOKEN, else $ARVADOS_API_TOKEN)")
    parser.add_argument("--registry-config", action="append", default=[], metavar="CONFIG_JSON",
                        help="a docker config.json: its credentials for the registries of the workflow's images "
                             f"(credHelpers, auths, credsStore) go with this {what} only; repeatable")
    parser.add_argument("--quiet", action="store_true", help="say nothing on stderr but errors")


def registry_auth(needs: Dependencies, config_files: List[str], say: Callable[[str], None],
                  what: str) -> Optional[Dict[str, str]]:
    """The X-Registry-Auth header for the registries of the workflow's images, saying which go (None: none)."""
    if not config_files:
        return None
    registries = registries_of(needs.images)
    auth, covered = registry_auth_header(registries, config_files)
    say(f"registry credentials for {', '.join(covered)} go with this {what}" if covered else
        f"--registry-config has no credentials for {', '.join(registries) or 'the workflow, which names no image'}")
    return {REGISTRY_AUTH_HEADER: auth} if auth else None


def _first(names: tuple) -> Optional[str]:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _load_job(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        return {}
    from ruamel.yaml import YAML  # cwltool's own YAML, always there with it

    try:
        job = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read the job {path}: {exc}") from None
    if not isinstance(job, dict):
        raise ClientError(f"the job {path} is not a mapping of inputs")
    return job


def cwl_version(workflow: Path) -> str:
    from ruamel.yaml import YAML

    try:
        document = YAML(typ="safe").load(workflow.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {workflow}: {exc}") from None
    version = document.get("cwlVersion") if isinstance(document, dict) else None
    return str(version or "v1.2")


def _engine_parameters(given: List[str]) -> Dict[str, Optional[str]]:
    """``--opt`` and ``--opt=value`` as workflow_engine_parameters (a flag's value is null)."""
    parameters: Dict[str, Optional[str]] = {}
    for item in given:
        key, sep, value = item.partition("=")
        parameters[key] = value if sep else None
    return parameters


def run(args: argparse.Namespace) -> int:
    """Submit (or attach to a run), follow, download; the exit code as cwl-runner gives it."""
    say: Callable[[str], None] = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    if not args.server:
        return fail("no server: give --server or set WES_ARVADOS_SERVER")
    if not args.workflow and not args.attach:
        return fail("name a workflow to run, or --attach RUN_ID")
    session = WesSession(args.server, args.token)
    try:
        run_id = args.attach or _submit(session, args, say)
        if args.no_wait:
            print(run_id)
            return 0
        log = _follow(session, run_id, say, args.cancel_on_interrupt)
        state = log.get("state")
        if state == "COMPLETE":
            outputs = download_outputs(session, log.get("outputs") or {}, Path(args.outdir), say)
            print(json.dumps(outputs, indent=4))
            return 0
        exit_code = (log.get("run_log") or {}).get("exit_code")
        if state == "EXECUTOR_ERROR":
            return exit_code if isinstance(exit_code, int) and exit_code > 0 else 1
        last = (log.get("system_logs") or [f"the run ended {state}"])[-1]
        return fail(f"run {run_id} ended {state}: {last}")
    except (ClientError, DependencyError, ImageError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted")
    finally:
        session.close()


def _submit(session: WesSession, args: argparse.Namespace, say: Callable[[str], None]) -> str:
    """Send the workflow and what it needs; the new run's id."""
    job = _load_job(args.job)
    job_dir = Path(args.basedir or (Path(args.job).parent if args.job else "."))
    needs = find(Path(args.workflow), job, job_dir)
    body = MultipartBody(fields=[
        ("workflow_url", needs.workflow), ("workflow_type", "CWL"),
        ("workflow_type_version", cwl_version(Path(args.workflow.split("#", 1)[0]))),
        ("workflow_params", json.dumps(needs.job)),
        *([("workflow_engine_parameters", json.dumps(_engine_parameters(args.engine_parameter)))]
          if args.engine_parameter else [])],
        files=[("workflow_attachment", a.name, a.path) for a in needs.attachments])
    auth = registry_auth(needs, args.registry_config, say, "run")
    total = sum(a.path.stat().st_size for a in needs.attachments)
    say(f"uploading {len(needs.attachments)} files, {total} bytes, to {session.base}")
    run_id = session.submit(body, auth, sent=UploadProgress(total, say))
    say(f"submitted run {run_id}")
    return run_id


class UploadProgress:
    """Told each piece of the files sent; says how far the upload is, at most every PROGRESS_SECONDS."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say = total, say
        self.done = 0
        self.said_at = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.said_at >= PROGRESS_SECONDS:
            self.said_at = now
            self.say(f"uploaded {human_size(self.done)} of {human_size(self.total)} "
                     f"({100 * self.done // max(self.total, 1)}%)")


class _CtrlC:
    """SIGINT as an event, so that following stops between requests, never in the middle of one."""

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self.previous: Any = None

    def __enter__(self) -> "_CtrlC":
        self.previous = signal.signal(signal.SIGINT, lambda signum, frame: self.pressed.set())
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _follow(session: WesSession, run_id: str, say: Callable[[str], None], cancel_on_interrupt: bool) -> Dict[str, Any]:
    """Follow the run to its end. Ctrl-C cancels it with `cancel_on_interrupt`; else it asks first: a second
    Ctrl-C within `CONFIRM_SECONDS` cancels, and without one the client leaves the run going and says how to
    attach again. A Ctrl-C while a canceled run winds down leaves at once."""
    with _CtrlC() as ctrl_c:
        try:
            return follow(session, run_id, say, stop=ctrl_c.pressed)
        except Interrupted:
            ctrl_c.pressed.clear()
        if not cancel_on_interrupt:
            print(f"\ninterrupted: press Ctrl-C again within {CONFIRM_SECONDS:.0f} s to cancel run {run_id}",
                  file=sys.stderr)
            if not ctrl_c.pressed.wait(CONFIRM_SECONDS):
                raise ClientError(f"run {run_id} goes on; follow it with: wes-arvados run --attach {run_id}")
            ctrl_c.pressed.clear()
        say(f"[{run_id}] canceling")
        session.call("POST", f"/runs/{run_id}/cancel")
        try:
            return follow(session, run_id, say, stop=ctrl_c.pressed)
        except Interrupted:
            raise ClientError(f"run {run_id} is being canceled; follow it with: wes-arvados run --attach {run_id}") \
                from None


def fail(message: str, command: str = "run") -> int:
    """Say on one line of stderr why `wes-arvados command` failed; the exit status 1."""
    print(f"wes-arvados {command}: {' '.join(message.split())}", file=sys.stderr)
    return 1
