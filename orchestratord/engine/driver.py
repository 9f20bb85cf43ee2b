"""One run, driven: its DAG to its end, durably.

A step starts as soon as every step it depends on has ended and its trigger rule and
`when` allow it. Its outcome is committed before any dependent is considered, so a
crash never loses a finished step and never lets a dependent run ahead of it. A failure
affects only the failed step's dependents (they end `upstream_failed` unless their
trigger rule runs them anyway); independent branches carry on, and the run fails at
the end. Cancellation and the workflow timeout stop launching, cancel what runs (its
processes are terminated), then the failure policy applies (`on_failure: rollback`
compensates succeeded steps in reverse completion order).

A driver belongs to its engine (engine.Engine), which gives it the store, the settings,
the shared limits and the listeners to tell.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from ..core import redact
from ..core.errors import ExpressionError, StepFailure
from ..core.statuses import (
    STEP_ENDED,
    AttemptStatus,
    EventKind,
    RunStatus,
    StepStatus,
)
from ..language import aggregate, expr
from ..language.loader import Definition
from ..store.sqlite import StepRow
from . import attempts, compensation, outcomes, retry
from .context import MESSAGE_IDS, step_logger
from .scope import expression_scope, step_view

if TYPE_CHECKING:
    from .services import EngineServices

# The engine's logger: its records are the engine's, and its secret filter is on it.
log = logging.getLogger("orchestratord.engine")

@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    outputs: Any = None
    error: str | None = None


class RunDriver:
    """Drives one run: the scheduling loop, steps, compensation, lease."""

    def __init__(self, engine: EngineServices, run_id: str, definition: Definition,
                 params: dict[str, Any], rows: list[StepRow]):
        self.engine, self.store = engine, engine.store
        self.run_id, self.definition, self.graph = run_id, definition, definition.graph
        self.params = params
        self.rows = {r.step_id: r for r in rows}
        self.status = {r.step_id: r.status for r in rows}
        self.views = {r.step_id: step_view(r.status, r.result, r.error, r.attempts, r.duration)
                      for r in rows}
        self.tolerated = {sid for sid, r in self.rows.items() if r.status == StepStatus.FAILED
                          and self.graph.nodes[sid].step.continue_on_error}
        self.current_attempt: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.ended = sum(1 for s in self.status.values() if s in STEP_ENDED)
        self._tasks: dict[asyncio.Task, str] = {}
        self.log = step_logger("orchestratord.engine", WORKFLOW=definition.name, RUN_ID=run_id)

    # -- the run ------------------------------------------------------------------------

    async def drive(self, resumed: bool) -> RunResult:
        engine, workflow = self.engine, self.definition.workflow
        cancel_requested = await self.store.acquire_lease(self.run_id, engine.owner,
                                                          engine.lease_ttl)
        engine.secrets.add(self.run_id, redact.workflow_param_secrets(self.params, workflow.params))
        for row in self.rows.values():  # a resumed run's results, as hunted when recorded
            engine.secrets.add(self.run_id, redact.secret_values(row.result))
        released = False  # by the run's end event, in its transaction
        keeper = asyncio.create_task(self._keep_lease())
        timer = (asyncio.get_running_loop().call_later(workflow.timeout, self.stop,
                                                       RunStatus.TIMED_OUT)
                 if workflow.timeout else None)
        try:
            await self._set(RunStatus.RUNNING,
                            EventKind.RUN_RESUMED if resumed else EventKind.RUN_STARTED)
            self._log(logging.INFO, EventKind.RUN_STARTED, "run %s of %s %s", self.run_id,
                      workflow.name, "resumed" if resumed else "started")
            plan = await compensation.recorded_plan(self) if resumed else None
            if plan is not None:
                # It was rolling back when its driver stopped: that is all that is left.
                error, outputs = plan.error, None
                status = await compensation.compensate(self, plan)
            else:
                ended = await self._forward(cancel_requested)
                if ended is None:
                    return RunResult(self.run_id, RunStatus.INTERRUPTED,
                                     error="lost the run's lease")
                status, error, outputs = ended
            outputs = attempts.shown(self, outputs)  # recorded and returned as shown
            # The end releases the lease in its own transaction (one commit, not two); the
            # keeper stops first, else a renewal just after it would report the lease lost.
            keeper.cancel()
            await self._set(status, EventKind.run_ended(status), error=error, outputs=outputs,
                            release=engine.owner)
            released = True
            ok = status == RunStatus.SUCCEEDED
            self._log(logging.INFO if ok else logging.ERROR,
                      EventKind.RUN_SUCCEEDED if ok else EventKind.RUN_FAILED,
                      "run %s of %s %s%s", self.run_id, workflow.name, status.replace("_", " "),
                      f": {error}" if error else "")
            return RunResult(self.run_id, status, outputs, error)
        except asyncio.CancelledError:
            # Our host stops (daemon shutdown, Ctrl-C): leave the run resumable.
            await asyncio.shield(self._set(RunStatus.INTERRUPTED, EventKind.RUN_INTERRUPTED))
            self.log.warning("run %s interrupted; resume it with `orchestratorctl resume %s`",
                             self.run_id, self.run_id)
            raise
        finally:
            if timer:
                timer.cancel()
            keeper.cancel()
            if not released:
                await asyncio.shield(self.store.release_lease(self.run_id, engine.owner))
            engine.secrets.discard(self.run_id)

    async def _forward(self, cancel_requested: bool) -> tuple[str, str | None, Any] | None:
        """Run the steps; (status, error, outputs) at the end, None if the lease was lost.
        cancel_requested: whether a cancel was pending when the lease was taken."""
        workflow = self.definition.workflow
        if cancel_requested:
            self.stop(RunStatus.CANCELLED)  # asked while no process drove the run: honoured first
        await self._schedule()
        if self.stop_reason == "lease_lost":
            return None
        status, error, outputs = self._outcome()
        if status == RunStatus.SUCCEEDED:
            try:
                compiled = expr.compile_value(workflow.outputs)
                outputs = await self.engine.evaluator.render(
                    compiled, self.scope(None, compiled.selectors))
            except ExpressionError as exc:
                status, error = RunStatus.FAILED, f"outputs: {exc}"
        if status != RunStatus.SUCCEEDED and workflow.on_failure == "rollback":
            status = await compensation.compensate(
                self, await compensation.record_plan(self, status, error))
        return status, error, outputs

    def stop(self, reason: str) -> None:
        """Stop launching steps and cancel the running ones (cancelled, timed_out)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            for task in self._tasks:
                task.cancel()

    def _outcome(self) -> tuple[str, str | None, Any]:
        return (*outcomes.run_ended(self.stop_reason, self.status, self.tolerated,
                                    self.definition.workflow.timeout), None)

    async def _set(self, status: str, event: str, **kw: Any) -> None:
        await self.store.set_run_status(self.run_id, status, event,
                                        data={"workflow": self.definition.name}, **kw)
        self.engine.emit({"type": event, "run_id": self.run_id,
                           "workflow": self.definition.name, "status": status,
                           "error": kw.get("error"), "stop_reason": self.stop_reason})

    def _log(self, level: int, message_id: EventKind, msg: str, *args: Any) -> None:
        self.log.logger.log(level, msg, *args, extra={"fields": {
            **self.log.fields, "MESSAGE_ID": MESSAGE_IDS[message_id]}})

    async def _keep_lease(self) -> None:
        engine, renewed = self.engine, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            if await self.store.cancel_requested(self.run_id):
                self.stop(RunStatus.CANCELLED)
            if time.monotonic() - renewed > engine.lease_ttl / 3:
                if not await self.store.renew_lease(self.run_id, engine.owner, engine.lease_ttl):
                    self.log.critical("lost the lease of run %s to another process; stopping",
                                      self.run_id)
                    self.stop("lease_lost")
                renewed = time.monotonic()

    # -- scheduling ---------------------------------------------------------------------

    async def _schedule(self) -> None:
        graph, limit = self.graph, self.definition.workflow.concurrency
        waiting: dict[str, int] = {}
        ready: collections.deque[str] = collections.deque()
        for node in graph.nodes.values():
            if self.status[node.id] in STEP_ENDED:
                continue
            left = sum(1 for d in node.deps if self.status[d] not in STEP_ENDED)
            if left:
                waiting[node.id] = left
            else:
                ready.append(node.id)
        tasks = self._tasks
        # Finished tasks arrive on a queue: asyncio.wait() over every running task would
        # cost O(running) per completion, quadratic for a wide fan-out.
        finished: asyncio.Queue[asyncio.Task] = asyncio.Queue()
        succeeded: list[tuple[str, asyncio.Future, dict[str, Any], int]] = []
        try:
            while True:
                while ready and len(tasks) < limit and self.stop_reason is None:
                    node_id = ready.popleft()
                    decision = await self._decide(node_id)
                    if decision is None:
                        task = asyncio.create_task(self._run_step(node_id))
                        task.add_done_callback(finished.put_nowait)
                        tasks[task] = node_id
                    else:
                        await self._end_without_running(node_id, *decision)
                        self._release(node_id, waiting, ready)
                if succeeded:
                    await self._commit_successes(succeeded)
                if not tasks:
                    return
                done = [await finished.get()]
                while not finished.empty():
                    done.append(finished.get_nowait())
                for task in done:
                    node_id = tasks.pop(task)
                    if task.cancelled():
                        await self._record_cancelled(node_id)
                    elif (end := task.result()) is not None:  # an engine bug surfaces here
                        succeeded.append((node_id, *end, self.ended + 1))
                    self._release(node_id, waiting, ready)
        except BaseException:  # cancelled, or the store failed under a step
            self.store.flush()  # what succeeded is written all the same
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # none left unretrieved
            raise

    async def _commit_successes(self, succeeded: list[tuple[str, asyncio.Future,
                                                             dict[str, Any], int]]) -> None:
        """Wait for the commit of the outcomes of steps that succeeded, then tell.

        A succeeded step queues its outcome (store.step_finished_later); its dependents
        are decided on it in memory and their tasks created before the queue is written,
        so their starts join the same transaction: a chain commits once a step, not
        twice (counted: 2.03 -> 1.03 round trips to the database thread a step). Still
        safe (a step's outcome is committed before any dependent starts): a dependent
        runs only once its start is committed, in the outcome's transaction or a later
        one; an outcome is a required row (its failure fails its whole batch); and a
        failed batch raises here, cancelling the dependents, before the next batch is
        written. Listeners and the journal hear of a success once it is committed.
        """
        self.store.flush()
        for node_id, committed, fields, ended in succeeded:
            await committed
            self._announce(node_id, StepStatus.SUCCEEDED, None, ended)
            log.info("step %s succeeded", node_id, extra={"fields": fields})
        succeeded.clear()

    def _release(self, node_id: str, waiting: dict[str, int], ready: collections.deque) -> None:
        self.ended += 1
        for dependent in self.graph.dependents[node_id]:
            if dependent in waiting:
                waiting[dependent] -= 1
                if not waiting[dependent]:
                    del waiting[dependent]
                    ready.append(dependent)

    async def _decide(self, node_id: str) -> tuple[str, str] | None:
        """None to run the step, else (status, reason) it ends with unrun."""
        node = self.graph.nodes[node_id]
        verdict = outcomes.unrun(node.step.trigger_rule, {d: self.status[d] for d in node.deps},
                                 self.tolerated)
        if verdict is not None:
            return verdict
        if node.step.when is not None:
            try:
                compiled = expr.Expression.compile(node.step.when)
                if not await self.engine.evaluator.truthy(
                        compiled, self.scope(compiled.step_refs, compiled.selectors)):
                    return StepStatus.SKIPPED, f"when: {node.step.when} is false"
            except ExpressionError as exc:
                return StepStatus.FAILED, f"when: {exc}"
        return None

    def scope(self, refs: frozenset[str] | None,
              selectors: frozenset[aggregate.Selector]) -> dict[str, Any]:
        """What expressions see of this run (engine/scope.py)."""
        return expression_scope(self.definition, self.run_id, self.params, self.views,
                                refs, selectors)

    async def _end_without_running(self, node_id: str, status: str, reason: str) -> None:
        await self.store.step_finished(self.run_id, node_id, status, attempt=None,
                                       error=reason if status != StepStatus.SKIPPED else None)
        self._ended(node_id, status, None, reason)
        self.log.info("step %s %s: %s", node_id, status.replace("_", " "), reason,
                      extra={"fields": {**self.log.fields, "STEP_ID": node_id}})

    async def _record_cancelled(self, node_id: str) -> None:
        attempt = self.current_attempt.get(node_id)
        timed_out = self.stop_reason == RunStatus.TIMED_OUT
        reason = "workflow timeout expired" if timed_out else "cancelled"
        if attempt is not None:
            await self.store.attempt_failed(self.run_id, node_id, attempt,
                                            status=AttemptStatus.CANCELLED,
                                            error=reason, exit_code=None, stderr_tail="")
        await self.store.step_finished(self.run_id, node_id, StepStatus.CANCELLED, attempt=attempt,
                                       error=reason)
        self._ended(node_id, StepStatus.CANCELLED, None, reason)

    def _ended(self, node_id: str, status: str, result: Any, error: str | None) -> None:
        self._mark(node_id, status, result, error)
        self._announce(node_id, status, error, self.ended + 1)

    def _mark(self, node_id: str, status: str, result: Any, error: str | None) -> None:
        self.status[node_id] = status
        row = self.rows[node_id]
        self.views[node_id] = step_view(status, result, error,
                                    self.current_attempt.get(node_id, row.attempts), None)

    def _announce(self, node_id: str, status: str, error: str | None, ended: int) -> None:
        step = self.graph.nodes[node_id].step
        self.engine.emit({"type": EventKind.step_ended(status), "run_id": self.run_id,
                           "workflow": self.definition.name, "step_id": node_id,
                           "skill": step.skill, "action": step.action,
                           "attempt": self.current_attempt.get(node_id),
                           "status": status, "error": error,
                           "ended": ended, "total": len(self.graph.nodes)})

    # -- one step -----------------------------------------------------------------------

    async def _run_step(self, node_id: str) -> tuple[asyncio.Future, dict[str, Any]] | None:
        """Run a step; if it succeeds, (its outcome's commit, its log fields) for the
        scheduler to wait on (_commit_successes); None if it ended otherwise."""
        node = self.graph.nodes[node_id]
        step = node.step
        skill = self.definition.skill(node.skill)
        action = skill.actions[node.action]
        policy = step.retry or action.retry or retry.NO_RETRY
        timeout = step.timeout or action.timeout or self.engine.step_timeout
        started = time.monotonic()
        try:
            params = await attempts.render(self, step.params, action)
            shown = attempts.shown_params(self, step.params, params, action)
        except StepFailure as exc:
            await self.store.step_finished(self.run_id, node_id, StepStatus.FAILED, attempt=None,
                                           error=str(exc))
            self._finish_failed(node_id, exc)
            return None
        row = self.rows[node_id]
        self.current_attempt[node_id] = row.attempts
        limit = self.engine.skill_limit(skill.name, skill.concurrency)
        fields = {**self.log.fields, "STEP_ID": node_id, "SKILL": skill.name,
                  "ACTION": step.action}

        async def before_sleep(state: tenacity.RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0
            await self.store.retry_scheduled(self.run_id, node_id, self.current_attempt[node_id],
                                             delay)
            log.warning("step %s: retrying in %.1f s", node_id, delay, extra={"fields": fields})

        if row.not_before is not None and (left := row.not_before - time.time()) > 0:
            # A retry back-off its last driver did not live to finish: wait out the rest.
            log.info("step %s: retrying in %.1f s", node_id, left, extra={"fields": fields})
            await self.engine.sleep(left)
        try:
            async for attempt in retry.retrying(policy, failed_before=row.failed_attempts,
                                                sleep=self.engine.sleep, before_sleep=before_sleep):
                with attempt:
                    result = await attempts.run(self, node_id, skill, action, params, shown,
                                                timeout, limit, fields)
        except StepFailure as exc:
            # A failure's result (the checks a health check ran) is its diagnosis: kept.
            await self.store.step_finished(self.run_id, node_id, StepStatus.FAILED,
                                           attempt=self.current_attempt[node_id], error=str(exc),
                                           result=exc.result,
                                           shown=attempts.shown(self, exc.result))
            self._finish_failed(node_id, exc)
            return None
        # A value masked in the result by its key (token) is hunted wherever it goes next.
        self.engine.secrets.add(self.run_id, redact.secret_values(result))
        committed = self.store.step_finished_later(self.run_id, node_id, StepStatus.SUCCEEDED,
                                                   attempt=self.current_attempt[node_id],
                                                   result=result,
                                                   shown=attempts.shown(self, result))
        self._mark(node_id, StepStatus.SUCCEEDED, result, None)
        self.views[node_id]["duration"] = time.monotonic() - started
        return committed, {**fields, "ATTEMPT": self.current_attempt[node_id]}

    def _finish_failed(self, node_id: str, exc: StepFailure) -> None:
        if self.graph.nodes[node_id].step.continue_on_error:
            self.tolerated.add(node_id)
        self._ended(node_id, StepStatus.FAILED, exc.result, str(exc))

