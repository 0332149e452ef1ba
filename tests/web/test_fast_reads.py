"""GetRunStatus, GetRunLog, ListRuns and service-info, answered ahead of connexion (web/fast_reads.py), say what
the handlers would.

Auth and ownership on these paths are pinned by test_auth.py and test_ownership.py,
the bodies' schemas by the response validation every test server runs with.
"""

from __future__ import annotations

from pathlib import Path

from ..wes import DATA, WesClient, WesServer


def test_run_log_urls_have_the_base_the_client_used_like_every_other_answer(client: WesClient):
    run_id = client.run(DATA / "hello.cwl", {"name": "fast"})
    client.wait(run_id)
    for host in ("127.0.0.1", "wes.example.org:8443"):
        headers = {"Host": host}
        log = client.get(f"/runs/{run_id}", headers=headers).json()
        tasks = client.get(f"/runs/{run_id}/tasks", headers=headers).json()  # through connexion and flask
        base = f"http://{host}/ga4gh/wes/v1/runs/{run_id}"
        assert log["task_logs_url"] == base + "/tasks"
        assert log["run_log"]["stderr"] == base + "/logs/stderr"
        assert tasks["task_logs"][0]["stdout"].startswith(base + "/tasks/")


def test_run_log_urls_have_the_configured_public_url(tmp_path: Path):
    server = WesServer(tmp_path / "state", env={"WES_ARVADOS_PUBLIC_URL": "https://wes.example.org/base/"}).start()
    try:
        client = WesClient(server.url)
        run_id = client.run(DATA / "hello.cwl", {"name": "fast"})
        log = client.log(run_id)
        assert log["task_logs_url"] == f"https://wes.example.org/base/ga4gh/wes/v1/runs/{run_id}/tasks"
    finally:
        server.stop()
        server.kill_runs()


def test_a_cancel_shows_in_the_very_next_status_and_log(client: WesClient):
    run_id = client.run(DATA / "nap.cwl", {"seconds": 30})
    client.wait(run_id, states={"RUNNING"})
    assert client.status(run_id) == "RUNNING"
    assert client.post(f"/runs/{run_id}/cancel").status_code == 200
    assert client.status(run_id) in ("CANCELING", "CANCELED")
    assert client.log(run_id)["state"] in ("CANCELING", "CANCELED")
    client.wait(run_id)


def test_errors_are_error_responses(client: WesClient):
    for path in ("/runs/no-such-run", "/runs/no-such-run/status"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"msg": "no run with id 'no-such-run'", "status_code": 404}


def test_list_runs_ahead_of_connexion_answers_as_connexion_does(client: WesClient):
    """A query with a parameter the document does not name passes on to connexion (which ignores it): each
    answer ahead of connexion must equal that one's, errors included."""
    first = client.run(DATA / "hello.cwl", {"name": "one"}, tags={"team": "a"})
    second = client.run(DATA / "hello.cwl", {"name": "two"}, tags={"team": "b", "x": "1:2"})
    for run_id in (first, second):
        client.wait(run_id)
    token = client.get("/runs", params={"page_size": 1}).json()["next_page_token"]
    assert token
    queries = [
        [], [("page_size", "1")], [("page_size", "1"), ("page_token", token)], [("state", "COMPLETE")],
        [("state", "COMPLETE"), ("state", "RUNNING")], [("state", "QUEUED")], [("tag", "team:b")],
        [("tag", "x:1:2"), ("tag", "team:b")], [("tag", "team:c")], [("tag", "no-colon")], [("page_size", "0")],
        [("page_size", "1001")], [("page_token", "not-a-token")], [("tag", "t\u00e9am:\u00e9")],
    ]
    for query in queries:
        fast = client.get("/runs", params=query)
        through_connexion = client.get("/runs", params=query + [("not_a_parameter", "1")])
        assert (fast.status_code, fast.json()) == (through_connexion.status_code, through_connexion.json()), query
        assert fast.headers["Content-Type"] == through_connexion.headers["Content-Type"]
    listed = client.get("/runs", params={"tag": "team:b"}).json()["runs"]
    assert [r["run_id"] for r in listed] == [second]


def test_list_runs_queries_the_document_refuses_are_connexions_to_answer(client: WesClient):
    for query in ([("page_size", "ten")], [("state", "SLEEPING")], [("page_size", "-1")]):
        answer = client.get("/runs", params=query)
        assert answer.status_code == 400, (query, answer.text)
        assert set(answer.json()) == {"msg", "status_code"}
