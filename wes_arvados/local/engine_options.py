"""The cwltool command line of a run: which `workflow_engine_parameters` pass, and what the server adds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from ..errors import BadRequest
from .rundir import RunDir

# Flags (no value) that only change how the engine evaluates the workflow.
FLAGS = frozenset({
    "--parallel", "--strict", "--non-strict", "--relax-path-checks", "--timestamps", "--debug",
    "--js-console", "--enable-ext", "--enable-dev", "--compute-checksum", "--no-compute-checksum",
    "--disable-js-validation", "--strict-memory-limit", "--strict-cpu-limit", "--skip-schemas",
    "--no-container", "--no-doc-cache", "--doc-cache",
})
# Options with a value, and a check of that value.
VALUED = {
    "--eval-timeout": lambda v: float(v) > 0,
    "--on-error": lambda v: v in ("stop", "continue"),
    "--default-container": lambda v: bool(v.strip()),
}
# Set by the server for every run; a client's value is ignored (clients such as
# toil-wes-cwl-runner always send their own --outdir).
SERVER_CONTROLLED = frozenset({
    "--outdir", "--tmpdir-prefix", "--tmp-outdir-prefix", "--basedir", "--quiet", "--verbose",
    "--move-outputs", "--leave-outputs", "--copy-outputs", "--disable-color", "--enable-color",
})
# Would let the engine read or write outside the run directory, or weaken isolation.
REFUSED = frozenset({
    "--cachedir", "--provenance", "--preserve-environment", "--preserve-entire-environment",
    "--user-space-docker-cmd", "--singularity", "--podman", "--udocker", "--log-dir", "--write-summary",
    "--overrides", "--leave-tmpdir", "--leave-container", "--no-read-only", "--custom-net",
    "--mpi-config-file", "--tmpdir", "--beta-dependency-resolvers-configuration",
    "--beta-conda-dependencies", "--beta-dependencies-directory", "--make-template", "--pack",
})

_FALSE = ("false", "0", "no", "off")


def cwltool_options(parameters: Dict[str, Optional[str]]) -> Tuple[List[str], List[str]]:
    """Map workflow_engine_parameters to cwltool arguments; return them and notes for system_logs.

    Unknown parameters are ignored with a note; parameters that would escape the
    run directory are refused with `BadRequest`.
    """
    options: List[str] = []
    notes: List[str] = []
    for raw_key, value in sorted(parameters.items()):
        key = raw_key if raw_key.startswith("-") else "--" + raw_key
        if key in REFUSED:
            raise BadRequest(f"workflow_engine_parameters: {raw_key} is not allowed: it would escape the run directory")
        if key in SERVER_CONTROLLED:
            notes.append(f"workflow_engine_parameters: {raw_key} ignored: the server sets it")
        elif key in FLAGS:
            if value is None or str(value).strip().lower() not in _FALSE:
                options.append(key)
        elif key in VALUED:
            if value is None:
                raise BadRequest(f"workflow_engine_parameters: {raw_key} needs a value")
            try:
                valid = VALUED[key](value)
            except ValueError:
                valid = False
            if not valid:
                raise BadRequest(f"workflow_engine_parameters: {raw_key}={value!r} is not a valid value")
            options += [key, value]
        else:
            notes.append(f"workflow_engine_parameters: {raw_key} ignored: not an option this server accepts")
    return options, notes


def default_parameters() -> List[dict]:
    """The engine parameters clients may set, as WES `DefaultWorkflowEngineParameter` objects."""
    params = [{"name": f, "type": "boolean", "default_value": "false"} for f in sorted(FLAGS)]
    params += [
        {"name": "--eval-timeout", "type": "float", "default_value": "60"},
        {"name": "--on-error", "type": "string", "default_value": "stop"},
        {"name": "--default-container", "type": "string", "default_value": ""},
    ]
    return params


DEFAULT_SWITCHES: Tuple[Tuple[str, FrozenSet[str]], ...] = (
    # The HTTP document cache lives in $HOME/.cache/salad, outside the run directory.
    ("--no-doc-cache", frozenset({"--doc-cache", "--no-doc-cache"})),
    # The workflow is always a path or URL; never ask a TRS registry (dockstore) to resolve it.
    ("--disable-ga4gh-tool-registry", frozenset({"--enable-ga4gh-tool-registry", "--disable-ga4gh-tool-registry"})),
)


class RunnerError(Exception):
    """A failure of the runner itself rather than of the workflow."""


@dataclass
class EngineRequest:
    """What engine.json asks us to run."""

    workflow: str
    job: str
    options: List[str]


def load_engine_request(run: RunDir) -> EngineRequest:
    """Read and check engine.json."""
    with open(run.engine, encoding="utf-8") as fh:
        engine = json.load(fh)
    if not isinstance(engine, dict):
        raise RunnerError("engine.json is not a JSON object")
    workflow, job, options = engine.get("workflow"), engine.get("job"), engine.get("options", [])
    if not isinstance(workflow, str) or not workflow:
        raise RunnerError("engine.json: 'workflow' must be a non-empty string")
    if not isinstance(job, str) or not job:
        raise RunnerError("engine.json: 'job' must be a non-empty string")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise RunnerError("engine.json: 'options' must be a list of strings")
    return EngineRequest(workflow, job, options)


def cwltool_arguments(run: RunDir, request: EngineRequest) -> List[str]:
    """The cwltool command line: the client's options, then ours, then the documents."""
    own = [
        "--outdir", str(run.outputs),
        "--tmpdir-prefix", os.path.join(str(run.tmp), "job-"),
        "--tmp-outdir-prefix", os.path.join(str(run.tmp), "out-"),
        "--disable-color",
    ]
    given = set(request.options)
    own += [flag for flag, group in DEFAULT_SWITCHES if not group & given]
    return [*request.options, *own, request.workflow, request.job]
