"""The one place that maps states: an Arvados run's request, container and preparation to a WES state."""

from __future__ import annotations

from typing import Optional

import pytest

from wes_arvados.wes.states import ArvadosRun, State, state_from_arvados


@pytest.mark.parametrize("request_state, priority, container, exit_code, preempted, preparation, expected", [
    ("Uncommitted", 0, None, None, False, "queued", State.QUEUED),
    ("Uncommitted", 0, None, None, False, "preparing", State.INITIALIZING),
    ("Uncommitted", 0, None, None, False, "submitting", State.INITIALIZING),
    ("Uncommitted", 0, None, None, False, "failed", State.SYSTEM_ERROR),
    ("Uncommitted", 0, None, None, False, "stale", State.SYSTEM_ERROR),
    ("Uncommitted", 0, None, None, False, "canceled", State.CANCELED),  # canceled before a-c-r committed it
    ("Uncommitted", 0, None, None, False, None, State.SYSTEM_ERROR),  # not one of ours to prepare
    ("Committed", 1, None, None, False, None, State.QUEUED),
    ("Committed", 1, "Queued", None, False, None, State.QUEUED),
    ("Committed", 1, "Locked", None, False, None, State.INITIALIZING),
    ("Committed", 1, "Running", None, False, None, State.RUNNING),
    ("Committed", 1, "Cancelled", None, True, None, State.QUEUED),  # preempted, and Arvados retries it
    ("Committed", 0, "Running", None, False, None, State.CANCELING),
    ("Committed", 0, "Queued", None, False, None, State.CANCELING),
    ("Committed", 0, "Cancelled", None, False, None, State.CANCELING),  # about to go Final
    ("Final", 1, "Complete", 0, False, None, State.COMPLETE),
    ("Final", 1, "Complete", 3, False, None, State.EXECUTOR_ERROR),
    ("Committed", 1, "Complete", 0, False, None, State.COMPLETE),  # finalized a moment later
    ("Final", 0, "Cancelled", None, False, None, State.CANCELED),
    ("Final", 1, "Cancelled", None, True, None, State.PREEMPTED),
    ("Final", 0, "Queued", None, False, None, State.CANCELED),  # canceled on hold: Final, its container follows
    ("Final", 0, None, None, False, None, State.SYSTEM_ERROR),  # went Final with no container
])
def test_each_arvados_situation_has_one_wes_state(request_state: str, priority: int, container: Optional[str],
                                                   exit_code: Optional[int], preempted: bool,
                                                   preparation: Optional[str], expected: State) -> None:
    run = ArvadosRun(request_state, priority, container, exit_code, preempted, preparation)
    assert state_from_arvados(run) == expected
