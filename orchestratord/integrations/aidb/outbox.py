"""Execution history to AIDB through a durable outbox in the state database.

The rows are written by a trigger (migration 6) in the transaction of the step or run
end event they describe, so a record exists exactly when its event does, whatever dies
after. This sender reads them in order, builds each record from the run's rows (redacted
then), POSTs it to /history/record and marks it sent. It runs beside the runs and never
in their way: a run only ever pays for one INSERT in its own transaction.

Delivery is at least once: a crash between AIDB's answer and the mark sends the record
again, with the same interaction_id, by which AIDB (or anyone reading its history)
recognises it. While AIDB is down, failing or refusing the key, the sender backs off
(exponentially, to a bound) and keeps every record; one it refuses as invalid (4xx) is
kept, marked rejected, and counted as failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from ...core.redact import RunRedactor
from ...core.statuses import ended_status
from .client import AidbClient, AidbRejected, AidbUnauthorized, AidbUnavailable

log = logging.getLogger("orchestratord.aidb.outbox")

SESSION_NAMESPACE = uuid.UUID("6a1f0c52-56a4-4b3e-9a57-2f0d6c1e7a10")
"""uuid5 namespace of session ids: a run's session_id is uuid5(this, run id), stable."""

RESPONSE_LIMIT = 4000  # characters of a result or error sent as `response`
SENT_RETENTION = 7 * 86400.0  # sent records are kept this long (status, redelivery checks)


def session_id(run_id: str) -> str:
    return str(uuid.uuid5(SESSION_NAMESPACE, run_id))


@dataclass(frozen=True)
class Depth:
    pending: int
    oldest_id: int | None
    oldest_at: float | None       # created_at of the oldest pending record
    sent: int
    rejected: int


class Outbox:
    """The outbox rows on their own connection to the state database."""

    def __init__(self, path: Path):
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute("PRAGMA busy_timeout=10000")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "Outbox.open() first"
        return self._db

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(await self.db.execute_fetchall(sql, args))

    async def set_recording(self, on: bool) -> None:
        """Whether the trigger writes records (the daemon's `aidb.history` setting)."""
        await self.db.execute("INSERT OR REPLACE INTO aidb_state (key, value) VALUES "
                              "('history', ?)", ("on" if on else "off",))

    async def due(self, limit: int = 50) -> list[sqlite3.Row]:
        return await self._rows(
            "SELECT * FROM aidb_outbox WHERE sent_at IS NULL AND NOT rejected "
            "ORDER BY id LIMIT ?", (limit,))

    async def mark_sent(self, row_id: int) -> None:
        await self.db.execute("UPDATE aidb_outbox SET sent_at = ?, tries = tries + 1, "
                              "last_error = NULL WHERE id = ?", (time.time(), row_id))

    async def mark_failed(self, row_id: int, error: str, *, rejected: bool = False) -> None:
        await self.db.execute("UPDATE aidb_outbox SET tries = tries + 1, last_error = ?, "
                              "rejected = ? WHERE id = ?", (error[:500], int(rejected), row_id))

    async def prune(self, older_than: float = SENT_RETENTION) -> int:
        """Forget records AIDB accepted more than older_than seconds ago."""
        cursor = await self.db.execute("DELETE FROM aidb_outbox WHERE sent_at < ?",
                                       (time.time() - older_than,))
        return cursor.rowcount

    async def depth(self) -> Depth:
        rows = await self._rows(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL AND NOT rejected) AS pending, "
            "min(id) FILTER (WHERE sent_at IS NULL AND NOT rejected) AS oldest_id, "
            "min(created_at) FILTER (WHERE sent_at IS NULL AND NOT rejected) AS oldest_at, "
            "count(sent_at) AS sent, count(*) FILTER (WHERE rejected) AS rejected "
            "FROM aidb_outbox")
        r = rows[0]
        return Depth(r["pending"], r["oldest_id"], r["oldest_at"], r["sent"], r["rejected"])

    async def record(self, row: sqlite3.Row, project: str) -> dict[str, Any]:
        """The /history/record body of an outbox row, secrets redacted."""
        run = (await self._rows("SELECT * FROM runs WHERE id = ?",
                                              (row["run_id"],)))[0]
        event = (await self._rows("SELECT * FROM events WHERE seq = ?",
                                                (row["event_seq"],)))[0]
        redact = RunRedactor(_loads(run["params"]), _loads(run["definition"]))
        data = _loads(event["data"]) or {}
        meta: dict[str, Any] = {"workflow": run["workflow"], "run": run["id"]}
        if row["step_id"] is None:
            status = data.get("status")
            started = run["started_at"] or run["created_at"]
            query = f"workflow {run['workflow']} (run {run['id']})"
            answer = data.get("error") or data.get("outputs")
            steps = await self._rows(
                "SELECT attempts FROM steps WHERE run_id = ?", (run["id"],))
            meta.update(status=status, attempts=sum(s["attempts"] for s in steps))
        else:
            step = (await self._rows(
                "SELECT skill, action FROM steps WHERE run_id = ? AND step_id = ?",
                (run["id"], row["step_id"])))[0]
            # The attempt's start and params (recorded redacted) are its step_started event.
            began = await self._rows(
                "SELECT ts, data ->> '$.params' AS params FROM events WHERE run_id = ? "
                "AND step_id = ? AND type = 'step_started' AND attempt = ? LIMIT 1",
                (run["id"], row["step_id"], row["attempt"]))
            status = ended_status(event["type"])
            started = began[0]["ts"] if began else event["ts"]
            params = _loads(began[0]["params"]) if began else None
            query = f"{step['skill']}.{step['action']}"
            if params:
                query += " " + json.dumps(redact(params), separators=(",", ":"), default=str)
            answer = data.get("error") or data.get("result")
            meta.update(step=row["step_id"], skill=step["skill"], action=step["action"],
                        status=status, attempts=row["attempt"] or 0)
        if data.get("error"):
            meta["error"] = redact(data["error"])
        body = {"interaction_id": row["interaction_id"], "session_id": session_id(run["id"]),
                "project": project, "query": query[:RESPONSE_LIMIT],
                "response": _text(redact(answer)), "agent_type": "orchestrator",
                "outcome": status,
                "latency_ms": max(0, round((event["ts"] - started) * 1000)),
                "metadata": redact(meta)}
        return {k: v for k, v in body.items() if v is not None}


