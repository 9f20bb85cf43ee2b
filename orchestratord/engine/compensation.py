"""Rollback: compensating a run's succeeded steps in reverse completion order, durably.

Before the first compensation runs, its plan is recorded (store.rollback_started): the
steps in the order they are compensated and the outcome being rolled back. From then on
the run only compensates. A driver that takes over an interrupted rollback (`resume`,
the daemon at start-up) continues the plan: a step recorded compensated, or failed to
compensate, is not compensated again; the compensation that was in flight runs again
with the same idempotency key (<run>/<step>/rollback) under the next attempt number; no
forward action runs again. The run ends rolled_back, or rollback_failed if any
compensation failed.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import StepFailure
from ..core.statuses import AttemptStatus, RunStatus, StepStatus
from ..language.model import RollbackSpec
from . import attempts, retry

if TYPE_CHECKING:
    from .services import RunView

log = logging.getLogger("orchestratord.engine")


@dataclass(frozen=True)
class Plan:
    steps: list[str]  # in the order they are compensated
    outcome: str  # what the run would have ended as: failed, cancelled, timed_out
    error: str | None


async def record_plan(driver: RunView, outcome: str, error: str | None) -> Plan:
    """Record that the run rolls back: its succeeded steps, latest completion first."""
    done = [(r.finished_seq, r.step_id) for r in await driver.store.steps(driver.run_id)
            if r.status == StepStatus.SUCCEEDED and r.finished_seq is not None]
    plan = Plan([step_id for _, step_id in sorted(done, reverse=True)], outcome, error)
    await driver.store.rollback_started(driver.run_id, plan.steps, outcome, error)
    return plan


async def recorded_plan(driver: RunView) -> Plan | None:
    """The plan of a rollback that began before, or None if the run never began one."""
    data = await driver.store.rollback_plan(driver.run_id)
    if data is None:
        return None
    # Recorded before the outcome was kept with the plan: it was a failure.
    return Plan(data["steps"], data.get("outcome", RunStatus.FAILED), data.get("error"))


async def compensate(driver: RunView, plan: Plan) -> str:
    """Run the plan's compensations not done yet; rolled_back or rollback_failed."""
    store, run_id = driver.store, driver.run_id
    status = {r.step_id: r.status for r in await store.steps(run_id)}
    numbered: dict[str, int] = collections.Counter()  # rollback attempts so far
    failures: dict[str, int] = collections.Counter()
    for a in await store.attempts(run_id):
        if a.kind == "rollback":
            numbered[a.step_id] = max(numbered[a.step_id], a.attempt)
            failures[a.step_id] += a.status in (AttemptStatus.FAILED, AttemptStatus.TIMEOUT)
    failed = [s for s in plan.steps if status[s] == StepStatus.COMPENSATION_FAILED]
    for step_id in plan.steps:
        if status[step_id] != StepStatus.SUCCEEDED:
            continue  # compensated (or failed to be) by an earlier driver
        node = driver.graph.nodes[step_id]
        own = driver.definition.skill(node.skill).actions[node.action]
        spec: RollbackSpec | None = node.step.rollback or own.rollback
        if spec is None:
            continue
        skill = driver.definition.skill(spec.skill or node.skill)
        action = skill.actions[spec.action]
        fields = {**driver.log.fields, "STEP_ID": step_id, "SKILL": skill.name,
                  "ACTION": spec.action}
        driver.current_attempt[step_id] = numbered[step_id]
        try:
            # The stored params are redacted: render the step's own params again.
            source, target = (node.step.params, own) if spec.params is None \
                else (spec.params, action)
            params = await attempts.render(driver, source, target)
            shown = attempts.shown_params(driver, source, params, target)
            async for attempt in retry.retrying(action.retry or retry.NO_RETRY,
                                                failed_before=failures[step_id],
                                                sleep=driver.engine.sleep, before_sleep=_nothing):
                with attempt:
                    await attempts.run(driver, step_id, skill, action, params, shown,
                                       action.timeout or driver.engine.step_timeout, None,
                                       fields, kind="rollback")
        except StepFailure as exc:
            failed.append(step_id)
            await store.compensation_finished(run_id, step_id, driver.current_attempt[step_id],
                                              False, str(exc))
            log.error("rollback of step %s failed: %s", step_id, exc, extra={"fields": fields})
            continue
        await store.compensation_finished(run_id, step_id, driver.current_attempt[step_id], True)
        log.info("rolled back step %s with %s", step_id, spec.action,
                 extra={"fields": {**fields, "ATTEMPT": driver.current_attempt[step_id]}})
    return RunStatus.ROLLBACK_FAILED if failed else RunStatus.ROLLED_BACK


async def _nothing(_: Any) -> None:
    return None
