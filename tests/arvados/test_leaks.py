"""No secret leaks from the Arvados backend: the caller's Arvados token and a run's registry credentials.

A run with X-Registry-Auth goes from submission to Complete on the double, through
the server's preparation and a-c-r. Meanwhile every process's command line and
environment is read. Then everything is searched, in every form a secret could be
written in: the server's state directory and log, files written under /tmp, every
WES answer, and what the server and a-c-r stored in Arvados (the run's requests,
links and collections). The token may be in a-c-r's environment (that is how
Arvados' tools take it) but on no command line; registry credentials are in neither.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from ..images.builder import ImageFactory, push
from ..images.conftest import basic_registry, image_factory, registry  # noqa: F401  (fixtures)
from ..images.registry import Registry
from ..images.test_leaks import _answers, _tmp_files_since, _x_registry_auth
from ..leaks import Evidence, ProcessWatch, files_under
from ..wes import WesServer
from .double import ArvadosDouble
from .test_backend import _client, _committed, server  # noqa: F401  (a fixture)
from .test_double import WORKFLOW, Client, new_user, unique


def test_no_token_or_registry_secret_is_written_shown_or_passed_on_a_command_line(
        server: WesServer, arvados_double: ArvadosDouble, arvados_client: Client,  # noqa: F811
        basic_registry: Registry, image_factory: ImageFactory, tmp_path: Path) -> None:  # noqa: F811
    start = time.time()
    owner = new_user(arvados_double, arvados_client, "leaks")
    repo = unique("private/leaks")
    push(basic_registry, repo, "1", image_factory.docker_schema2())
    (tmp_path / "wf.cwl").write_text(WORKFLOW.format(image=f"{basic_registry.host}/{repo}:1"))
    user, password = basic_registry.credentials  # type: ignore[misc]
    header = _x_registry_auth(basic_registry.host, user, password)
    token_secret = owner["token"].rsplit("/", 1)[-1]
    registry_secrets = {"the registry password": password, "the X-Registry-Auth": header,
                        "the basic form": base64.b64encode(f"{user}:{password}".encode()).decode()}
    secrets = {"the Arvados token's secret": token_secret, **registry_secrets}

    client = _client(server, owner["token"])
    evidence = Evidence()
    with ProcessWatch() as watch:
        answer = client.submit(tmp_path / "wf.cwl", {"message": "hi"}, headers={"X-Registry-Auth": header})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["run_id"]
        record = _committed(arvados_double, run_id)
    arvados_double.set_container_state(record["container_uuid"], "Complete", exit_code=0,
                                       log={"stderr.txt": "INFO done\n"},
                                       output={"cwl.output.json": json.dumps({})})
    assert client.wait(run_id, timeout=60)["state"] == "COMPLETE"

    evidence.add_all(_answers(client, run_id))
    evidence.add("GET /runs", client.get("/runs").content)
    evidence.add("GET /images", client.get("/images").content)
    evidence.add_all(files_under(server.state_dir), "file ")
    evidence.add("the server's log", server.log_path.read_bytes())
    evidence.add_all(_tmp_files_since(start, [tmp_path.parents[1]]), "file ")
    for resource in ("container_requests", "links", "collections"):
        for stored in arvados_double.records(resource, owner_uuid=owner["uuid"]):
            evidence.add(f"Arvados {resource} {stored['uuid']}", json.dumps(stored))
    evidence.add_all(watch.texts("cmdline"), "process ")
    environs = watch.texts("environ")

    assert any("arvados-cwl-runner" in where or "arvados_cwl" in where for where in watch.seen), "a-c-r was not seen"
    assert any(run_id in where for where in evidence.texts), "the run's records were not read"
    assert any(token_secret.encode() in text for text in environs.values()), "no environment was read"
    print(f"searched {evidence.size:,} bytes in {len(evidence.texts)} places for {len(secrets)} secrets")
    assert evidence.leaks(secrets) == []
    environments = Evidence()
    environments.add_all(environs)
    assert environments.leaks(registry_secrets) == []
