"""Process identities that survive pid reuse, and stopping what a dead driver left running.

An identity is host:pid:starttime, the start time being field 22 of /proc/PID/stat (clock
ticks since boot): a pid reused by another process has another start time. The store
records one for each run's driver (its lease) and for the leader of each command
attempt's process group, so that a resume can stop the old copy of an in-flight attempt
before running it again, and never signals a stranger that got the same pid.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

log = logging.getLogger("orchestratord.engine")


def process_identity(pid: int | None = None) -> str:
    """host:pid:starttime, unique for a process even across pid reuse."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{start_time(pid)}"


def start_time(pid: int) -> str:
    """The process's start time from /proc (field 22), or "?" if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def alive(identity: str) -> bool | None:
    """Whether the process of identity lives: None if it is on another host."""
    host, _, rest = identity.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return start_time(int(pid)) == start != "?"


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; someone else's (we cannot stop it either)
    return True


def _ours(identity: str) -> int | None:
    """The pgid of identity's group if it still exists and is the one recorded."""
    if alive(identity) is None:
        return None  # another host: nothing to do from here
    pgid = int(identity.split(":")[1])
    if alive(identity):
        return pgid  # its leader, the very process recorded
    if start_time(pgid) != "?":
        return None  # pid reused by another process: not ours
    # The leader is gone. A pid stays reserved while a group of that id has members,
    # so members found under it belong to the recorded group.
    return pgid if _group_exists(pgid) else None


async def stop_group(identity: str, *, grace: float, timeout: float) -> bool:
    """SIGTERM the process group led by identity, SIGKILL it after grace, and wait until
    it is gone; True once it is (or was never there), False if it outlived timeout."""
    pgid = _ours(identity)
    if pgid is None:
        return True
    log.warning("stopping process group %d left running by a dead driver", pgid)
    deadline = time.monotonic() + timeout
    for sig, until in ((signal.SIGTERM, time.monotonic() + grace), (signal.SIGKILL, deadline)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        while time.monotonic() < until:
            if not _group_exists(pgid):
                return True
            await asyncio.sleep(0.02)
    return not _group_exists(pgid)
