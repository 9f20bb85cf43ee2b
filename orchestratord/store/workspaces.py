"""Run workspaces: one directory per run, shared by its steps, removed after a while.

A step finds its run's workspace in $ORCHESTRATOR_WORKSPACE (`StepContext.workspace`):
`<state_dir>/workspaces/<run id>`. What a step leaves there (a clone, a build) would fill
the disk of a host that runs workflows for months, so the daemon prunes the workspaces
of runs that ended longer than `workspace_retention` ago. A run that failed can still be
redriven after that, but steps that succeeded are not run again, so what they left in
the workspace is gone: within the retention a redrive finds it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from ..core.errors import RunNotFound
from ..core.statuses import TERMINAL
from .sqlite import Store

log = logging.getLogger("orchestratord.workspaces")

DIRECTORY = "workspaces"


def workspace_dir(state_dir: str | Path, run_id: str) -> Path:
    return Path(state_dir) / DIRECTORY / run_id


async def prune(store: Store, state_dir: str | Path, retention: float,
                now: float | None = None) -> list[str]:
    """Remove the workspaces of runs that ended more than `retention` seconds ago, and of
    runs the database does not know (their directory untouched as long); returns the
    run ids whose workspace was removed."""
    root = Path(state_dir) / DIRECTORY
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            run = await store.get_run(path.name)
        except RunNotFound:
            run = None
        if run is not None and run.id == path.name:  # get_run also takes a prefix
            ended = run.finished_at if run.status in TERMINAL else None
        else:
            ended = path.stat().st_mtime
        if ended is None or now - ended < retention:
            continue
        await asyncio.to_thread(shutil.rmtree, path, True)
        removed.append(path.name)
    if removed:
        log.info("removed the workspaces of %d runs ended over %g s ago", len(removed), retention)
    return removed


async def prune_periodically(store: Store, state_dir: str | Path, retention: float,
                             interval: float) -> None:
    """prune() every interval seconds, for the daemon's lifetime; errors are logged."""
    while True:
        try:
            await prune(store, state_dir, retention)
        except Exception:  # a full disk or a permission must not end the daemon
            log.exception("pruning run workspaces failed")
        await asyncio.sleep(interval)
