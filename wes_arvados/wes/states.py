"""WES run states and the one place that decides what they mean."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class State(str, Enum):
    """A WES 1.1 run state."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    CANCELING = "CANCELING"
    PREEMPTED = "PREEMPTED"

    @property
    def terminal(self) -> bool:
        """True when the run will never change state again."""
        return self in TERMINAL


TERMINAL = frozenset({State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED})
ACTIVE = frozenset({State.INITIALIZING, State.RUNNING, State.CANCELING})

# cwltool's exit status for "the workflow needs something this engine does not support".
UNSUPPORTED_REQUIREMENT_EXIT = 33
# Our runner's exit status when its own code failed rather than the workflow
# (sysexits EX_SOFTWARE); also recorded for a run whose supervisor failed or vanished.
RUNNER_SOFTWARE_EXIT = 70
# Recorded for a run whose images could not be had: the engine never started (EX_UNAVAILABLE).
IMAGES_UNAVAILABLE_EXIT = 69


def state_from_engine_exit(exit_code: int) -> State:
    """Map the local engine's exit status to the final state of a run.

    A negative code is a signal; the supervisor decides CANCELED itself when it
    sent it, so a signal here means the engine was killed by something else.
    """
    if exit_code == 0:
        return State.COMPLETE
    if exit_code == RUNNER_SOFTWARE_EXIT or exit_code < 0:
        return State.SYSTEM_ERROR
    return State.EXECUTOR_ERROR


@dataclass(frozen=True)
class ArvadosRun:
    """What decides an Arvados run's WES state: its runner container request, its container, its preparation."""

    request_state: str  # Uncommitted, Committed, Final
    priority: int
    container_state: Optional[str] = None  # Queued, Locked, Running, Complete, Cancelled; None: no container yet
    exit_code: Optional[int] = None
    preempted: bool = False  # the container's runtime_status carries a preemptionNotice
    # The server's own work before a-c-r commits the request: "queued", "preparing", "submitting", "failed", "canceled",
    # or "stale" (whoever prepared it stopped: its heartbeat is old). None once the request is committed.
    preparation: Optional[str] = None


def state_from_arvados(run: ArvadosRun) -> State:
    """The WES state of a run on Arvados, from its runner request, that request's container and its preparation."""
    if run.request_state == "Uncommitted":
        return {"queued": State.QUEUED, "preparing": State.INITIALIZING, "submitting": State.INITIALIZING,
                "canceled": State.CANCELED}.get(run.preparation or "", State.SYSTEM_ERROR)
    if run.container_state == "Complete":
        return State.COMPLETE if run.exit_code == 0 else State.EXECUTOR_ERROR
    if run.request_state == "Final":
        if run.container_state is None:
            return State.SYSTEM_ERROR  # finalized before any container ran
        return State.PREEMPTED if run.container_state == "Cancelled" and run.preempted else State.CANCELED
    if run.priority == 0:
        return State.CANCELING  # Committed, its container not final yet
    # Committed: no container yet, or a Cancelled one that Arvados is about to retry, is QUEUED.
    return {"Locked": State.INITIALIZING, "Running": State.RUNNING}.get(run.container_state or "", State.QUEUED)
