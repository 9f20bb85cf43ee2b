"""How an action runs: a command, an HTTP call or a Python callable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ...language.model import ActionSpec
from ..context import StepContext
from .unit import StepUnits


async def run_action(action: ActionSpec, params: Any, ctx: StepContext, *,
                     http_session: Callable[[], Awaitable[aiohttp.ClientSession]],
                     kill_grace: float = 5.0, units: StepUnits | None = None,
                     timeout: float | None = None) -> Any:
    """Run one attempt of an action; returns its JSON result or raises StepFailure.

    With `units`, a command runs as its own transient systemd unit where it can (unit.py).
    """
    if action.command is not None:
        from ...core.errors import StepFailure
        from ...language.targets import command_path
        from .command import run_command
        try:  # checked at load time too; again here, as the skill's files may have changed
            program = command_path(action.command[0], ctx.skill_dir)
        except ValueError as exc:
            raise StepFailure(f"command {exc}") from None
        argv = [program, *action.command[1:]]
        if units is not None and await units.applies(action, ctx):
            return await units.run(action.model_copy(update={"command": argv}), params, ctx,
                                   timeout=timeout)
        return await run_command(argv, params, ctx, env=action.env,
                                 cwd=ctx.skill_dir, kill_grace=kill_grace)
    if action.http is not None:
        from .http import run_http
        return await run_http(action.http.url, params, ctx, session=await http_session(),
                              method=action.http.method, headers=action.http.headers)
    from .python import run_python
    assert action.python is not None, "an action is exactly one of the three (ActionSpec)"
    return await run_python(action.python, params, ctx)
