"""POST/PUT/GET /workflows on the local backend: 501 with an ErrorResponse, and nothing staged (tests/arvados has the rest)."""

from __future__ import annotations

from ..wes import DATA, WesClient, WesServer


def test_registering_workflows_is_not_for_the_local_backend(server: WesServer, client: WesClient) -> None:
    files = [("workflow_attachment", ("hello.cwl", (DATA / "hello.cwl").read_bytes()))]
    fields = {"workflow_url": "hello.cwl", "workflow_type": "CWL", "workflow_type_version": "v1.2", "name": "hello"}
    for answer in (client.post("/workflows", files=files, data=fields),
                   client.http.put(f"{client.url}/workflows/zzzzz-7fd4e-000000000000000", files=files, data=fields,
                                   timeout=30),
                   client.get("/workflows/zzzzz-o0j2j-000000000000000")):
        assert answer.status_code == 501, answer.text
        assert answer.json()["status_code"] == 501 and "for the Arvados backend" in answer.json()["msg"]
    staging = server.state_dir / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []
