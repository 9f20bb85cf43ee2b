"""orchestratorctl's commands against a running daemon.

`run NAME --wait` is what `orchestrator@NAME.service` executes: it follows the run,
mirrors its progress to its own output (so to its unit's journal), survives a restart
of the daemon (the run is resumed there and followed again), turns SIGTERM — `systemctl
stop orchestrator@NAME` — into a cancel of the run (but not at system shutdown: see
stopping.py), and exits with the run's outcome so that a failed run fails the unit and
OnFailure= fires. A stop done as asked exits 128 + the signal (143): the unit's
SuccessExitStatus=, a clean stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..core.statuses import TERMINAL, ExitCode, event_subject
from .client import Client, DaemonError
from .progress import Progress
from .stopping import StopHandler, exit_status

RECONNECT_FOR = 120.0  # seconds to wait for a restarting daemon


def run(socket: Path, name: str, params: dict[str, Any], *, wait: bool, as_json: bool) -> int:
    async def go() -> int:
        async with Client(socket) as client:
            started = await client.call("POST", "/runs", {"workflow": name, "params": params})
            run_id = started["run_id"]
            if not wait:
                print(json.dumps({"run_id": run_id}) if as_json else run_id)
                return ExitCode.SUCCEEDED
            return await _follow(client, run_id, as_json)
    return asyncio.run(go())


def run_call(socket: Path, skill: str, action: str, params: dict[str, Any], *,
             as_json: bool) -> int:
    """Ask the daemon to call skill.action (a recorded one-step run) and follow it."""
    async def go() -> int:
        async with Client(socket) as client:
            body = {"skill": skill, "action": action, "params": params}
            run_id = (await client.call("POST", "/calls", body))["run_id"]
            return await _follow(client, run_id, as_json)
    return asyncio.run(go())


def resume(socket: Path, run_id: str, *, as_json: bool) -> int:
    async def go() -> int:
        async with Client(socket) as client:
            run_id_ = (await client.call("POST", f"/runs/{run_id}/resume"))["run_id"]
            return await _follow(client, run_id_, as_json)
    return asyncio.run(go())


async def _follow(client: Client, run_id: str, as_json: bool) -> int:
    follower = asyncio.create_task(_events_until_end(client, run_id, as_json))
    stop = StopHandler(client, run_id, follower)
    stop.install()
    try:
        run = await follower
    except asyncio.CancelledError:
        if stop.outcome is None:
            raise
        run = None  # the stop handler ended following: the run is not ours to wait for
    finally:
        stop.uninstall()
    if run is not None:
        if as_json:
            print(json.dumps({k: run[k] for k in ("id", "workflow", "status", "outputs", "error")}))
        elif run.get("outputs"):
            print(json.dumps(run["outputs"], indent=2))
    return exit_status(stop, run)


async def _events_until_end(client: Client, run_id: str, as_json: bool) -> dict[str, Any] | None:
    """Mirror the run's progress until it ends; None if the daemon stays unreachable."""
    progress = Progress(sys.stderr if as_json else sys.stdout)
    after, lost_since = 0, None
    while True:
        try:
            async for event in client.events(run_id, after=after):
                after = event["seq"]
                progress(_progress_event(event))
            run = await client.call("GET", f"/runs/{run_id}")
            lost_since = None
        except DaemonError as exc:
            # The daemon restarts (crash, upgrade): it resumes the run; follow it again.
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_FOR:
                print(f"orchestratorctl: {exc}", file=sys.stderr)
                return None
            await asyncio.sleep(0.5)
            continue
        if run["status"] in TERMINAL:
            return run
        await asyncio.sleep(0.5)  # interrupted: the restarted daemon picks it up


def _progress_event(event: dict[str, Any]) -> dict[str, Any]:
    kind = event["type"]
    subject, what = event_subject(kind)
    status = what if subject is not None else None
    return {"type": kind, "run_id": event["run_id"], "workflow": event["data"].get("workflow", ""),
            "step_id": event.get("step_id"), "attempt": event.get("attempt"),
            "status": status, "error": event["data"].get("error")}
