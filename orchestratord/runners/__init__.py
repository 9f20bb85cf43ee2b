"""How an action runs: a command, an HTTP call or a Python callable."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import aiohttp

from ..context import StepContext
from ..model import ActionSpec
from .unit import StepUnits


async def run_action(action: ActionSpec, params: Any, ctx: StepContext, *,
                     http_session: Callable[[], Awaitable[aiohttp.ClientSession]],
                     kill_grace: float = 5.0, units: StepUnits | None = None,
                     timeout: float | None = None) -> Any:
    """Run one attempt of an action; returns its JSON result or raises StepFailure.

    With `units`, a command runs as its own transient systemd unit where it can (unit.py).
    """
    if action.command is not None:
        if units is not None and await units.applies(action, ctx):
            return await units.run(action, params, ctx, timeout=timeout)
        from .command import run_command
        return await run_command(action.command, params, ctx, env=action.env,
                                 cwd=ctx.skill_dir, kill_grace=kill_grace)
    if action.http is not None:
        from .http import run_http
        return await run_http(action.http.url, params, ctx, session=await http_session(),
                              method=action.http.method, headers=action.http.headers)
    from .python import run_python
    return await run_python(action.python, params, ctx)
