"""Killing a server the hard way in tests: every process it started, at once, as a crash would."""

from __future__ import annotations

import signal
from typing import Dict, List

import psutil


def kill_process_tree(root_pid: int) -> List[str]:
    """SIGKILL `root_pid` and every process descended from it, sessions of their own included; their command lines.

    Each is stopped (SIGSTOP) first, and the tree read again until no new process
    appears, so that nothing it starts in the meantime escapes the kill.
    """
    root = psutil.Process(root_pid)
    found: Dict[int, psutil.Process] = {root.pid: root}
    root.suspend()
    while True:
        fresh = [p for p in root.children(recursive=True) if p.pid not in found]
        if not fresh:
            break
        for proc in fresh:
            found[proc.pid] = proc
            try:
                proc.suspend()
            except psutil.NoSuchProcess:
                pass
    commands = []
    for proc in found.values():
        try:
            commands.append(" ".join(proc.cmdline()))
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(found.values()), timeout=30)
    assert not alive, f"survived SIGKILL: {alive}"
    return commands
