"""The engine: starts, drives, resumes and cancels runs against one store.

One Engine per process; its runs share its limits (per-skill concurrency, one HTTP
session) and its listeners, which hear of every run and step event (metrics, alerts,
progress, the daemon's status). How one run is driven, step by step, is `run.RunDriver`.

The engine knows nothing of HTTP or systemd: it is given a store and settings, and
tells listeners what happens.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from ..core import processes, redact
from ..core.errors import LeaseHeld, RunStateError
from ..core.statuses import FINISHED, TERMINAL, EventKind, RunStatus
from ..language.evaluator import Evaluator
from ..language.loader import Definition, bind_params
from ..store.sqlite import RunRow, Store
from .driver import RunDriver, RunResult
from .runners.unit import StepUnits

__all__ = ["Engine", "Listener", "RunResult", "check_resumable", "settle_heap"]

log = logging.getLogger("orchestratord.engine")

Listener = Callable[[dict[str, Any]], None]


def settle_heap() -> None:
    """Collect garbage once, then keep what is alive now (modules, the loaded
    definitions, the catalog) out of the collector's sight (gc.freeze): call it once
    they are loaded, before driving runs, and again after loading new ones.

    Why: each full collection walks every object alive, and a loaded definition is
    many (10,000 steps: their models, source positions, graph). A fan-out of 10,000
    triggered five full collections that took 0.75 s of its 2.8 s, 0.31 s once the
    definition was frozen (gc.callbacks, bench.engine). What a run allocates is still
    collected as before; only what was alive at the call is frozen. Frozen objects are
    still freed by reference counting; one that becomes part of a garbage cycle (a
    definition replaced at reload) waits for the next call, which unfreezes first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def check_resumable(run: RunRow) -> None:
    """Raise RunStateError when resuming run has nothing to do. Asked before a resume is
    accepted (the daemon, the MCP server: so the caller hears it, not only the log), and
    again by Engine.resume, which may run later."""
    if run.status in FINISHED:
        raise RunStateError(f"run {run.id} {run.status.replace('_', ' ')}; nothing to resume "
                            f"(start a new run of {run.workflow} to run it again)")


