"""What a client following a run does when it is asked to stop (SIGTERM, SIGINT).

`systemctl stop orchestrator@NAME` is a request to cancel the run. A system shutdown
stops that unit too, before the daemon; then the run is not cancelled but left to the
daemon, which leaves it interrupted and resumes it at its next start. shutdown.py says
which of the two it is.

The answer comes from a child process in this unit's cgroup, forked while systemd sends
SIGTERM to every process of that cgroup (KillMode=control-group), and systemd rereads
the cgroup until it finds no process it has not signalled: a child forked meanwhile
gets the SIGTERM too. So the child ignores SIGTERM (an ignored signal stays ignored
across exec); the check's own timeout, and the unit's SIGKILL after TimeoutStopSec=,
still bound it.

A cancel the daemon cannot take (it is stopping or restarting) is retried for
DELIVER_FOR seconds, well below the unit's TimeoutStopSec=30s. If it still cannot be
delivered it is written to the state database (the client unit may write there; the
database is found through $ORCHESTRATOR_SETTINGS), where the next daemon to take the
run's lease honours it. If that fails too, the journal says exactly what was done and
the client exits 7: the run was not cancelled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from enum import StrEnum
from typing import Any

from ..core.errors import OrchestratorError
from ..core.statuses import ExitCode, RunStatus
from ..engine import shutdown
from .client import Client, DaemonError

DELIVER_FOR = 15.0  # seconds of trying to reach the daemon; the unit's TimeoutStopSec is 30s
RETRY_EVERY = 0.5
CHECK_FOR = 5.0  # seconds for systemd to say whether the system shuts down


class Outcome(StrEnum):
    """What became of a stop request."""

    LEFT = "left"                # system shutdown: the run is left to the daemon
    DELIVERED = "delivered"      # the daemon took the cancel; following shows the end
    RECORDED = "recorded"        # written to the state database for the next daemon
    LOST = "lost"                # neither: the run goes on when the daemon starts


async def system_is_stopping(systemctl: str | None = None) -> bool:
    """Whether the system is shutting down (shutdown.py).

    systemctl: the program to ask (tests); by default systemctl, when systemd runs."""
    argv = shutdown.list_jobs_argv(systemctl)
    if not argv:
        return False  # not booted with systemd: no shutdown transaction to tell apart
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_ignore_stop_signals)
    except OSError as exc:
        _say(f"cannot ask systemd whether the system shuts down ({exc}); "
             "treating the stop as a cancel")
        return False
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHECK_FOR)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        _say(f"systemctl list-jobs did not answer within {CHECK_FOR:g} s; "
             "treating the stop as a cancel")
        return False
    if proc.returncode != 0:
        _say(f"systemctl list-jobs failed (exit {proc.returncode}: "
             f"{err.decode(errors='replace').strip()}); treating the stop as a cancel")
        return False
    return shutdown.shutting_down(out.decode(errors="replace"))


def _ignore_stop_signals() -> None:
    # Runs in the child between fork and exec: see the module's docstring.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopHandler:
    """Turns SIGTERM/SIGINT into a cancel of run_id, or leaves the run at shutdown."""

    def __init__(self, client: Client, run_id: str, follower: asyncio.Task):
        self.client, self.run_id, self.follower = client, run_id, follower
        self.signal: signal.Signals | None = None
        self.outcome: Outcome | None = None
        self._task: asyncio.Task | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._task is None:  # a second signal changes nothing: the first is handled
            self.signal = sig
            self._task = asyncio.create_task(self._handle())

    async def _handle(self) -> None:
        if await system_is_stopping():
            self.outcome = Outcome.LEFT
            _say(f"the system shuts down: run {self.run_id} is not cancelled; orchestratord "
                 "leaves it interrupted and resumes it at its next start")
        else:
            self.outcome = await self._deliver()
        if self.outcome is not Outcome.DELIVERED:
            self.follower.cancel()  # nothing more to follow here

    async def _deliver(self) -> Outcome:
        deadline, error = time.monotonic() + DELIVER_FOR, None
        while True:
            try:
                await self.client.call("POST", f"/runs/{self.run_id}/cancel")
                return Outcome.DELIVERED
            except DaemonError as exc:
                error = exc
            except OrchestratorError:
                return Outcome.DELIVERED  # it ended already; following tells how
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(RETRY_EVERY)
        _say(f"could not deliver the cancel of run {self.run_id} for {DELIVER_FOR:g} s: "
             f"{error}")
        try:
            where = await record_cancel(self.run_id)
        except (OrchestratorError, OSError) as exc:
            _say(f"could not record the cancel in the state database either: {exc}. "
                 f"Run {self.run_id} is NOT cancelled: it resumes when orchestratord starts; "
                 f"cancel it then with `orchestratorctl cancel {self.run_id}`")
            return Outcome.LOST
        _say(f"recorded the cancel of run {self.run_id} in {where}; orchestratord cancels "
             "the run when it next takes it up")
        return Outcome.RECORDED


async def record_cancel(run_id: str) -> str:
    """Write a cancel request for run_id into the daemon's state database; returns its
    path. The database is the one $ORCHESTRATOR_SETTINGS names (the daemon's settings)."""
    from ..core.statuses import TERMINAL
    from ..language.settings import load_settings
    from ..store.sqlite import Store
    settings_file = os.environ.get("ORCHESTRATOR_SETTINGS")
    if not settings_file:
        raise OrchestratorError("$ORCHESTRATOR_SETTINGS is not set, so the daemon's "
                                "state database is unknown")
    path = load_settings(settings_file).database_path
    if not path.exists():  # never create a database beside the daemon's
        raise OrchestratorError(f"{path}: no such state database")
    store = await Store.open(path)
    try:
        run = await store.get_run(run_id)
        if run.status not in TERMINAL:
            await store.request_cancel(run.id)
    finally:
        await store.close()
    return str(path)


def _say(text: str) -> None:
    # stderr: the unit's journal (and the terminal) say what became of the request.
    print(f"orchestratorctl: {text}", file=sys.stderr, flush=True)


def exit_status(handler: StopHandler | None, run: dict[str, Any] | None) -> int:
    """The client's exit: the run's outcome, or 128 + the signal that stopped it when
    the stop was done as asked (143 for SIGTERM: the unit's SuccessExitStatus=)."""
    if handler is not None and handler.signal is not None:
        stopped = 128 + handler.signal
        if handler.outcome in (Outcome.LEFT, Outcome.RECORDED):
            return stopped
        if handler.outcome is Outcome.LOST:
            return ExitCode.CANNOT_PROCEED
        if run is not None and run["status"] == RunStatus.CANCELLED:
            return stopped  # the cancel we were asked for
    return ExitCode.of_run(run["status"]) if run is not None else ExitCode.CANNOT_PROCEED
