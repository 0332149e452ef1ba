"""ListRuns pagination: every run exactly once, even while runs keep arriving."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wes_arvados.errors import BadRequest
from wes_arvados.wes.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page_size

from ..wes import DATA, WesClient, WesServer

TOTAL = 1000


def _submit_many(client: WesClient, count: int, label: str) -> list:
    def one(i: int) -> str:
        return client.run(DATA / "hello.cwl", {"name": f"{label}{i}"}, tags={"batch": label})
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _walk(client: WesClient, page_size: int, **params) -> list:
    seen, token = [], ""
    while True:
        query = dict(params, page_size=page_size)
        if token:
            query["page_token"] = token
        page = client.get("/runs", params=query).json()
        assert len(page["runs"]) <= page_size
        seen += [r["run_id"] for r in page["runs"]]
        token = page["next_page_token"]
        if not token:
            return seen


def test_walking_1000_runs_by_7_returns_each_once_while_runs_arrive(tmp_path: Path):
    # One run at a time executes; the rest stay QUEUED, which is all paging needs.
    server = WesServer(tmp_path / "state", workers=2, max_concurrent_runs=1).start()
    try:
        client = WesClient(server.url)
        existing = _submit_many(client, TOTAL, "old")
        assert len(set(existing)) == TOTAL

        arrivals: list = []
        stop = threading.Event()

        def keep_submitting() -> None:
            while not stop.is_set() and len(arrivals) < 60:
                arrivals.append(client.run(DATA / "hello.cwl", {"name": "new"}, tags={"batch": "new"}))

        submitter = threading.Thread(target=keep_submitting)
        submitter.start()
        try:
            seen = _walk(client, 7)
        finally:
            stop.set()
            submitter.join()
        assert arrivals, "no run arrived during the walk"
        assert len(seen) == len(set(seen)), "a run was returned twice"
        assert set(existing) <= set(seen), "a run was skipped"
        assert set(seen) - set(existing) <= set(arrivals)
        # The filtered walk sees the same runs in the same newest-first order.
        old_only = _walk(client, 7, tag="batch:old")
        assert sorted(old_only) == sorted(existing) and len(old_only) == TOTAL
        newest_first = [r for r in seen if r in set(existing)]
        assert newest_first == old_only
    finally:
        server.stop()
        server.kill_runs()


def test_page_size_out_of_range_is_refused_naming_the_limit_not_clamped():
    assert page_size(None) == DEFAULT_PAGE_SIZE
    assert page_size(1) == 1 and page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE
    for wrong in (0, -1, MAX_PAGE_SIZE + 1, 10**12):
        with pytest.raises(BadRequest, match=f"page_size {wrong} is out of range: this server takes 1 to {MAX_PAGE_SIZE}"):
            page_size(wrong)
