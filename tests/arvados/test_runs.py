"""WES runs read from Arvados (wes_arvados/arvados/runs.py) through the real SDK against the double."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Tuple

import pytest

from wes_arvados.arvados.runs import (
    PREPARATION_PROPERTY,
    cancel,
    list_runs,
    request_and_container,
    run_properties,
    run_state,
    state_counts,
)
from wes_arvados.errors import BadRequest, NotFound
from wes_arvados.wes.states import State

from .double import ArvadosDouble
from .test_double import Client, container_request, make_image, new_user, unique


@pytest.fixture
def user_api(arvados_double: ArvadosDouble, arvados_client: Client,
             hello_world_image: Dict[str, Any]) -> Callable[[], Tuple[Any, str]]:
    """Makes a new user: their API client and the portable data hash of an image they can read."""
    def make() -> Tuple[Any, str]:
        api = new_user(arvados_double, arvados_client)["api"]
        return api, make_image(api, hello_world_image, [unique("img") + ":1"])["portable_data_hash"]
    return make


UserApi = Callable[[], Tuple[Any, str]]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _run(api: Any, image: str, tags: Dict[str, str], **changes: Any) -> Dict[str, Any]:
    """A container request as a-c-r commits it from a workflow whose ProcessProperties carry our properties."""
    properties = run_properties(tags, {"workflow_url": "wf.cwl", "tags": tags})
    body = container_request(image, properties=properties, command=["echo", unique("run")], **changes)  # no reuse
    return api.container_requests().create(body={"container_request": body}).execute()


def test_states_follow_the_container_and_the_preparation(arvados_double: ArvadosDouble, user_api: UserApi) -> None:
    api, image_pdh = user_api()
    run = _run(api, image_pdh, {})
    assert run_state(*request_and_container(api, run["uuid"])) == State.QUEUED
    arvados_double.set_container_state(run["container_uuid"], "Locked")
    assert run_state(*request_and_container(api, run["uuid"])) == State.INITIALIZING
    arvados_double.set_container_state(run["container_uuid"], "Running")
    assert run_state(*request_and_container(api, run["uuid"])) == State.RUNNING
    arvados_double.set_container_state(run["container_uuid"], "Complete", exit_code=3)
    request, container = request_and_container(api, run["uuid"])
    assert request["state"] == "Final" and run_state(request, container) == State.EXECUTOR_ERROR

    preparing = _run(api, image_pdh, {}, state="Uncommitted")
    properties = dict(preparing["properties"], **{PREPARATION_PROPERTY: {"state": "preparing", "heartbeat": _now()}})
    api.container_requests().update(uuid=preparing["uuid"], body={"properties": properties}).execute()
    request, container = request_and_container(api, preparing["uuid"])
    assert run_state(request, container) == State.INITIALIZING
    # Its server stopped: the heartbeat grows old, and the run is a SYSTEM_ERROR, never waiting forever.
    later = datetime.now(timezone.utc) + timedelta(minutes=10)
    assert run_state(request, container, later) == State.SYSTEM_ERROR


def test_cancel_on_hold_and_preemption(arvados_double: ArvadosDouble, user_api: UserApi) -> None:
    api, image_pdh = user_api()
    held = _run(api, image_pdh, {})
    api.container_requests().update(uuid=held["uuid"], body={"priority": 0}).execute()
    assert run_state(*request_and_container(api, held["uuid"])) == State.CANCELING  # on hold, Committed
    api.container_requests().update(uuid=held["uuid"], body={"state": "Final"}).execute()
    assert run_state(*request_and_container(api, held["uuid"])) == State.CANCELED

    preempted = _run(api, image_pdh, {}, container_count_max=1)
    arvados_double.set_container_state(preempted["container_uuid"], "Cancelled",
                                       runtime_status={"preemptionNotice": "spot instance reclaimed"})
    assert run_state(*request_and_container(api, preempted["uuid"])) == State.PREEMPTED


def test_listing_is_newest_first_paged_filtered_and_per_user(arvados_double: ArvadosDouble, user_api: UserApi) -> None:
    (alice, image_pdh), (bob, bobs_image) = user_api(), user_api()
    mine: List[str] = [_run(alice, image_pdh, {"batch": "b1" if i % 2 else "b2"})["uuid"] for i in range(5)]
    theirs = _run(bob, bobs_image, {"batch": "b1"})["uuid"]
    alice.container_requests().create(body={"container_request": container_request(image_pdh)}).execute()  # not WES
    arvados_double.set_container_state(
        alice.container_requests().get(uuid=mine[0]).execute()["container_uuid"], "Running")

    seen: List[str] = []
    token = None
    while True:
        page = list_runs(alice, 2, token)
        assert len(page.items) <= 2
        seen += [run.run_id for run in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(mine))  # newest first, every WES run once, none of bob's, no plain request
    assert [r.run_id for r in list_runs(alice, 10, None, tags={"batch": "b1"}).items] == [mine[3], mine[1]]
    running = list_runs(alice, 10, None, states=[State.RUNNING])
    assert [(r.run_id, r.state, r.tags) for r in running.items] == [(mine[0], State.RUNNING, {"batch": "b2"})]
    assert running.next_page_token == ""
    counts = state_counts(alice)
    assert (counts["RUNNING"], counts["QUEUED"], sum(counts.values())) == (1, 4, 5)
    with pytest.raises(NotFound):
        request_and_container(alice, theirs)  # bob's run: not found for alice, as one that does not exist
    with pytest.raises(BadRequest):
        list_runs(alice, 2, "not-a-token")


def test_cancel_finalizes_a_run_on_hold_and_leaves_a_running_one_canceling(arvados_double: ArvadosDouble,
                                                                              user_api: UserApi) -> None:
    api, image_pdh = user_api()
    queued, running, preparing = _run(api, image_pdh, {}), _run(api, image_pdh, {}), \
        _run(api, image_pdh, {}, state="Uncommitted")
    arvados_double.set_container_state(running["container_uuid"], "Running")
    api.container_requests().update(uuid=preparing["uuid"], body={"properties": dict(
        preparing["properties"], **{PREPARATION_PROPERTY: {"state": "preparing", "heartbeat": _now()}})}).execute()

    assert cancel(api, queued["uuid"]) == State.CANCELED
    assert api.container_requests().get(uuid=queued["uuid"]).execute()["state"] == "Final"  # not on hold forever
    assert cancel(api, running["uuid"]) == State.CANCELING
    assert cancel(api, preparing["uuid"]) == State.CANCELED
    assert run_state(*request_and_container(api, preparing["uuid"])) == State.CANCELED
    arvados_double.set_container_state(running["container_uuid"], "Cancelled")
    assert run_state(*request_and_container(api, running["uuid"])) == State.CANCELED
    with pytest.raises(BadRequest, match="already finished"):
        cancel(api, running["uuid"])
