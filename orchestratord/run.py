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
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema
import tenacity

from . import aggregate, expr, redact, retry
from .context import StepContext, step_logger
from .errors import ExpressionError, StepFailure, StepTimeout
from .loader import Definition
from .model import ActionSpec, RetryPolicy, RollbackSpec
from .runners import run_action
from .store import StepRow

if TYPE_CHECKING:
    from .engine import Engine

# The engine's logger: its records are the engine's, and its secret filter is on it.
log = logging.getLogger("orchestratord.engine")

# journald MESSAGE_IDs of run lifecycle records (stable; generated once with uuid4).
MESSAGE_IDS = {
    "run_started": "5b2f4cbb7f0a4d0f9a3c1e7d2e6a9b01",
    "run_succeeded": "0d8c6f3a1b2e4c5d8e9f7a6b5c4d3e02",
    "run_failed": "e1f2a3b4c5d64e7f8a9b0c1d2e3f4a03",
}

DONE = frozenset({"succeeded", "failed", "skipped", "upstream_failed", "cancelled"})
FAILED = frozenset({"failed", "upstream_failed", "cancelled"})
NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    outputs: Any = None
    error: str | None = None


class RunDriver:
    """Drives one run: the scheduling loop, steps, compensation, lease."""

    def __init__(self, engine: Engine, run_id: str, definition: Definition,
                 params: dict[str, Any], rows: list[StepRow]):
        self.engine, self.store = engine, engine.store
        self.run_id, self.definition, self.graph = run_id, definition, definition.graph
        self.params = params
        self.rows = {r.step_id: r for r in rows}
        self.status = {r.step_id: r.status for r in rows}
        self.views = {r.step_id: _view(r.status, r.result, r.error, r.attempts, r.duration)
                      for r in rows}
        self.tolerated = {sid for sid, r in self.rows.items()
                          if r.status == "failed" and self.graph.nodes[sid].step.continue_on_error}
        self.current_attempt: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.ended = sum(1 for s in self.status.values() if s in DONE)
        self._tasks: dict[asyncio.Task, str] = {}
        self.log = step_logger("orchestratord.engine", WORKFLOW=definition.name, RUN_ID=run_id)

    # -- the run ------------------------------------------------------------------------

    async def drive(self, resumed: bool) -> RunResult:
        engine, workflow = self.engine, self.definition.workflow
        await self.store.acquire_lease(self.run_id, engine.owner, engine.lease_ttl)
        engine.secrets.add(self.run_id, redact.workflow_param_secrets(self.params, workflow.params))
        keeper = asyncio.create_task(self._keep_lease())
        timer = (asyncio.get_running_loop().call_later(workflow.timeout, self.stop, "timed_out")
                 if workflow.timeout else None)
        try:
            await self._set("running", "run_resumed" if resumed else "run_started")
            self._log(logging.INFO, "run_started", "run %s of %s %s", self.run_id,
                      workflow.name, "resumed" if resumed else "started")
            await self._schedule()
            if self.stop_reason == "lease_lost":
                return RunResult(self.run_id, "interrupted", error="lost the run's lease")
            status, error, outputs = self._outcome()
            if status == "succeeded":
                try:
                    compiled = expr.compile_value(workflow.outputs)
                    outputs = await engine.evaluator.render(
                        compiled, self._scope(None, compiled.selectors))
                except ExpressionError as exc:
                    status, error = "failed", f"outputs: {exc}"
            if status != "succeeded" and workflow.on_failure == "rollback":
                status = await self._compensate()
            await self._set(status, f"run_{status}", error=error, outputs=outputs)
            level = logging.INFO if status == "succeeded" else logging.ERROR
            self._log(level, "run_succeeded" if status == "succeeded" else "run_failed",
                      "run %s of %s %s%s", self.run_id, workflow.name, status.replace("_", " "),
                      f": {error}" if error else "")
            return RunResult(self.run_id, status, outputs, error)
        except asyncio.CancelledError:
            # Our host stops (daemon shutdown, Ctrl-C): leave the run resumable.
            await asyncio.shield(self._set("interrupted", "run_interrupted"))
            self.log.warning("run %s interrupted; resume it with `orchestratorctl resume %s`",
                             self.run_id, self.run_id)
            raise
        finally:
            if timer:
                timer.cancel()
            keeper.cancel()
            await asyncio.shield(self.store.release_lease(self.run_id, engine.owner))
            engine.secrets.discard(self.run_id)

    def stop(self, reason: str) -> None:
        """Stop launching steps and cancel the running ones (cancelled, timed_out)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            for task in self._tasks:
                task.cancel()

    def _outcome(self) -> tuple[str, str | None, Any]:
        if self.stop_reason == "timed_out":
            return "timed_out", f"workflow timeout of {self.definition.workflow.timeout:g} s expired", None
        if self.stop_reason == "cancelled":
            return "cancelled", "cancelled on request", None
        failed = [s for s, st in self.status.items() if st == "failed" and s not in self.tolerated]
        if failed:
            return "failed", "failed steps: " + ", ".join(failed), None
        return "succeeded", None, None

    async def _set(self, status: str, event: str, **kw: Any) -> None:
        await self.store.set_run_status(self.run_id, status, event,
                                        data={"workflow": self.definition.name}, **kw)
        self.engine.emit({"type": event, "run_id": self.run_id,
                           "workflow": self.definition.name, "status": status,
                           "error": kw.get("error"), "stop_reason": self.stop_reason})

    def _log(self, level: int, message_id: str, msg: str, *args: Any) -> None:
        self.log.logger.log(level, msg, *args, extra={"fields": {
            **self.log.extra["fields"], "MESSAGE_ID": MESSAGE_IDS[message_id]}})

    async def _keep_lease(self) -> None:
        engine, renewed = self.engine, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            if await self.store.cancel_requested(self.run_id):
                self.stop("cancelled")
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
            if self.status[node.id] in DONE:
                continue
            left = sum(1 for d in node.deps if self.status[d] not in DONE)
            if left:
                waiting[node.id] = left
            else:
                ready.append(node.id)
        tasks = self._tasks
        # Finished tasks arrive on a queue: asyncio.wait() over every running task would
        # cost O(running) per completion, quadratic for a wide fan-out.
        finished: asyncio.Queue[asyncio.Task] = asyncio.Queue()
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
                if not tasks:
                    return
                done = [await finished.get()]
                while not finished.empty():
                    done.append(finished.get_nowait())
                for task in done:
                    node_id = tasks.pop(task)
                    if task.cancelled():
                        await self._record_cancelled(node_id)
                    else:
                        task.result()  # an engine bug must surface, not vanish
                    self._release(node_id, waiting, ready)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

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
        deps = {d: self.status[d] for d in node.deps}
        failed = [d for d, s in deps.items() if s in FAILED and d not in self.tolerated]
        skipped = [d for d, s in deps.items() if s == "skipped"]
        rule = node.step.trigger_rule
        if rule in ("all_success", "none_failed") and failed:
            return "upstream_failed", f"dependency failed: {', '.join(failed)}"
        if rule == "all_success" and skipped:
            return "skipped", f"dependency skipped: {', '.join(skipped)}"
        if rule == "one_failed" and not failed:
            return "skipped", "no dependency failed (trigger_rule one_failed)"
        if node.step.when is not None:
            try:
                compiled = expr.Expression.compile(node.step.when)
                if not await self.engine.evaluator.truthy(
                        compiled, self._scope(compiled.step_refs, compiled.selectors)):
                    return "skipped", f"when: {node.step.when} is false"
            except ExpressionError as exc:
                return "failed", f"when: {exc}"
        return None

    def _scope(self, refs: frozenset[str] | None,
               selectors: frozenset[aggregate.Selector] = frozenset()) -> dict[str, Any]:
        """What expressions see: params, the referenced steps (all if None), run; and
        the steps each aggregate selects (read by `aggregate`, not by name)."""
        chosen = {s.key: self.definition.select(s) for s in selectors}
        names = self.views.keys() | self.graph.groups.keys() if refs is None else refs
        names = names | {sid for ids in chosen.values() for sid in ids}
        steps = {}
        for name in names:
            members = self.graph.groups.get(name)
            steps[name] = _group_view({m: self.views[m] for m in members}) if members \
                else self.views[name]
        return {"params": self.params, "steps": steps,
                "run": {"id": self.run_id, "workflow": self.definition.name},
                aggregate.SELECTIONS_KEY: chosen}

    async def _end_without_running(self, node_id: str, status: str, reason: str) -> None:
        await self.store.step_finished(self.run_id, node_id, status, attempt=None,
                                       error=reason if status != "skipped" else None)
        self._ended(node_id, status, None, reason)
        self.log.info("step %s %s: %s", node_id, status.replace("_", " "), reason,
                      extra={"fields": {**self.log.extra["fields"], "STEP_ID": node_id}})

    async def _record_cancelled(self, node_id: str) -> None:
        attempt = self.current_attempt.get(node_id)
        reason = "workflow timeout expired" if self.stop_reason == "timed_out" else "cancelled"
        if attempt is not None:
            await self.store.attempt_failed(self.run_id, node_id, attempt, status="cancelled",
                                            error=reason, exit_code=None, stderr_tail="")
        await self.store.step_finished(self.run_id, node_id, "cancelled", attempt=attempt,
                                       error=reason)
        self._ended(node_id, "cancelled", None, reason)

    def _ended(self, node_id: str, status: str, result: Any, error: str | None) -> None:
        self.status[node_id] = status
        row = self.rows[node_id]
        self.views[node_id] = _view(status, result, error, self.current_attempt.get(node_id, row.attempts),
                                    None)
        step = self.graph.nodes[node_id].step
        self.engine.emit({"type": f"step_{status}", "run_id": self.run_id,
                           "workflow": self.definition.name, "step_id": node_id,
                           "skill": step.skill, "action": step.action,
                           "attempt": self.current_attempt.get(node_id),
                           "status": status, "error": error,
                           "ended": self.ended + 1, "total": len(self.graph.nodes)})

    # -- one step -----------------------------------------------------------------------

    async def _run_step(self, node_id: str) -> None:
        node = self.graph.nodes[node_id]
        step = node.step
        skill = self.definition.skill(step.skill)
        action = skill.actions[step.action]
        policy = step.retry or action.retry or NO_RETRY
        timeout = step.timeout or action.timeout or self.engine.step_timeout
        started = time.monotonic()
        try:
            params = await self._render(step.params, action)
        except StepFailure as exc:
            await self.store.step_finished(self.run_id, node_id, "failed", attempt=None,
                                           error=str(exc))
            return self._finish_failed(node_id, exc)
        row = self.rows[node_id]
        self.current_attempt[node_id] = row.attempts
        limit = self.engine.skill_limit(skill.name, skill.concurrency)
        fields = {**self.log.extra["fields"], "STEP_ID": node_id, "SKILL": skill.name,
                  "ACTION": step.action}

        async def before_sleep(state: tenacity.RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0
            await self.store.record_event(self.run_id, "step_retry", step_id=node_id,
                                          attempt=self.current_attempt[node_id],
                                          data={"delay": round(delay, 3)})
            log.warning("step %s: retrying in %.1f s", node_id, delay, extra={"fields": fields})

        try:
            async for attempt in retry.retrying(policy, failed_before=row.failed_attempts,
                                                sleep=self.engine.sleep, before_sleep=before_sleep):
                with attempt:
                    result = await self._attempt(node_id, skill, action, params, timeout,
                                                 limit, fields)
        except StepFailure as exc:
            # A failure's result (the checks a health check ran) is its diagnosis: kept.
            await self.store.step_finished(self.run_id, node_id, "failed",
                                           attempt=self.current_attempt[node_id], error=str(exc),
                                           result=exc.result)
            return self._finish_failed(node_id, exc)
        await self.store.step_finished(self.run_id, node_id, "succeeded",
                                       attempt=self.current_attempt[node_id], result=result)
        self._ended(node_id, "succeeded", result, None)
        self.views[node_id]["duration"] = time.monotonic() - started
        log.info("step %s succeeded", node_id, extra={"fields": fields})

    def _finish_failed(self, node_id: str, exc: StepFailure) -> None:
        if self.graph.nodes[node_id].step.continue_on_error:
            self.tolerated.add(node_id)
        self._ended(node_id, "failed", exc.result, str(exc))

    async def _attempt(self, node_id: str, skill: Any, action: ActionSpec, params: Any,
                       timeout: float | None, limit: asyncio.Semaphore | None,
                       fields: dict[str, Any], kind: str = "action") -> Any:
        async with limit or contextlib.nullcontext():
            return await self._attempt_now(node_id, skill, action, params, timeout, fields, kind)

    async def _attempt_now(self, node_id: str, skill: Any, action: ActionSpec, params: Any,
                           timeout: float | None, fields: dict[str, Any], kind: str) -> Any:
        number = self.current_attempt[node_id] = self.current_attempt[node_id] + 1
        await self.store.attempt_started(self.run_id, node_id, number,
                                         self._redacted(params, action), kind=kind)
        self.engine.emit({"type": "step_started" if kind == "action" else "compensation_started",
                           "run_id": self.run_id, "workflow": self.definition.name,
                           "step_id": node_id, "attempt": number,
                           "skill": fields["SKILL"], "action": fields["ACTION"]})
        ctx = StepContext(
            run_id=self.run_id, workflow=self.definition.name, step_id=node_id,
            skill=skill.name, action=self.graph.nodes[node_id].step.action if kind == "action"
            else fields["ACTION"], attempt=number,
            idempotency_key=f"{self.run_id}/{node_id}" + ("/rollback" if kind != "action" else ""),
            log=step_logger("orchestratord.step", **fields, ATTEMPT=number),
            skill_dir=skill.directory, settings=self.engine.settings, run_view=self._run_view)
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await run_action(action, params, ctx,
                                            http_session=self.engine.http_session,
                                            kill_grace=self.engine.kill_grace)
            except TimeoutError:
                raise StepTimeout(f"timed out after {timeout:g} s") from None
            except (StepFailure, asyncio.CancelledError):
                raise
            except Exception as exc:  # a runner bug fails this step, not the whole run
                log.exception("step %s: unexpected error in the %s runner", node_id, action.kind,
                              extra={"fields": fields})
                raise StepFailure(f"internal error: {type(exc).__name__}: {exc}") from exc
        except StepFailure as exc:
            self._scrub_failure(exc)
            status = "timeout" if isinstance(exc, StepTimeout) else "failed"
            await self.store.attempt_failed(self.run_id, node_id, number, status=status,
                                            error=str(exc), exit_code=exc.exit_code,
                                            stderr_tail=exc.stderr_tail, kind=kind)
            log.warning("attempt %d of step %s failed: %s", number, node_id, exc,
                        extra={"fields": {**fields, "ATTEMPT": number}})
            raise

    async def _run_view(self) -> dict[str, Any]:
        """The run as stored so far, for skills that report on it (secrets redacted)."""
        run = await self.store.get_run(self.run_id)
        run, steps, _ = redact.RunRedactor.for_run(run).rows(run, await self.store.steps(run.id))
        return {"run": run, "steps": steps}

    async def _render(self, params: dict[str, Any], action: ActionSpec) -> Any:
        try:
            compiled = expr.compile_value(params)
            rendered = params if compiled.is_static else await self.engine.evaluator.render(
                compiled, self._scope(compiled.step_refs, compiled.selectors))
        except ExpressionError as exc:
            raise StepFailure(self.engine.secrets.scrub(self.run_id, f"params: {exc}")) from None
        self.engine.secrets.add(self.run_id, redact.secret_values(rendered, action.params))
        if action.params is not None:
            error = jsonschema.exceptions.best_match(
                jsonschema.validators.validator_for(action.params)(action.params).iter_errors(rendered))
            if error is not None:
                where = "".join(f"[{p!r}]" for p in error.absolute_path)
                raise StepFailure(self.engine.secrets.scrub(self.run_id,
                                                            f"params{where}: {error.message}"))
        return rendered

    def _redacted(self, params: Any, action: ActionSpec) -> Any:
        """Params as recorded: secret values masked, known secrets scrubbed from the rest."""
        return self.engine.secrets.scrub(self.run_id, redact.redact(params, action.params))

    def _scrub_failure(self, exc: StepFailure) -> None:
        """Scrub a failure's message, stderr tail and result of this run's secrets."""
        scrub = functools.partial(self.engine.secrets.scrub, self.run_id)
        exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
        exc.stderr_tail, exc.result = scrub(exc.stderr_tail), scrub(exc.result)

    # -- rollback -----------------------------------------------------------------------

    async def _compensate(self) -> str:
        rows = sorted((r for r in await self.store.steps(self.run_id)
                       if r.status == "succeeded" and r.finished_seq is not None),
                      key=lambda r: r.finished_seq, reverse=True)
        await self.store.record_event(self.run_id, "run_rolling_back",
                                      data={"steps": [r.step_id for r in rows]})
        failed = []
        for row in rows:
            node = self.graph.nodes[row.step_id]
            own = self.definition.skill(node.step.skill).actions[node.step.action]
            spec: RollbackSpec | None = node.step.rollback or own.rollback
            if spec is None:
                continue
            skill = self.definition.skill(spec.skill or node.step.skill)
            action = skill.actions[spec.action]
            fields = {**self.log.extra["fields"], "STEP_ID": row.step_id, "SKILL": skill.name,
                      "ACTION": spec.action}
            self.current_attempt[row.step_id] = 0
            try:
                # The stored params are redacted: render the step's own params again.
                params = await self._render(node.step.params, own) if spec.params is None \
                    else await self._render(spec.params, action)
                policy = action.retry or NO_RETRY
                async for attempt in retry.retrying(policy, failed_before=0, sleep=self.engine.sleep,
                                                    before_sleep=_nothing):
                    with attempt:
                        await self._attempt(row.step_id, skill, action, params,
                                            action.timeout or self.engine.step_timeout, None,
                                            fields, kind="rollback")
            except StepFailure as exc:
                failed.append(row.step_id)
                await self.store.compensation_finished(self.run_id, row.step_id,
                                                       self.current_attempt[row.step_id], False,
                                                       str(exc))
                log.error("rollback of step %s failed: %s", row.step_id, exc, extra={"fields": fields})
                continue
            await self.store.compensation_finished(self.run_id, row.step_id,
                                                   self.current_attempt[row.step_id], True)
            log.info("rolled back step %s with %s", row.step_id, spec.action, extra={"fields": fields})
        return "rollback_failed" if failed else "rolled_back"


async def _nothing(_: Any) -> None:
    return None


def _view(status: str, result: Any, error: str | None, attempts: int,
          duration: float | None) -> dict[str, Any]:
    return {"status": status, "result": result, "error": error, "attempts": attempts,
            "duration": duration}


def _group_view(members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A parallel group as expressions see it: its members' results side by side."""
    statuses = {v["status"] for v in members.values()}
    status = ("succeeded" if statuses == {"succeeded"} else
              "failed" if statuses & FAILED else
              "skipped" if statuses == {"skipped"} else "mixed")
    return {"status": status, "result": {k: v["result"] for k, v in members.items()},
            "steps": members}
