"""The daemon as its HTTP routes see it: a small protocol, so that the API (api.py,
aidb_execute.py) serves the daemon without importing the service that builds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..integrations.aidb.service import AidbService
    from ..language.catalog import Catalog
    from ..language.settings import Settings
    from ..observability.metrics import Metrics
    from ..store.sqlite import Store
    from .connections import Guard


class DaemonServices(Protocol):
    """What the control API reads and asks of the running daemon (service.Daemon)."""

    settings: Settings
    catalog: Catalog
    store: Store
    engine: Engine
    connections: Guard
    metrics: Metrics
    metrics_address: str | None
    aidb: AidbService | None
    api_address: str | None

    async def reload(self) -> Catalog: ...

    async def start_run(self, workflow: str, params: dict[str, Any]) -> str: ...

    async def start_definition(self, definition: Any,
                               params: dict[str, Any] | None = None) -> str: ...

    async def resume_run(self, run_id: str) -> str: ...

    async def cancel_run(self, run_id: str) -> str: ...

    async def changed(self, timeout: float) -> None: ...
