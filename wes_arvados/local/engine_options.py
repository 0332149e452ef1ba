"""The cwltool command line of a run: which `workflow_engine_parameters` pass, and what the server adds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import FrozenSet, List, Tuple

from ..wes.engine_parameters import EngineOptions, Valued, not_blank, one_of, positive_number
from .rundir import RunDir

CWLTOOL = EngineOptions(
    # Flags that only change how the engine evaluates the workflow.
    flags=frozenset({
        "--parallel", "--strict", "--non-strict", "--relax-path-checks", "--timestamps", "--debug",
        "--js-console", "--enable-ext", "--enable-dev", "--compute-checksum", "--no-compute-checksum",
        "--disable-js-validation", "--strict-memory-limit", "--strict-cpu-limit", "--skip-schemas",
        "--no-container", "--no-doc-cache", "--doc-cache",
    }),
    valued={
        "--eval-timeout": Valued("float", "60", positive_number),
        "--on-error": Valued("string", "stop", one_of("stop", "continue")),
        "--default-container": Valued("string", "", not_blank),
    },
    server_controlled=frozenset({
        "--outdir", "--tmpdir-prefix", "--tmp-outdir-prefix", "--basedir", "--quiet", "--verbose",
        "--move-outputs", "--leave-outputs", "--copy-outputs", "--disable-color", "--enable-color",
    }),
    # Would let the engine read or write outside the run directory, or weaken isolation.
    refused=dict.fromkeys({
        "--cachedir", "--provenance", "--preserve-environment", "--preserve-entire-environment",
        "--user-space-docker-cmd", "--singularity", "--podman", "--udocker", "--log-dir", "--write-summary",
        "--overrides", "--leave-tmpdir", "--leave-container", "--no-read-only", "--custom-net",
        "--mpi-config-file", "--beta-dependency-resolvers-configuration",
        "--beta-conda-dependencies", "--beta-dependencies-directory", "--make-template", "--pack",
    }, "it would escape the run directory"),
)


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