class Engine:
    """Runs workflows against one store. One engine per process; runs share its limits."""

    def __init__(self, store: Store, *, settings: Mapping[str, Any] | None = None,
                 owner: str | None = None, lease_ttl: float = 15.0, kill_grace: float = 5.0,
                 step_timeout: float | None = None, step_units: StepUnits | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep):
        self.store = store
        self.settings = dict(settings or {})
        self.owner = owner or processes.process_identity()
        self.lease_ttl = lease_ttl
        self.kill_grace = kill_grace
        self.step_timeout = step_timeout
        self.step_units = step_units  # command steps as systemd units, where set
        self.sleep = sleep  # retry back-off; injectable so tests need not wait
        self.listeners: list[Listener] = []
        # Secrets of the runs driven now: scrubbed from log records and emitted events.
        self.secrets = redact.SecretRegistry()
        self.secrets.install("orchestratord.engine", "orchestratord.step")
        self._skill_limits: dict[str, asyncio.Semaphore] = {}
        self._drivers: dict[str, RunDriver] = {}
        self._http: aiohttp.ClientSession | None = None
        self.evaluator = Evaluator()  # `when` and `{{ }}`, bounded, off the event loop

    async def start(self, definition: Definition, params: Mapping[str, Any] | None = None) -> str:
        """Record a new run of definition (params checked); returns its id."""
        bound = bind_params(definition.workflow, dict(params or {}))
        steps = [(n.id, n.skill, n.action) for n in definition.graph.nodes.values()]
        run_id = await self.store.create_run(definition.name, definition.source, definition.file,
                                             bound, steps)
        self.emit({"type": EventKind.RUN_CREATED, "run_id": run_id, "workflow": definition.name})
        return run_id

    async def run(self, definition: Definition,
                  params: Mapping[str, Any] | None = None) -> RunResult:
        """Start a run and drive it to its end."""
        return await self.drive(await self.start(definition, params), definition)

    async def resume(self, run_id: str, definition: Definition) -> RunResult:
        """Continue an interrupted run, or redrive a failed, cancelled or timed-out one."""
        run = await self.store.get_run(run_id)
        check_resumable(run)
        redrive = run.status in TERMINAL
        await self.store.acquire_lease(run.id, self.owner, self.lease_ttl)
        try:
            await self._stop_orphans(run.id)
            await self.store.prepare_resume(run.id, redrive=redrive)
        except BaseException:
            await asyncio.shield(self.store.release_lease(run.id, self.owner))
            raise
        return await self.drive(run.id, definition, resumed=True)

    async def _stop_orphans(self, run_id: str) -> None:
        """Stop the process groups of attempts a dead driver left running (their leaders'
        identities are recorded), and wait until they are gone: an attempt about to run
        again must never run beside its old copy."""
        for a in await self.store.orphans(run_id):
            assert a.process is not None, "orphans() selects the attempts with a process"
            if not await processes.stop_group(a.process, grace=self.kill_grace,
                                              timeout=self.kill_grace + 10):
                raise RunStateError(
                    f"run {run_id}: attempt {a.attempt} of step {a.step_id} left process group "
                    f"{a.process.split(':')[1]} running, and it cannot be stopped from here; "
                    "stop it, then resume the run again")

    async def drive(self, run_id: str, definition: Definition, *,
                    resumed: bool = False) -> RunResult:
        """Drive a recorded run until it ends (or this task is cancelled: interrupted)."""
        run, steps = await self.store.run_and_steps(run_id)
        driver = RunDriver(self, run.id, definition, run.params, steps)
        self._drivers[run.id] = driver
        try:
            return await driver.drive(resumed)
        finally:
            del self._drivers[run.id]

    async def cancel_run(self, run_id: str, definition: Definition) -> RunResult | None:
        """Cancel a run wherever it is; the cancel is never lost.

        The request is recorded first (store.request_cancel). A run driven here, or by
        another live process, is stopped by its driver within a second: None. A run that
        nobody drives (its driver died, or it never started) is taken over here and ends
        at once: what its dead driver left running is stopped, nothing more is launched,
        and `on_failure: rollback` compensates; its result is returned.
        """
        run = await self.store.get_run(run_id)
        if run.status in TERMINAL:
            raise RunStateError(f"run {run.id} is {run.status.replace('_', ' ')}; "
                                "nothing to cancel")
        await self.store.request_cancel(run.id)
        if self.cancel(run.id) or await self.store.driven(run.id):
            return None
        try:
            return await self.resume(run.id, definition)
        except LeaseHeld:
            return None  # a driver took the run meanwhile; it honours the request

    def cancel(self, run_id: str) -> bool:
        """Cancel a run this engine drives; False if it drives no such run."""
        driver = self._drivers.get(run_id)
        if driver is None:
            return False
        driver.stop(RunStatus.CANCELLED)
        return True

    def active(self, limit: int | None = None) -> dict[str, tuple[str, int, int]]:
        """run id -> (workflow, steps ended, steps in all) of the runs driven now (the
        first `limit` of them started, if given: the daemon's status line asks on every
        event, and a thousand runs at once made each ask walk them all)."""
        drivers = itertools.islice(self._drivers.items(), limit)
        return {rid: (d.definition.name, d.ended, len(d.graph.nodes)) for rid, d in drivers}

    def active_count(self) -> int:
        """How many runs are driven now."""
        return len(self._drivers)

    async def close(self) -> None:
        self.secrets.uninstall()
        await self.evaluator.close()
        if self.step_units is not None:
            await self.step_units.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def http_session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._http

    def skill_limit(self, name: str, limit: int | None) -> asyncio.Semaphore | None:
        if limit is None:
            return None
        return self._skill_limits.setdefault(name, asyncio.Semaphore(limit))

    def emit(self, event: dict[str, Any]) -> None:
        event = self.secrets.scrub(event.get("run_id"), event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken observer must not break the run
                log.exception("listener %r failed on %s", listener, event.get("type"))
