"""Failure alerts: a journald record at priority crit, webhooks and commands.

An AlertManager listens to the engine. A run that failed, timed out or whose rollback
failed raises one alert; so does a workflow that has not succeeded for longer than its
`alerts.stale_after` age (checked periodically). Each alert is claimed in the state
database before it is sent, keyed by (run, kind), so a second notification of the same
run, or a restart, sends nothing twice.

Delivery never holds up a run: the engine's listener only schedules a task. Webhooks
are retried with exponential back-off in that task; commands get the alert as JSON on
stdin and a bounded time. Everything sent is redacted: no param marked secret leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import tenacity

from ..core.durations import format_duration, format_span
from ..core.redact import RunRedactor
from ..core.statuses import STEP_FAILURES, EventKind, RunStatus, StepStatus, ended_status
from ..language.settings import Alerts, WebhookSink
from ..store.sqlite import Store

log = logging.getLogger("orchestratord.alerts")

# journald MESSAGE_ID of every alert record (stable; generated once with uuid4):
#   journalctl MESSAGE_ID=5727368a5d3a4fbf89115e249386565f
ALERT_MESSAGE_ID = "5727368a5d3a4fbf89115e249386565f"

RUN_ALERTS = {EventKind.RUN_FAILED: "run_failed", EventKind.RUN_TIMED_OUT: "run_timed_out",
              EventKind.RUN_ROLLBACK_FAILED: "rollback_failed",
              EventKind.RUN_ROLLED_BACK: "run_failed"}
"""Engine event type -> alert kind. A rolled-back run failed (its compensation worked)."""

CATCH_UP_WINDOW = 86400.0
"""At start, runs that ended unalerted this recently are alerted (a crash lost them)."""



class _Retry(Exception):
    """A delivery failure worth another try: 5xx, 429, connection errors, timeouts."""


class AlertManager:
    """Turns the engine's run-end events into alerts, once each, without blocking runs."""

    def __init__(self, store: Store, config: Alerts | None = None, *,
                 attempts: int = 6, initial_delay: float = 1.0, max_delay: float = 60.0,
                 request_timeout: float = 10.0, command_timeout: float = 30.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config or Alerts()
        self.attempts = attempts
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.request_timeout, self.command_timeout = request_timeout, command_timeout
        self.sleep = sleep  # webhook back-off; injectable for tests
        self.clock = clock
        self.started_at = clock()  # "not succeeded since" for workflows that never ran
        self._tasks: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None

    # -- the engine's side --------------------------------------------------------------

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Engine listener: schedule the alert of a failed run, return at once."""
        kind = RUN_ALERTS.get(event.get("type", ""))
        if kind is None:
            return
        if event.get("stop_reason") == RunStatus.TIMED_OUT:
            kind = "run_timed_out"  # rolled back or not, the workflow timeout expired
        self._spawn(self.alert_run(event["run_id"], kind))

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert task failed", exc_info=task.exception())

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every alert is delivered or given up; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def close(self, grace: float = 5.0) -> None:
        """Give deliveries in flight `grace` seconds, then stop them."""
        if not await self.drain(grace):
            log.warning("%d alert deliveries still pending at shutdown; dropped", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- what an alert says -------------------------------------------------------------

    async def alert_run(self, run_id: str, kind: str) -> dict[str, Any] | None:
        """Build, claim and send the alert of a run; None if it was sent before."""
        run = await self.store.get_run(run_id)
        alert = await self._run_alert(run, kind)
        if not await self.store.claim_alert(run.id, kind, run.workflow):
            log.debug("alert %s for run %s already sent", kind, run.id)
            return None
        await self.send(alert)
        return alert

    async def catch_up(self, window: float = CATCH_UP_WINDOW) -> list[dict[str, Any]]:
        """Alert the runs that failed in the last `window` seconds without an alert.

        The engine's events reach the manager only while a process drives the run; one
        that dies between committing a failure and claiming its alert would lose it.
        A status is all that is left of such a run, so a rolled-back run that had
        timed out is alerted as failed.
        """
        statuses: dict[str, str] = {status: kind for event, kind in RUN_ALERTS.items()
                                    if (status := ended_status(event)) is not None}
        sent = []
        for run in await self.store.unalerted_runs(statuses, self.clock() - window):
            alert = await self.alert_run(run.id, statuses[run.status])
            if alert is not None:
                sent.append(alert)
        return sent

    async def _run_alert(self, run: Any, kind: str) -> dict[str, Any]:
        steps = await self.store.steps(run.id)
        rollback_errors = {a.step_id: a.error for a in await self.store.attempts(run.id)
                           if a.kind == "rollback" and a.error}
        failed: list[dict[str, Any]] = [
            {"id": s.step_id, "status": s.status,
             "error": rollback_errors.get(s.step_id) if s.status == StepStatus.COMPENSATION_FAILED
             else s.error}
            for s in steps if s.status in STEP_FAILURES]
        took = (f" after {format_span(run.started_at, run.finished_at)}"
                if run.started_at is not None and run.finished_at is not None else "")
        summary = (f"run {run.id} of workflow {run.workflow} {run.status.replace('_', ' ')}"
                   f"{took}" + (f": {run.error}" if run.error else ""))
        if failed:
            summary += "; " + "; ".join(f"{f['id']} {f['status'].replace('_', ' ')}"
                                        + (f": {f['error']}" if f["error"] else "") for f in failed)
        alert = {"kind": kind, "run_id": run.id, "workflow": run.workflow, "status": run.status,
                 "failed_steps": failed, "summary": summary,
                 "report": f"orchestratorctl report {run.id}"}
        return RunRedactor.for_run(run, steps)(alert)

    async def check_stale(self, now: float | None = None) -> list[dict[str, Any]]:
        """Alert for each workflow whose last success is older than its stale_after."""
        now = self.clock() if now is None else now
        sent = []
        for workflow, max_age in self.config.stale_after.items():
            last = await self.store.last_success(workflow)
            since = last[1] if last else (
                await self.store.first_run_at(workflow) or self.started_at)
            if now - since <= max_age:
                continue
            # One alert per stale stretch: a new success starts a new one.
            subject = f"{workflow}@{last[0] if last else 'never'}"
            if not await self.store.claim_alert(subject, "workflow_stale", workflow):
                continue
            when = (f"last success: run {last[0]} at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last[1]))}"
                    if last else "it never succeeded")
            alert: dict[str, Any] = {"kind": "workflow_stale", "run_id": last[0] if last else None,
                     "workflow": workflow, "status": "stale", "failed_steps": [],
                     "summary": f"workflow {workflow} has not succeeded for "
                                f"{format_duration(now - since)} "
                                f"(alert after {format_duration(max_age)}); {when}",
                     "report": f"orchestratorctl runs --workflow {workflow}"}
            await self.send(alert)
            sent.append(alert)
        return sent

    async def watch_stale(self, interval: float) -> None:
        """check_stale every interval seconds, for the daemon's lifetime."""
        while True:
            try:
                await self.check_stale()
            except Exception:  # a broken check must not stop the next ones
                log.exception("checking for stale workflows failed")
            await asyncio.sleep(interval)

    def stale_interval(self) -> float:
        """How often to check: a tenth of the shortest age, between 1 s and 60 s."""
        ages = self.config.stale_after.values()
        return min(60.0, max(1.0, min(ages) / 10)) if ages else 60.0

    # -- delivery -----------------------------------------------------------------------

    async def send(self, alert: dict[str, Any]) -> None:
        """The journal record now; webhooks and commands in background tasks."""
        log.critical("alert %s: %s", alert["kind"], alert["summary"], extra={"fields": {
            "MESSAGE_ID": ALERT_MESSAGE_ID, "ALERT_KIND": alert["kind"],
            "WORKFLOW": alert["workflow"], "RUN_ID": alert["run_id"]}})
        body = json.dumps(alert).encode()
        for sink in self.config.webhooks:
            self._spawn(self._post(sink, body, alert))
        for argv in self.config.commands:
            self._spawn(self._command(argv, body, alert))

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        return self._http

    async def _post(self, sink: WebhookSink, body: bytes, alert: Mapping[str, Any]) -> bool:
        fields = {"ALERT_KIND": alert["kind"], "WORKFLOW": alert["workflow"],
                  "RUN_ID": alert["run_id"]}

        def before_sleep(state: tenacity.RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0
            failure = state.outcome.exception() if state.outcome else None  # set before a sleep
            log.warning("alert webhook %s: %s; retry %d in %.1f s", sink.url,
                        failure, state.attempt_number, delay,
                        extra={"fields": fields})

        session = await self._session()
        headers = {"Content-Type": "application/json", **sink.headers}
        try:
            async for attempt in tenacity.AsyncRetrying(
                    stop=tenacity.stop_after_attempt(self.attempts),
                    wait=tenacity.wait_exponential(multiplier=self.initial_delay,
                                                   max=self.max_delay),
                    retry=tenacity.retry_if_exception_type(_Retry), sleep=self.sleep,
                    before_sleep=before_sleep, reraise=True):
                with attempt:
                    await self._post_once(session, sink, body, headers)
        except _Retry as exc:
            log.error("alert webhook %s: not delivered after %d attempts: %s", sink.url,
                      self.attempts, exc, extra={"fields": fields})
            return False
        except _Rejected as exc:
            log.error("alert webhook %s: rejected: %s", sink.url, exc, extra={"fields": fields})
            return False
        log.info("alert webhook %s: delivered", sink.url, extra={"fields": fields})
        return True

    @staticmethod
    async def _post_once(session: aiohttp.ClientSession, sink: WebhookSink, body: bytes,
                         headers: dict[str, str]) -> None:
        try:
            async with session.post(sink.url, data=body, headers=headers) as response:
                if response.status >= 500 or response.status == 429:
                    raise _Retry(f"HTTP {response.status}")
                if response.status >= 400:
                    text = (await response.text(errors="replace"))[:200]
                    raise _Rejected(f"HTTP {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None

    async def _command(self, argv: list[str], body: bytes, alert: Mapping[str, Any]) -> bool:
        fields = {"ALERT_KIND": alert["kind"], "WORKFLOW": alert["workflow"],
                  "RUN_ID": alert["run_id"]}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            log.error("alert command %r cannot run: %s", argv, exc, extra={"fields": fields})
            return False
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(body), self.command_timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            log.error("alert command %r killed after %g s", argv, self.command_timeout,
                      extra={"fields": fields})
            return False
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        if proc.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            log.error("alert command %r exited with status %d%s", argv, proc.returncode,
                      f": {tail[0]}" if tail else "", extra={"fields": fields})
            return False
        return True


class _Rejected(Exception):
    """The webhook refused the alert (4xx): trying again would not help."""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

