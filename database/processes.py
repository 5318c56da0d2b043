"""Processes of this machine: whether one that a row or a file names by its host and id still runs.

Why one home here: a worker's row (``database.jobs``) and the owner file an export or a retraining leaves in its
unfinished folder (``app.services.child_command.owner_tag``) name their process by host and id, and the worker's
recovery of dead workers' claims, the look for a database's other users before an upgrade (``database.users``) and
those folders' sweeps must judge them by one rule. ``database/`` imports nothing of ``app/``, so the rule lives where
all of them may import it.
"""
from __future__ import annotations

import os
import socket


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with that id runs (another user's counts as running). On Windows it cannot be
    told this way (``os.kill(pid, 0)`` sends CTRL_C_EVENT there, a review of a session-49 fix): counted as running,
    so nothing of another process is swept."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: another user's process
        return True
    return True


def ended_here(host: str, pid: int | None) -> bool:
    """Whether the process ``pid`` of ``host`` is known to have ended: ``host`` is this machine and no process with
    that id runs. Another machine's, or one with no id, cannot be told: False."""
    return pid is not None and pid > 0 and host == socket.gethostname() and not pid_alive(pid)
