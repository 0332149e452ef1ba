"""Process identity and control shared by the scheduler and the supervisors."""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Optional

import psutil

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> Optional[float]:
    """The process's creation time, which together with the pid identifies it across pid reuse."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: Optional[int], started: Optional[float]) -> bool:
    """True when the process with this pid and creation time still runs (zombies are dead)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_group(pgid: int, sig: int) -> None:
    """Send a signal to a process group, ignoring one that is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal this process when its parent dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def kill_engine(pgid: int) -> None:
    """SIGKILL an engine's process group, unless its pid now belongs to something else."""
    try:
        cmdline = " ".join(psutil.Process(pgid).cmdline())
        if "wes_arvados.local.runner" not in cmdline:
            return
    except psutil.Error:
        pass  # the leader is gone; what is left of its group is still ours
    kill_group(pgid, signal.SIGKILL)
