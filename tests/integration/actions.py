"""Python actions used by engine tests (referenced as tests.integration.actions:NAME)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestratord.core.errors import StepFailure

LIVE = {"running": 0, "max": 0}


async def track(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Counts how many of these run at once; holds the slot for params.hold seconds."""
    LIVE["running"] += 1
    LIVE["max"] = max(LIVE["max"], LIVE["running"])
    try:
        await asyncio.sleep(params.get("hold", 0.02))
    finally:
        LIVE["running"] -= 1
    return {"step": ctx.step_id}


def noop(params: dict[str, Any], ctx: Any) -> None:
    return None


async def anoop(params: dict[str, Any], ctx: Any) -> None:
    return None


def echo(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"params": params, "attempt": ctx.attempt, "key": ctx.idempotency_key}


def fail(params: dict[str, Any], ctx: Any) -> None:
    raise StepFailure(params.get("message", "told to fail"), retryable=params.get("retryable", False),
                      result=params.get("result"))


async def committed_before_me(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The statuses of params.steps as another connection reads them from params.db."""
    import sqlite3
    with sqlite3.connect(params["db"]) as conn:
        rows = conn.execute("SELECT step_id, status FROM steps WHERE run_id = ?",
                            (ctx.run_id,)).fetchall()
    return {step: status for step, status in rows if step in params["steps"]}
