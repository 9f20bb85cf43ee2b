"""Whether the system is shutting down, as systemd says it.

Every kind of shutdown (poweroff, reboot, halt, kexec, soft-reboot) starts
shutdown.target, and a unit with default dependencies is stopped before that target is
reached: so while such a unit stops for a shutdown, a start job for shutdown.target is
queued. `systemctl list-jobs` asks PID 1 over its private socket (as root), which it
serves to the end; the system bus is stopped early in the shutdown, beside the units that
would ask. Not `systemctl is-system-running`: it answers "starting", not "stopping",
until the boot's job queue has once been empty, and a run started at boot by
orchestrator@ (a oneshot unit) keeps a start job queued for as long as it runs.
"""

from __future__ import annotations

import os
import shutil

TARGET = "shutdown.target"


def list_jobs_argv(systemctl: str | None = None) -> list[str]:
    """The command that lists the jobs queued for shutdown.target; [] without systemd."""
    if systemctl is None:
        systemctl = shutil.which("systemctl")
        if systemctl is None or not os.path.isdir("/run/systemd/system"):
            return []
    return [systemctl, "list-jobs", "--no-legend", "--no-pager", TARGET]


def shutting_down(listing: str) -> bool:
    """Whether list-jobs' output (one job a line: ID UNIT TYPE STATE) holds a start job
    for shutdown.target."""
    return any(line.split()[1:3] == [TARGET, "start"] for line in listing.splitlines())
