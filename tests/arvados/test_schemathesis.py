"""Schemathesis against a server on the Arvados backend (the double behind it): every operation, a user's Arvados
token, no 5xx, no schema break. Examples and seed as in tests/web/test_schemathesis.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from wes_arvados.arvados.runs import run_properties

from ..web.test_schemathesis import schemathesis
from ..wes import WesServer
from .double import ArvadosDouble
from .test_double import Client, container_request, make_image, new_user, unique

# Arvados answers every operation; what a generated request may not be is a 501.
ARVADOS_BACKEND = ""


@pytest.fixture(scope="module")
def fuzzed(arvados_double: ArvadosDouble, arvados_client: Client, hello_world_image: Dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[WesServer, str, str, str]]:
    """A server on the double, a user's token, and one finished run of theirs with a task and an output file."""
    user = new_user(arvados_double, arvados_client, "fuzz")
    api = user["api"]
    image = make_image(api, hello_world_image, [unique("img") + ":1"])["portable_data_hash"]
    request = {"workflow_url": "wf.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2",
               "workflow_params": {"name": "fuzz"}, "tags": {"fuzz": "yes"}}
    body = container_request(image, properties=run_properties({"fuzz": "yes"}, request),
                             command=["echo", unique("run")])
    run = api.container_requests().create(body={"container_request": body}).execute()
    arvados_double.set_container_state(run["container_uuid"], "Running")
    runner_api = arvados_client(arvados_double.container_token(run["container_uuid"]))
    step = runner_api.container_requests().create(body=container_request(image, name="echo")).execute()
    arvados_double.set_container_state(step["container_uuid"], "Complete", exit_code=0,
                                       log={"stdout.txt": "hi\n", "stderr.txt": ""})
    arvados_double.set_container_state(run["container_uuid"], "Complete", exit_code=0, log={"stderr.txt": "done\n"},
                                       output={"cwl.output.json": json.dumps({"out": {"class": "File",
                                                                                      "location": "out.txt"}}),
                                               "out.txt": "hello\n"})
    server = WesServer(tmp_path_factory.mktemp("arvados-fuzz") / "state", extra_args=["--backend", "arvados"],
                       env={"ARVADOS_API_HOST": arvados_double.host, "ARVADOS_API_HOST_INSECURE": "1",
                            "PATH": str(Path(sys.executable).parent)}).start()
    try:
        yield server, user["token"], run["uuid"], step["uuid"]
    finally:
        server.stop()


def test_every_operation_with_generated_identifiers_gives_no_5xx_and_no_schema_break(fuzzed, tmp_path: Path):
    server, token, _, _ = fuzzed
    schemathesis(server, tmp_path / "generated", token=token, backend_config=ARVADOS_BACKEND)


def test_every_operation_on_an_existing_run_and_task_gives_no_5xx_and_no_schema_break(fuzzed, tmp_path: Path):
    server, token, run_id, task_id = fuzzed
    schemathesis(server, tmp_path / "existing",
                 f'[parameters]\nrun_id = "{run_id}"\ntask_id = "{task_id}"\npath = "out.txt"\n',
                 token=token, backend_config=ARVADOS_BACKEND)
