"""orchestratord: the long-running daemon around the engine.

Lifecycle (systemd Type=notify): open the database, load definitions, bind the control
socket, resume interrupted runs, then READY=1. STATUS= says what runs; WATCHDOG=1 comes
from the event loop itself, so a blocked loop gets the daemon restarted. SIGHUP
reloads definitions (RELOADING=1 ... READY=1); SIGTERM sends STOPPING=1, stops running
steps and leaves their runs interrupted, to be resumed at the next start.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import time
from typing import Any

from aiohttp import web

from ..core.errors import LeaseHeld, OrchestratorError, RunStateError, WorkflowNotFound
from ..core.statuses import TERMINAL, EventKind, RunStatus
from ..core.version import __version__
from ..engine.engine import Engine, check_resumable, settle_heap
from ..engine.runners.unit import StepUnits
from ..integrations.aidb.service import AidbService, alert_via
from ..language.catalog import Catalog, load_catalog
from ..language.loader import stored_definition
from ..language.settings import Settings
from ..observability.alerts import AlertManager
from ..observability.metrics import Metrics
from ..store import stats, workspaces
from ..store.sqlite import Store
from .aidb_execute import execute, serve_execute
from .api import make_app, make_metrics_app
from .connections import Guard
from .notify import Notifier

log = logging.getLogger("orchestratord.daemon")


class Daemon:
    """One orchestratord: a store, an engine, a catalog and the control API."""

    def __init__(self, settings: Settings, *, handle_signals: bool = True):
        self.settings = settings
        self.handle_signals = handle_signals
        self.notifier = Notifier()
        self.catalog = Catalog()
        self.store: Store = None  # type: ignore[assignment]
        self.engine: Engine = None  # type: ignore[assignment]
        self.alerts: AlertManager | None = None
        self._background: list[asyncio.Task] = []  # periodic chores, for the daemon's life
        self.tasks: dict[str, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(settings.max_active_runs)
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()  # set, then replaced, on each engine event
        self._reloading = asyncio.Lock()
        self._status = ""
        self._runner: web.AppRunner | None = None
        self.connections = Guard()  # the API's listeners and clients, bounded
        self.metrics = Metrics()
        self.metrics_address: str | None = None  # host:port of the TCP /metrics, once bound
        self._metrics_runner: web.AppRunner | None = None
        self.aidb: AidbService | None = None
        self.api_address: str | None = None  # host:port of aidb.api_listen, once bound
        self._api_runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def main(self) -> None:
        """Run until SIGTERM (or `stop()`), then shut down cleanly."""
        loop = asyncio.get_running_loop()
        if self.handle_signals:  # before READY=1: a signal right after it must be handled
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.start()
        except BaseException:
            await self.close()  # else the store's thread keeps a daemon that failed alive
            raise
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            await self.close()

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.open(s.database_path)
        units = StepUnits(s.step_units, s.step_sandbox, s.state_dir, kill_grace=s.kill_grace,
                          record=self.store.record_event)
        self.engine = Engine(self.store, settings=s.engine_settings(), lease_ttl=s.lease_ttl,
                             kill_grace=s.kill_grace, step_timeout=s.step_timeout,
                             step_units=units)
        self.engine.listeners.append(self._on_event)
        self.engine.listeners.append(self.metrics)
        # Counters restart from zero with the process; the last success must not.
        self.metrics.load_last_success(
            await asyncio.to_thread(stats.last_successes, self.store.path))
        self.alerts = AlertManager(self.store, s.alerts)
        self.engine.listeners.append(self.alerts)
        await self.alerts.catch_up()  # what a crash between a failure and its alert lost
        if s.alerts.stale_after:
            self._background.append(asyncio.create_task(
                self.alerts.watch_stale(self.alerts.stale_interval())))
        if s.workspace_retention is not None:
            self._background.append(asyncio.create_task(workspaces.prune_periodically(
                self.store, s.state_dir, s.workspace_retention,
                interval=min(3600.0, s.workspace_retention / 10))))
        aidb = self.aidb = AidbService(s.aidb, s.database_path, registry=self.metrics.registry,
                                       alert=alert_via(self.store, self.alerts),
                                       retry_max=s.aidb.retry_max_delay)
        aidb.registry_of = lambda: self.catalog.skills
        await aidb.start(on_refresh=lambda: aidb.apply(self.catalog))
        self.engine.listeners.append(aidb.on_event)
        self.catalog = load_catalog(s.workflows_dir, s.skill_paths)
        self.aidb.apply(self.catalog)
        settle_heap()  # what lives as long as the daemon, out of the collector's way
        await self._serve()
        await self._resume_interrupted()
        self.notifier.notify("READY=1")
        self._update_status(force=True)
        log.info("orchestratord %s ready: %d workflows, socket %s", __version__,
                 len(self.catalog.workflows), s.socket)

    def stop(self) -> None:
        if not self._stop.is_set():
            self.notifier.notify("STOPPING=1")
            log.info("stopping: running steps are stopped, their runs left resumable")
            self._stop.set()

    async def close(self) -> None:
        """Stop runs (left interrupted), the server and the store; idempotent.

        Steps running as their own units go on: the next start collects them.
        """
        if self.engine is not None and self.engine.step_units is not None:
            self.engine.step_units.detach()
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.alerts is not None:
            await self.alerts.close(grace=5.0)  # deliveries in flight get a moment
            self.alerts = None
        self.connections.close_listeners()
        for runner in (self._runner, self._metrics_runner, self._api_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._metrics_runner = self._api_runner = None
        if self.aidb is not None:
            await self.aidb.close()
            self.aidb = None
        if self.engine is not None:
            await self.engine.close()
        if self.store is not None:
            await self.store.close()

    async def reload(self) -> Catalog:
        """Reload definitions; a broken file keeps its workflow's previous definition.

        Reached by SIGHUP and by POST /reload, which answers once this returned: that is
        how `systemctl reload` (ExecReload=orchestratord --reload) waits for it. The
        RELOADING=1 carries MONOTONIC_USEC, as Type=notify-reload (systemd >= 253) wants.
        """
        async with self._reloading:  # one at a time; a second waits and rereads
            self.notifier.notify("RELOADING=1\nMONOTONIC_USEC="
                                 f"{time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
            try:
                catalog = load_catalog(self.settings.workflows_dir, self.settings.skill_paths,
                                       previous=self.catalog)
            except Exception:  # the reload waits for READY=1: it must come whatever failed
                log.exception("reload failed; the definitions loaded before stay in use")
            else:
                if self.aidb is not None:
                    self.aidb.apply(catalog)
                    self.aidb.refresh_soon()
                self.catalog = catalog
                settle_heap()
                log.info("reloaded: %d workflows, %d problems", len(catalog.workflows),
                         len(catalog.problems))
            finally:
                self.notifier.notify("READY=1")
                self._update_status(force=True)
            return self.catalog

    async def _serve(self) -> None:
        path = self.settings.socket
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()  # left by a daemon that did not stop cleanly
        app = make_app(self)
        app.router.add_post("/skills/{name}/execute", execute)  # AIDB's contract, on the socket
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None, "setup() makes the server"
        await self.connections.listen_unix(self._runner.server, str(path))
        os.chmod(path, 0o660)
        if self.settings.socket_group:
            os.chown(path, -1, grp.getgrnam(self.settings.socket_group).gr_gid)
        if self.settings.metrics_listen:
            await self._serve_metrics(self.settings.metrics_listen)
        if self.settings.aidb.api_listen:
            from ..integrations.aidb.client import read_key
            key = read_key(self.settings.aidb.api_key_file)
            assert key is not None  # the settings refuse api_listen without api_key_file
            self._api_runner, self.api_address = await serve_execute(
                self, self.settings.aidb.api_listen, key)
            log.info("execute endpoint on http://%s/skills/NAME/execute", self.api_address)

    async def _serve_metrics(self, listen: str) -> None:
        """/metrics alone on TCP, for a Prometheus that cannot reach the unix socket."""
        host, _, port = listen.rpartition(":")
        self._metrics_runner = web.AppRunner(make_metrics_app(self.metrics, self.connections),
                                             access_log=None)
        await self._metrics_runner.setup()
        assert self._metrics_runner.server is not None, "setup() makes the server"
        try:
            bound = await self.connections.listen_tcp(self._metrics_runner.server,
                                                      host.strip("[]"), int(port))
        except (OSError, OverflowError) as exc:  # in use, no such address, port > 65535
            raise OrchestratorError(f"metrics_listen {listen}: cannot listen: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from exc
        self.metrics_address = (f"[{bound[0]}]:{bound[1]}" if ":" in bound[0]
                                else f"{bound[0]}:{bound[1]}")
        log.info("metrics on http://%s/metrics", self.metrics_address)

    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
            return
        while True:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(usec / 2e6)

    # -- runs ---------------------------------------------------------------------------

    async def start_run(self, workflow: str, params: dict[str, Any]) -> str:
        definition = self.catalog.workflows.get(workflow)
        if definition is None:
            raise WorkflowNotFound(workflow, list(self.catalog.workflows))
        return await self.start_definition(definition, params)

    async def start_definition(self, definition: Any, params: dict[str, Any] | None = None) -> str:
        """Record a run of a checked definition (a served workflow, a call) and drive it."""
        run_id = await self.engine.start(definition, params)
        self._spawn(run_id, self._drive(run_id, definition))
        return run_id

    async def resume_run(self, run_id: str) -> str:
        run = await self.store.get_run(run_id)
        if run.id in self.tasks:
            raise RunStateError(f"run {run.id} is running")
        check_resumable(run)  # a 409 to the caller, not a line in the journal
        definition = stored_definition(run.definition, run.file, self.catalog.skills)
        self._spawn(run.id, self._drive(run.id, definition, resume=True))
        return run.id

    async def cancel_run(self, run_id: str) -> str:
        run = await self.store.get_run(run_id)
        if run.status in TERMINAL:
            raise RunStateError(f"run {run.id} already {run.status}")
        if not self.engine.cancel(run.id):
            task = self.tasks.get(run.id)
            if task is not None:  # still waiting for a slot: never started
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await self.store.set_run_status(run.id, RunStatus.CANCELLED,
                                                EventKind.RUN_CANCELLED,
                                                error="cancelled before it started")
            else:  # driven by another process, or by none since its driver died
                await self.store.request_cancel(run.id)
                if not await self.store.driven(run.id):  # honour it here, now
                    definition = stored_definition(run.definition, run.file, self.catalog.skills)
                    self._spawn(run.id, self._drive(run.id, definition, resume=True))
        return run.id

    def _spawn(self, run_id: str, work: Any) -> None:
        task = asyncio.create_task(work, name=f"run-{run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(run_id, None))

    async def _drive(self, run_id: str, definition: Any, resume: bool = False) -> None:
        async with self._slots:
            try:
                if resume:
                    await self.engine.resume(run_id, definition)
                else:
                    await self.engine.drive(run_id, definition)
            except LeaseHeld as exc:
                log.warning("not driving run %s: %s", run_id, exc)
            except OrchestratorError as exc:
                log.error("run %s could not be driven: %s", run_id, exc)
            except Exception:  # a bug must not take the daemon down with it
                log.exception("run %s failed inside the engine", run_id)
            finally:
                self._update_status()

    async def _resume_interrupted(self) -> None:
        for status in (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.PENDING):
            for run in await self.store.list_runs(status=status, limit=10000):
                try:
                    definition = stored_definition(run.definition, run.file, self.catalog.skills)
                except OrchestratorError as exc:
                    log.error("cannot resume run %s: %s", run.id, exc)
                    continue
                log.info("resuming %s run %s of %s", status, run.id, run.workflow)
                self._spawn(run.id, self._drive(run.id, definition, resume=True))

    # -- observers ----------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        self._update_status()
        # Wakes every waiter of changed() without a task: they hold the event just set.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, timeout: float) -> None:
        """Wait until the engine reports something, or timeout."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def _update_status(self, force: bool = False) -> None:
        count = self.engine.active_count() if self.engine else 0
        if count:
            parts = [f"{wf} {done}/{total} steps"
                     for wf, done, total in self.engine.active(limit=5).values()]
            status = f"{count} run{'s' * (count != 1)} active: " + ", ".join(parts)
        else:
            status = f"idle: {len(self.catalog.workflows)} workflows"
        if force or status != self._status:
            self._status = status
            self.notifier.notify(f"STATUS={status}")

