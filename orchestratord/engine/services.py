"""What a run's driver needs from the engine, and what the steps' helpers (attempts,
compensation) need from the driver: two small protocols, so that the engine imports the
driver and the driver imports its helpers, never the other way round."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

    from ..core.redact import SecretRegistry
    from ..language import aggregate
    from ..language.evaluator import Evaluator
    from ..language.graph import Graph
    from ..language.loader import Definition
    from ..store.sqlite import Store
    from .context import StepLogger
    from .runners.unit import StepUnits


class EngineServices(Protocol):
    """The engine as one run's driver sees it: limits, shared clients, the event sink."""

    store: Store
    owner: str
    lease_ttl: float
    settings: dict[str, Any]
    kill_grace: float
    step_timeout: float | None
    step_units: StepUnits | None
    sleep: Callable[[float], Any]
    secrets: SecretRegistry
    evaluator: Evaluator

    async def http_session(self) -> aiohttp.ClientSession: ...

    def skill_limit(self, name: str, limit: int | None) -> asyncio.Semaphore | None: ...

    def emit(self, event: dict[str, Any]) -> None: ...


class RunView(Protocol):
    """One run as its attempts and compensations see it (engine/driver.py's RunDriver)."""

    engine: EngineServices
    store: Store
    run_id: str
    definition: Definition
    graph: Graph
    current_attempt: dict[str, int]
    log: StepLogger

    def scope(self, refs: frozenset[str] | None,
              selectors: frozenset[aggregate.Selector]) -> dict[str, Any]: ...
