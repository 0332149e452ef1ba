"""Schemathesis against a real server's served OpenAPI document: every operation, a valid token, no 5xx, no schema break.

CI runs a bounded number of examples per operation from a fixed seed, so that
it fails on what changed, not on what chance found that day; a long run sets
``WES_FUZZ_EXAMPLES`` and draws a new seed each time (``WES_FUZZ_SEED`` replays
one), e.g.::

    WES_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/web/test_schemathesis.py -s

Each run prints a summary line per pass (operations, test cases, failures).
The server validates its own responses against the document
(``validate_responses``), so an answer that breaks the schema is a 500 there and
a failure here; Schemathesis checks each answer's status, content type, headers
and body against the document too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..wes import DATA, WesClient, WesServer

CI_EXAMPLES = "15"
EXAMPLES = int(os.environ.get("WES_FUZZ_EXAMPLES", CI_EXAMPLES))
SEED = os.environ.get("WES_FUZZ_SEED", "20261203" if str(EXAMPLES) == CI_EXAMPLES else "")
TOKEN = "schemathesis-token"
ST = Path(sys.executable).with_name("st")
# Every check Schemathesis has, but one: a schema-valid request may still be refused for what the schema
# cannot say (an image reference's grammar, a workflow_url that names no attachment).
EXCLUDED_CHECKS = "positive_data_acceptance"
# Registering workflows is for the Arvados backend: on this (local) server those operations answer 501 by
# design, with an ErrorResponse the document declares (tests/arvados/test_registrations.py has them working).
LOCAL_BACKEND = """
[[operations]]
include-tag = "Workflows"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
"""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    """A server with a token and one finished run, so that the run operations have something to find."""
    state = tmp_path_factory.mktemp("fuzz") / "state"
    # No container runtime: the image operations then answer 403 (turned off) rather than depend on a daemon.
    server = WesServer(state, extra_args=["--container-runtime", "none"],
                       env={"WES_ARVADOS_AUTH_TOKENS": TOKEN}).start()
    try:
        client = WesClient(server.url)
        client.http.headers["Authorization"] = f"Bearer {TOKEN}"
        run_id = client.run(DATA / "hello.cwl", {"name": "fuzz"})
        assert client.wait(run_id)["state"] == "COMPLETE"
        task_id = client.get(f"/runs/{run_id}/tasks").json()["task_logs"][0]["id"]
        yield server, run_id, task_id
    finally:
        server.stop()
        server.kill_runs()


def schemathesis(server: WesServer, workdir: Path, config: str = "", token: str = TOKEN,
                 backend_config: str = LOCAL_BACKEND) -> str:
    """Run ``st run`` against the served document with `token`; return its output, failing the test on any failure
    it reports. `config` and `backend_config` are TOML for Schemathesis' config file."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config + backend_config)
    command = [str(ST), "--config-file", str(config_file), "--no-color", "run", server.url + "/openapi.json",
               "--header", f"Authorization: Bearer {token}", "--max-examples", str(EXAMPLES),
               "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS, "--generation-database", "none",
               "--workers", "2", "--request-timeout", "30", "--report", "junit",
               "--report-dir", str(workdir / "report")]
    if SEED:
        command += ["--seed", SEED]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    summary = re.findall(r"Selected: \d+/\d+|\d+ generated.*|Seed: \d+|=+ .* in [\d.]+s =+", output)
    print(f"schemathesis ({EXAMPLES} examples per operation): " + "; ".join(s.strip("= ") for s in summary))
    assert result.returncode == 0, output[-20000:]
    assert re.search(r"Selected: (\d+)/\1", output), "not every operation was tested:\n" + output[-5000:]
    return output


def test_every_operation_with_generated_identifiers_gives_no_5xx_and_no_schema_break(fuzzed, tmp_path: Path):
    server, _, _ = fuzzed
    schemathesis(server, tmp_path / "generated")


def test_every_operation_on_an_existing_run_and_task_gives_no_5xx_and_no_schema_break(fuzzed, tmp_path: Path):
    server, run_id, task_id = fuzzed
    # The ids of a real run and task, and its one output file, in place of generated ones.
    schemathesis(server, tmp_path / "existing",
                 f'[parameters]\nrun_id = "{run_id}"\ntask_id = "{task_id}"\npath = "greeting.txt"\n')
