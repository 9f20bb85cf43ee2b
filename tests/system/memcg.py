"""A memory controller for a container's systemd on a cgroup v1 (hybrid) host.

On such a host the memory controller is bound to the legacy hierarchy, and systemd-nspawn
252 mounts legacy hierarchies read-only into a container without a user namespace: the
container's systemd cannot create memory cgroups, and MemoryMax= is not enforced. This
delegates one: a fresh child of the test process's own memory cgroup is bound into the
container at BIND_POINT (a bind straight onto /sys/fs/cgroup/memory does not work: nspawn
applies binds before it mounts the cgroup tree), moved over the read-only mount once the
container has booted, and systemd is re-executed to pick it up. MemoryMax= then becomes
the unit's memory.limit_in_bytes. On a pure cgroup v2 host there is nothing to do: nspawn
delegates the unified hierarchy with its controllers.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .machine import Machine

CGROUP_ROOT = Path("/sys/fs/cgroup")
BIND_POINT = "/run/orchestrator-memcg"
# Run in the booted container: replace the read-only hierarchy, then let systemd see it.
TAKE_OVER = (f"umount /sys/fs/cgroup/memory && mount --bind {BIND_POINT} /sys/fs/cgroup/memory "
             "&& systemctl daemon-reexec && findmnt -no OPTIONS /sys/fs/cgroup/memory")


class NoMemoryHierarchy(RuntimeError):
    """The host has neither a cgroup v2 root nor a cgroup v1 memory hierarchy."""


def pure_v2() -> bool:
    """Whether /sys/fs/cgroup is itself the cgroup v2 root (hybrid hosts mount a tmpfs there)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def own_memory_cgroup(proc_cgroup: str | None = None) -> Path:
    """The v1 memory cgroup directory this process is in."""
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            mount = CGROUP_ROOT / "memory"
            if not (mount / "memory.limit_in_bytes").exists():
                break
            return mount / path.lstrip("/")
    raise NoMemoryHierarchy(
        f"this host has no cgroup v1 memory hierarchy to delegate from (/proc/self/cgroup has "
        f"no memory line, or {CGROUP_ROOT}/memory is not mounted) and {CGROUP_ROOT} is no "
        "cgroup v2 root: a container cannot enforce MemoryMax= here; mount the memory "
        "controller (cgroup_enable=memory) or boot with systemd.unified_cgroup_hierarchy=1")


def create(name: str) -> Path:
    """A new, empty memory cgroup for the container `name`, under this process's own."""
    directory = own_memory_cgroup() / f"{name}.memory"
    directory.mkdir()
    return directory


def take_over(machine: Machine, cgroup: Path, deadline: float) -> None:
    """In the booted container: put the bound cgroup where the read-only one was."""
    rc, out = machine.execute(TAKE_OVER, timeout=max(deadline - time.monotonic(), 1.0))
    options = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0 or not options.startswith("rw,"):
        raise RuntimeError(f"the delegated memory cgroup {cgroup} did not replace the "
                           f"container's read-only one (exit {rc}):\n{out}")


def remove(directory: Path, timeout: float = 10.0) -> None:
    """Remove the cgroup and the ones the container's systemd made in it, deepest first.

    A cgroup can be removed once its last task has exited; the container's processes are
    gone when nspawn has exited, but their exit may still be in flight, so an EBUSY is
    retried until `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            for root, dirs, _ in os.walk(directory, topdown=False):
                for sub in dirs:
                    _rmdir(Path(root, sub))
            _rmdir(directory)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise OSError(exc.errno, f"cannot remove the container's memory cgroup "
                                         f"{exc.filename}: {exc.strerror}; its tasks: "
                                         f"{_tasks(Path(exc.filename))}") from None
            time.sleep(0.1)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass


def _tasks(path: Path) -> str:
    try:
        return " ".join(Path(path, "tasks").read_text().split()) or "none"
    except OSError:
        return "(unreadable)"