class Sender:
    """Sends due outbox records in the background; `wake()` when new ones may be there."""

    def __init__(self, outbox: Outbox, client: AidbClient, *, project: str,
                 metrics: Any = None, initial_delay: float = 1.0, max_delay: float = 60.0,
                 on_unauthorized: Callable[[str], Awaitable[Any]] | None = None):
        self.outbox, self.client, self.project = outbox, client, project
        self.metrics = metrics
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.on_unauthorized = on_unauthorized
        self.failures = 0           # consecutive failed deliveries: the back-off's exponent
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # the loop and a `sync` never send the same row twice

    def wake(self) -> None:
        self._wake.set()

    def backoff(self) -> float:
        if not self.failures:
            return 0.0
        return min(self.max_delay, self.initial_delay * 2 ** (self.failures - 1))

    async def run_forever(self, idle: float = 30.0) -> None:
        """Flush, then wait for news (or the back-off), for the daemon's lifetime."""
        while True:
            try:
                await self.flush()
            except Exception:  # a bug here must not end history delivery for good
                log.exception("sending history to AIDB failed")
                self.failures += 1
            delay = self.backoff()
            if delay:  # AIDB is failing: news waits for the back-off, not the reverse
                await asyncio.sleep(delay)
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), idle)
                except TimeoutError:
                    pass
            self._wake.clear()

    async def flush(self) -> int:
        """Send what is due now, in order; stop at the first delivery failure."""
        sent = 0
        async with self._lock:
            while rows := await self.outbox.due():
                for row in rows:
                    if not await self._send(row):
                        await self._count()
                        return sent
                    sent += 1
            await self._count()
        return sent

    async def _send(self, row: sqlite3.Row) -> bool:
        """True when the row is done with (sent, or rejected for good)."""
        try:
            body = await self.outbox.record(row, self.project)
        except (sqlite3.Error, LookupError, ValueError) as exc:  # its run is gone, or a bug
            log.error("history record %s cannot be built; kept, not sent: %r",
                      row["interaction_id"], exc)
            await self.outbox.mark_failed(row["id"], repr(exc), rejected=True)
            self._failed("rejected")
            return True
        try:
            await self.client.record(body)
        except AidbRejected as exc:
            log.error("AIDB rejected history record %s; kept in the outbox, not resent: %s",
                      row["interaction_id"], exc)
            await self.outbox.mark_failed(row["id"], str(exc), rejected=True)
            self._failed("rejected")
            return True
        except (AidbUnavailable, AidbUnauthorized) as exc:
            self.failures += 1
            self.last_error = str(exc)
            await self.outbox.mark_failed(row["id"], str(exc))
            unauthorized = isinstance(exc, AidbUnauthorized)
            self._failed("unauthorized" if unauthorized else "unavailable")
            (log.error if unauthorized else log.warning)(
                "history to AIDB: %s; %s kept, next try in %.0f s", exc,
                row["interaction_id"], self.backoff())
            if unauthorized and self.on_unauthorized is not None:
                await self.on_unauthorized(str(exc))
            return False
        await self.outbox.mark_sent(row["id"])
        self.failures, self.last_error = 0, None
        if self.metrics is not None:
            self.metrics.sent.inc()
        return True

    def _failed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.failed.labels(reason).inc()

    async def _count(self) -> None:
        if self.metrics is not None:
            depth = await self.outbox.depth()
            self.metrics.pending.set(depth.pending)
            self.metrics.oldest.set(time.time() - depth.oldest_at if depth.oldest_at else 0)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:RESPONSE_LIMIT]
