"""Retry policies as tenacity strategies.

`attempts` counts the first try. Delays before retry n (n = 1, 2, ...): fixed `initial`;
linear `initial * n`; exponential `initial * factor ** (n - 1)`; each capped at
`max_delay`, plus up to `jitter` random seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import tenacity

from ..core.errors import StepFailure
from ..language.model import RetryPolicy

NO_RETRY = RetryPolicy()  # one attempt: what a step or action without a policy gets


def wait_strategy(policy: RetryPolicy) -> tenacity.wait.wait_base:
    if policy.backoff == "fixed":
        wait: tenacity.wait.wait_base = tenacity.wait_fixed(min(policy.initial, policy.max_delay))
    elif policy.backoff == "linear":
        wait = tenacity.wait_incrementing(start=policy.initial, increment=policy.initial,
                                          max=policy.max_delay)
    else:
        wait = tenacity.wait_exponential(multiplier=policy.initial, exp_base=policy.factor,
                                         min=0, max=policy.max_delay)
    return wait + tenacity.wait_random(0, policy.jitter) if policy.jitter else wait


async def _once() -> AsyncIterator[contextlib.AbstractContextManager[None]]:
    yield contextlib.nullcontext()


def retrying(policy: RetryPolicy, *, failed_before: int,
             sleep: Callable[[float], Awaitable[Any]],
             before_sleep: Callable[[tenacity.RetryCallState], Awaitable[None]]
             ) -> AsyncIterator[contextlib.AbstractContextManager[None]]:
    """Attempts (`async for attempt in ...: with attempt: ...`) that continue a step's
    budget after `failed_before` failures.

    Only StepFailures whose reason the policy lists are retried; the last failure is
    re-raised as it is. The attempt counter starts after earlier failures, so the delays
    of a resumed step continue the same curve. With one attempt left there is nothing
    to retry, and most steps have no retry policy: they get that one attempt without
    building tenacity's state machine (a measurable share of a no-op step's cost).
    """
    if policy.attempts - failed_before <= 1:
        return _once()
    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, StepFailure) and (
            exc.reason in policy.retry_on or "failed" in policy.retry_on)

    wait = wait_strategy(policy)

    def offset_wait(state: tenacity.RetryCallState) -> float:
        state_copy = tenacity.RetryCallState(state.retry_object, state.fn, state.args, state.kwargs)
        state_copy.attempt_number = state.attempt_number + failed_before
        return wait(state_copy)

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts - failed_before)),
        wait=offset_wait,
        retry=tenacity.retry_if_exception(retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
