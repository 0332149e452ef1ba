"""WES run states and the one place that decides what they mean."""

from __future__ import annotations

from enum import Enum


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
