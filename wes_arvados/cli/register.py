"""`wes-arvados register WORKFLOW`: register a CWL workflow in Arvados through a wes-arvados server, no Docker here.

The server puts every image the workflow pulls, and the runner image, into Keep in
the project, pins them, and registers the workflow as ``arvados-cwl-runner
--create-workflow`` would (``--update UUID``: as ``--update-workflow``, keeping
the uuid), so that Workbench users launch it. The client sends the workflow's
files (`client.dependencies`), follows the registration on stderr and prints the
workflow's uuid; the Workbench URL too when the cluster names Workbench 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

from ..client.dependencies import DependencyError, find
from ..client.multipart import MultipartBody
from ..client.session import ClientError, WesSession
from ..images.errors import ImageError
from .run import UploadProgress, cwl_version, add_server_options, fail, registry_auth

POLL_SECONDS = 1.0


def add_register_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Callable[[argparse.Namespace], int]:
    """Add `register` to the command's sub-commands; return its runner."""
    parser = sub.add_parser("register", help="register a CWL workflow in Arvados for Workbench users to launch",
                            description=__doc__)
    parser.add_argument("workflow", help="the CWL document (a path, with #fragment if need be)")
    add_server_options(parser, "registration")
    parser.add_argument("--project-uuid", help="the project the workflow and its images go into")
    parser.add_argument("--name", help="the workflow's name (default its label, else its file name)")
    parser.add_argument("--description", help="its description (default the workflow's doc)")
    parser.add_argument("--update", metavar="UUID", help="register these files for the workflow UUID, keeping it")
    parser.add_argument("--no-wait", action="store_true", help="print the registration's id once sent, and exit")
    return register


def _send(session: WesSession, args: argparse.Namespace, say: Callable[[str], None]) -> str:
    needs = find(Path(args.workflow), bind=False)
    fields: List[Tuple[str, str]] = [
        ("workflow_url", needs.workflow), ("workflow_type", "CWL"),
        ("workflow_type_version", cwl_version(Path(args.workflow.split("#", 1)[0])))]
    fields += [(key, value) for key, value in (("name", args.name), ("description", args.description),
                                               ("project_uuid", args.project_uuid)) if value]
    body = MultipartBody(fields=fields, files=[("workflow_attachment", a.name, a.path) for a in needs.attachments])
    auth = registry_auth(needs, args.registry_config, say, "registration")
    total = sum(a.path.stat().st_size for a in needs.attachments)
    say(f"uploading {len(needs.attachments)} files, {total} bytes, to {session.base}")
    method, path = ("PUT", f"/workflows/{args.update}") if args.update else ("POST", "/workflows")
    answer = session.send_form(method, path, body, auth, sent=UploadProgress(total, say), expect=202)
    registration_id = answer.get("registration_id")
    if not isinstance(registration_id, str):
        raise ClientError(f"{session.base} answered {method} {path} with no registration_id")
    return registration_id


def register(args: argparse.Namespace) -> int:
    """Send the workflow, follow its registration; 0 and the workflow's uuid on stdout once it is registered."""
    say: Callable[[str], None] = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    if not args.server:
        return fail("no server: give --server or set WES_ARVADOS_SERVER", "register")
    session = WesSession(args.server, args.token)
    try:
        registration_id = _send(session, args, say)
        say(f"registration {registration_id}")
        if args.no_wait:
            print(registration_id)
            return 0
        shown, state = 0, ""
        while True:
            registration = session.call("GET", f"/workflows/{registration_id}")
            lines: List[str] = list(registration.get("system_logs") or [])
            for line in lines[shown:]:
                say(line)
            shown = len(lines)
            if registration.get("state") != state:
                state = str(registration.get("state"))
                say(f"registration {state}")
            if state == "COMPLETE":
                if registration.get("workbench_url"):
                    say(f"launch it in Workbench: {registration['workbench_url']}")
                print(registration["workflow_uuid"])
                return 0
            if state == "SYSTEM_ERROR":
                return fail(f"registration {registration_id} failed: {registration.get('error')}", "register")
            time.sleep(POLL_SECONDS)
    except (ClientError, DependencyError, ImageError) as exc:
        return fail(str(exc), "register")
    except KeyboardInterrupt:
        return fail("interrupted (the registration goes on on the server)", "register")
    finally:
        session.close()

