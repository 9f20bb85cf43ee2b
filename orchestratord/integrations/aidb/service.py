"""AIDB beside the daemon: catalog refresh, history sender, publishing, status.

The daemon owns one `AidbService`; it starts background tasks that never hold up a run
or the daemon's start (a slow or absent AIDB only delays what goes to it), and answers
`orchestratorctl aidb status` and `aidb sync`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ...core.statuses import event_subject
from ...language.aidb_settings import AidbSettings
from ...language.catalog import Catalog
from ...language.skill_registry import Registry
from .client import AidbClient, AidbError, AidbRejected, AidbUnauthorized, read_key
from .discovery import Joined, cached_catalog, join, save_catalog
from .outbox import Outbox, Sender
from .publish import publish_changed

log = logging.getLogger("orchestratord.aidb")


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry):
        p = "orchestrator_aidb_outbox"
        self.pending = Gauge(f"{p}_pending", "History records waiting to be sent to AIDB",
                             registry=registry)
        self.oldest = Gauge(f"{p}_oldest_pending_seconds",
                            "Age of the oldest history record waiting for AIDB", registry=registry)
        self.sent = Counter(f"{p}_sent", "History records AIDB accepted", registry=registry)
        self.failed = Counter(f"{p}_failed", "Failed deliveries of history records, by reason "
                              "(unavailable, unauthorized, rejected)", ["reason"],
                              registry=registry)


class AidbService:
    """What the daemon does with AIDB; inert (status only) when `aidb.url` is unset."""

    def __init__(self, settings: AidbSettings, database: Path, *,
                 registry: CollectorRegistry | None = None,
                 alert: Callable[[str, str, str], Any] | None = None,
                 retry_initial: float = 1.0, retry_max: float = 60.0):
        self.settings = settings
        self.alert = alert  # async (subject, kind, summary): an alert, claimed once
        self.outbox = Outbox(database)
        self.client: AidbClient | None = None
        self.sender: Sender | None = None
        self.metrics = OutboxMetrics(registry) if registry is not None else None
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.records: list[dict[str, Any]] = []     # the catalog as last fetched or cached
        self.fetched_at: float | None = None
        self.joined = Joined()
        self.last_refresh_error: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._refreshed: Callable[[], None] | None = None
        self._wake_refresh: asyncio.Event | None = None
        # One refresh at a time: `aidb sync` during the periodic one would otherwise
        # publish a changed skill twice (both read its old digest before either wrote).
        self._refreshing = asyncio.Lock()
        self.registry_of: Callable[[], Registry] | None = None  # what to publish from

    @property
    def origin(self) -> str:
        return f"aidb:{self.settings.url}"

    async def start(self, on_refresh: Callable[[], None]) -> None:
        """Open the outbox, load the cached catalog, start the background work."""
        s = self.settings
        await self.outbox.open()
        await self.outbox.set_recording(s.enabled and s.history)
        if s.url is None:  # not enabled
            return
        self.client = AidbClient(s.url, read_key(s.api_key_file), s.timeout)
        self.records, self.fetched_at = await cached_catalog(self.outbox.db)
        self._refreshed = on_refresh
        if s.history:
            self.sender = Sender(self.outbox, self.client, project=s.project,
                                 metrics=self.metrics, initial_delay=self.retry_initial,
                                 max_delay=self.retry_max, on_unauthorized=self._unauthorized)
            self._tasks.append(asyncio.create_task(self.sender.run_forever(), name="aidb-history"))
            self._tasks.append(asyncio.create_task(self._watch_undelivered(),
                                                   name="aidb-undelivered"))
        if s.discover or s.publish:
            self._tasks.append(asyncio.create_task(self._refresh_periodically(),
                                                   name="aidb-catalog"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.client is not None:
            await self.client.close()
        await self.outbox.close()

    # -- the catalog --------------------------------------------------------------------

    def apply(self, catalog: Catalog) -> None:
        """Put AIDB's skills (as last fetched) into catalog, local ones first."""
        local = Registry({n: s for n, s in catalog.skills.skills.items()
                          if not s.origin.startswith("aidb:")})
        self.joined = (join(local, self.records, self.origin)
                       if self.settings.enabled and self.settings.discover else Joined())
        catalog.skills = local

    async def refresh(self) -> None:
        """Fetch AIDB's catalog into the cache; publish ours if asked. Raises AidbError."""
        assert self.client is not None
        async with self._refreshing:
            if self.settings.discover:
                self.records = await self.client.skills()
                self.fetched_at = await save_catalog(self.outbox.db, self.records)
                self.last_refresh_error = None
                if self._refreshed is not None:
                    self._refreshed()
            if self.settings.publish and self.registry_of is not None:
                await publish_changed(self.outbox.db, self.client, self.registry_of())

    def refresh_soon(self) -> None:
        """After a reload: refresh now rather than at the next interval."""
        if self._wake_refresh is not None:
            self._wake_refresh.set()

    async def _refresh_periodically(self) -> None:
        self._wake_refresh = asyncio.Event()
        while True:
            try:
                await self.refresh()
            except AidbError as exc:
                self.last_refresh_error = str(exc)
                log.warning("AIDB catalog not refreshed (the cached one from %s stays in "
                            "use): %s", _when(self.fetched_at), exc)
                if isinstance(exc, AidbUnauthorized):
                    await self._unauthorized(str(exc))
            except Exception:
                log.exception("refreshing the AIDB catalog failed")
            try:
                await asyncio.wait_for(self._wake_refresh.wait(), self.settings.refresh_interval)
            except TimeoutError:
                pass
            self._wake_refresh.clear()

    # -- history ------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Engine listener: a step or run ended, so a record may be due; never blocks."""
        if self.sender is not None and event_subject(event.get("type", ""))[0] is not None:
            self.sender.wake()

    async def _unauthorized(self, error: str) -> None:
        if self.alert is not None:
            key = self.settings.api_key_file
            stamp = key.stat().st_mtime_ns if key is not None and key.exists() else 0
            await self.alert(f"aidb-key@{stamp}", "aidb_unauthorized",
                             f"AIDB refuses our API key: {error}")

    async def _watch_undelivered(self) -> None:
        limit = self.settings.undelivered_alert_after
        while True:
            await asyncio.sleep(max(0.5, min(60.0, limit / 4)))
            try:
                await self.outbox.prune()
                depth = await self.outbox.depth()
                if depth.oldest_at is not None and time.time() - depth.oldest_at > limit \
                        and self.alert is not None:
                    await self.alert(
                        f"aidb-outbox@{depth.oldest_id}", "aidb_undelivered",
                        f"{depth.pending} history records not delivered to AIDB "
                        f"({self.settings.url}); the oldest waits since "
                        f"{_when(depth.oldest_at)}; last error: "
                        f"{self.sender.last_error if self.sender else '-'}")
            except Exception:
                log.exception("checking the AIDB outbox failed")

    # -- orchestratorctl aidb -----------------------------------------------------------

    async def sync(self) -> dict[str, Any]:
        """Refresh the catalog and flush the outbox now; what happened, errors included."""
        out: dict[str, Any] = {"refreshed": False, "sent": 0, "errors": []}
        if self.client is None:
            out["errors"].append("aidb.url is not set")
            return out
        try:
            await self.refresh()
            out["refreshed"] = True
        except AidbError as exc:
            out["errors"].append(f"catalog: {exc}")
        if self.sender is not None:
            self.sender.failures = 0  # a person asked: try now, whatever the back-off
            out["sent"] = await self.sender.flush()
            if self.sender.last_error:
                out["errors"].append(f"history: {self.sender.last_error}")
        out["status"] = await self.status()
        return out

    async def status(self) -> dict[str, Any]:
        """Reachable, key accepted, catalog age, outbox depth, oldest pending record."""
        depth = await self.outbox.depth()
        out: dict[str, Any] = {
            "url": self.settings.url, "reachable": None, "key_accepted": None,
            "catalog_fetched_at": self.fetched_at,
            "catalog_age_seconds": None if self.fetched_at is None else
            round(time.time() - self.fetched_at, 1),
            "catalog_skills": len(self.records), "joined": self.joined.added,
            "shadowed": self.joined.shadowed, "skipped": self.joined.skipped,
            "last_refresh_error": self.last_refresh_error,
            "outbox_pending": depth.pending, "outbox_sent": depth.sent,
            "outbox_rejected": depth.rejected,
            "oldest_pending_at": depth.oldest_at,
            "oldest_pending_age_seconds": None if depth.oldest_at is None else
            round(time.time() - depth.oldest_at, 1),
            "last_delivery_error": self.sender.last_error if self.sender else None}
        if self.client is None:
            return out
        try:
            await self.client.history_stats()
            out["reachable"] = True
        except AidbError as exc:
            out["reachable"], out["error"] = False, str(exc)
            return out
        try:  # an empty record: AIDB checks the key before the body, and stores nothing
            await self.client.record({})
            out["key_accepted"] = True
        except AidbUnauthorized as exc:
            out["key_accepted"], out["error"] = False, str(exc)
        except AidbRejected:
            out["key_accepted"] = True
        except AidbError as exc:
            out["error"] = str(exc)
        return out


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def alert_via(store: Any, alerts: Any) -> Callable[[str, str, str], Any]:
    """An `alert(subject, kind, summary)` through the daemon's AlertManager, claimed in
    the state database first so that each (subject, kind) alerts once, also across
    restarts."""
    async def alert(subject: str, kind: str, summary: str) -> None:
        if alerts is None or not await store.claim_alert(subject, kind, "aidb"):
            return
        await alerts.send({"kind": kind, "run_id": None, "workflow": "aidb", "status": kind,
                           "failed_steps": [], "summary": summary,
                           "report": "orchestratorctl aidb status"})
    return alert
