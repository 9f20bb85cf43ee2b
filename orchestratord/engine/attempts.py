"""One attempt of a step's action, or of its compensating action: recorded, run, scrubbed.

An attempt is recorded (its params as shown) before it runs and its failure after; a
command's process group is recorded as soon as it exists (see processes.py); what a
failure says is scrubbed of the run's secrets before anyone sees it. The attempt runs
with its StepContext: its idempotency key is <run>/<step> for an action and
<run>/<step>/rollback for a compensation, the same for every attempt and resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import jsonschema

from ..core import redact
from ..core.errors import ExpressionError, StepFailure, StepTimeout
from ..core.processes import process_identity
from ..core.statuses import AttemptStatus, EventKind
from ..language import expr
from ..language.model import ActionSpec
from .context import StepContext, step_logger
from .runners import run_action

if TYPE_CHECKING:
    from .services import RunView

# The engine's logger: its records are the engine's, and its secret filter is on it.
log = logging.getLogger("orchestratord.engine")


async def run(driver: RunView, node_id: str, skill: Any, action: ActionSpec, params: Any,
              shown: Any, timeout: float | None, limit: asyncio.Semaphore | None,
              fields: dict[str, Any], kind: str = "action") -> Any:
    """One recorded attempt of a step's action (kind "action") or of its compensating
    action ("rollback"), numbered after current_attempt[node_id]; shown is its params as
    recorded (`shown_params`)."""
    async with limit or contextlib.nullcontext():
        return await _attempt_now(driver, node_id, skill, action, params, shown, timeout,
                                  fields, kind)


async def _attempt_now(driver: RunView, node_id: str, skill: Any, action: ActionSpec,
                       params: Any, shown: Any, timeout: float | None, fields: dict[str, Any],
                       kind: str) -> Any:
    number = driver.current_attempt[node_id] = driver.current_attempt[node_id] + 1
    await driver.store.attempt_started(driver.run_id, node_id, number, shown, kind=kind)
    started = EventKind.STEP_STARTED if kind == "action" else EventKind.COMPENSATION_STARTED
    driver.engine.emit({"type": started,
                        "run_id": driver.run_id, "workflow": driver.definition.name,
                        "step_id": node_id, "attempt": number,
                        "skill": fields["SKILL"], "action": fields["ACTION"]})
    ctx = StepContext(
        run_id=driver.run_id, workflow=driver.definition.name, step_id=node_id,
        skill=skill.name, action=driver.graph.nodes[node_id].action if kind == "action"
        else fields["ACTION"], attempt=number,
        idempotency_key=f"{driver.run_id}/{node_id}" + ("/rollback" if kind != "action" else ""),
        log=step_logger("orchestratord.step", **fields, ATTEMPT=number),
        skill_dir=skill.directory, settings=driver.engine.settings,
        run_view=functools.partial(_run_view, driver),
        on_spawn=functools.partial(_spawned, driver, node_id, number, kind))
    try:
        try:
            async with asyncio.timeout(timeout):
                return await run_action(action, params, ctx,
                                        http_session=driver.engine.http_session,
                                        kill_grace=driver.engine.kill_grace,
                                        units=driver.engine.step_units, timeout=timeout)
        except TimeoutError:
            raise StepTimeout(f"timed out after {timeout:g} s") from None
        except (StepFailure, asyncio.CancelledError):
            raise
        except Exception as exc:  # a runner bug fails this step, not the whole run
            log.exception("step %s: unexpected error in the %s runner", node_id, action.kind,
                          extra={"fields": fields})
            raise StepFailure(f"internal error: {type(exc).__name__}: {exc}") from exc
    except StepFailure as exc:
        # A value masked in a failure's result by its key (token) is hunted everywhere else.
        driver.engine.secrets.add(driver.run_id, redact.secret_values(exc.result))
        _scrub_failure(driver, exc)
        status = AttemptStatus.TIMEOUT if isinstance(exc, StepTimeout) else AttemptStatus.FAILED
        await driver.store.attempt_failed(driver.run_id, node_id, number, status=status,
                                          error=str(exc), exit_code=exc.exit_code,
                                          stderr_tail=exc.stderr_tail, kind=kind)
        log.warning("attempt %d of step %s failed: %s", number, node_id, exc,
                    extra={"fields": {**fields, "ATTEMPT": number}})
        raise


async def _spawned(driver: RunView, node_id: str, number: int, kind: str, pid: int) -> None:
    await driver.store.attempt_process(driver.run_id, node_id, number, kind, process_identity(pid))


async def _run_view(driver: RunView) -> dict[str, Any]:
    """The run as stored so far, for skills that report on it (secrets redacted): the
    rows report.report_model builds a report of."""
    store = driver.store
    run = await store.get_run(driver.run_id)
    run, steps, attempts = redact.RunRedactor.for_run(run).rows(
        run, await store.steps(run.id), await store.attempts(run.id))
    return {"run": run, "steps": steps, "attempts": attempts,
            "events": await store.events(run.id, limit=None)}


async def render(driver: RunView, params: dict[str, Any], action: ActionSpec) -> Any:
    """A step's params rendered against the run so far and checked against the
    action's params schema; raises StepFailure (secrets scrubbed) if they do not fit."""
    try:
        compiled = expr.compile_value(params)
        rendered = (params if compiled.is_static
                    else await driver.engine.evaluator.render(
                        compiled, driver.scope(compiled.step_refs, compiled.selectors)))
    except ExpressionError as exc:
        raise StepFailure(driver.engine.secrets.scrub(driver.run_id, f"params: {exc}")) from None
    driver.engine.secrets.add(driver.run_id, redact.secret_values(rendered, action.params))
    if action.params is not None:
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(action.params)(action.params).iter_errors(rendered))
        if error is not None:
            where = "".join(f"[{p!r}]" for p in error.absolute_path)
            raise StepFailure(driver.engine.secrets.scrub(driver.run_id,
                                                          f"params{where}: {error.message}"))
    return rendered


def shown_params(driver: RunView, source: Any, params: Any, action: ActionSpec) -> Any:
    """Params as recorded: secret values masked, known secrets scrubbed from the rest,
    and values templated from a secret param masked whole (a secret `true`). source is
    the params as written, params as `render` made them."""
    return redact.mask_templated(source, params, shown(driver, params, action.params),
                                 redact.secret_param_names(driver.definition.workflow.params))


def shown(driver: RunView, value: Any, schema: Any = None) -> Any:
    """A value as recorded for people: masked by schema and names, secrets scrubbed."""
    return driver.engine.secrets.scrub(driver.run_id, redact.redact(value, schema))


def _scrub_failure(driver: RunView, exc: StepFailure) -> None:
    """Scrub a failure's message, stderr tail and result of this run's secrets."""
    scrub = functools.partial(driver.engine.secrets.scrub, driver.run_id)
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    exc.stderr_tail, exc.result = scrub(exc.stderr_tail), scrub(exc.result)
