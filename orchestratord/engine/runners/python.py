"""The python runner: `module:function` called as fn(params, ctx), async or not."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
from typing import Any, Callable

from ..context import StepContext
from ...core.errors import StepFailure


@functools.cache
def resolve(target: str) -> Callable[..., Any]:
    """The callable a "package.module:function" target names; ValueError says why not."""
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"expected 'module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary code: report whatever it raised
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"module {module_name!r} has no callable {name!r}")
    return fn


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
