"""The no-op python actions the engine benchmarks run (targets `bench.noop:NAME`)."""

from __future__ import annotations

from typing import Any


async def noop(params: Any, ctx: Any) -> None:
    """Awaited on the event loop: the cost measured is the orchestrator's alone."""
    return None


def noop_sync(params: Any, ctx: Any) -> None:
    """A plain function: the python runner hands it to a thread (asyncio.to_thread)."""
    return None
