"""The python runner: `module:function` called as fn(params, ctx), async or not."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

from ...core.errors import StepFailure
from ...language.targets import resolve
from ..context import StepContext


async def run_python(target: str | Callable[..., Any], params: Any, ctx: StepContext) -> Any:
    """Call the target once; returns its JSON-serialisable result or raises StepFailure."""
    try:
        fn = resolve(target) if isinstance(target, str) else target
    except ValueError as exc:
        raise StepFailure(str(exc)) from None
    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(params, ctx)
        else:
            # A plain function may block: keep it off the event loop.
            result = await asyncio.to_thread(fn, params, ctx)
    except StepFailure:
        raise
    except Exception as exc:
        ctx.log.debug("%s raised", getattr(fn, "__qualname__", fn), exc_info=True)
        raise StepFailure(f"{type(exc).__name__}: {exc}") from None
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise StepFailure(f"the result is not JSON: {exc}") from None
    return result
