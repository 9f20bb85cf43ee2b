"""Durable state in SQLite (WAL) through aiosqlite: runs, steps, attempts, events.

Every state change is one transaction that also appends its event, so the event log and
the tables never disagree. A step's completion is committed before the engine lets any
dependent start. A run is driven by one process at a time: the driver holds a lease
(owner = host:pid:process start time) that it renews; a lease whose owner died on this
host is free at once, any other only when it expires (leases.py).

What a driver asks of the database around its steps is as few round trips to
aiosqlite's thread as it can be (a 3-step chain: 12 -> 9; each round trip is a hand-off
to that thread and back, and a write one also waits for the write lock):
`run_and_steps` reads the run and its steps in one call (two autocommit reads as before,
so no snapshot is lost: only this process's driver writes a run it leases);
`acquire_lease` returns the cancel flag; a run's end event releases its lease (`release`).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.errors import RunNotFound, StoreError
from ..core.statuses import EventKind, RunStatus
from . import leases
from .connection import Connection, database_error
from .group_commit import GroupCommit, Row, insert_events
from .migrations import MIGRATIONS
from .rows import (
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    STEP_COLUMNS,
    AttemptRow,
    Event,
    RunRow,
    StepRow,
    dumps,
    loads,
    named,
    run_row,
    step_row,
)

KEEP_RESULT = "UPDATE steps SET result = ? WHERE run_id = ? AND step_id = ?"


class Store:
    """The state database. Open with `await Store.open(path)`; close with `await close()`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path):
        # Rows are read by column name (sqlite3.Row), never by position.
        conn.row_factory = sqlite3.Row
        self._conn = Connection(conn, path)
        self._closed = False
        self.path = path
        self._events = GroupCommit(functools.partial(self._conn.run, insert_events),
                                   self._conn.write, functools.partial(database_error, path))

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> Store:
        """Open (creating if need be) and migrate the database at path.

        WAL with synchronous=NORMAL survives a killed process without losing a commit;
        a power cut may lose the last commits but never corrupts the file. Use "FULL"
        where even that matters.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except OSError as exc:
            raise StoreError(f"cannot open state database {path}: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise database_error(path, exc) from exc
        store = cls(conn, path)
        if sqlite3.sqlite_version_info < (3, 38):
            await conn.close()
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: the state database "
                             "needs 3.38 or newer (JSON operators)")
        try:
            await store._conn.execute("PRAGMA journal_mode=WAL")
            await store._conn.execute(f"PRAGMA synchronous={synchronous}")
            await store._conn.execute("PRAGMA foreign_keys=ON")
            await store._conn.execute("PRAGMA busy_timeout=10000")
            await store._migrate()
        except BaseException:
            await conn.close()  # else its thread keeps the process alive
            raise
        return store

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._events.drain()
            await self._conn.close()

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = await self._conn.execute_fetchall(
            "SELECT max(version) AS version FROM schema_version")
        current = rows[0]["version"] or 0
        newest = max(MIGRATIONS)
        if current > newest:
            raise StoreError(f"{self.path} has schema version {current}, newer than this "
                             f"orchestratord knows ({newest}); upgrade orchestratord")
        for version in range(current + 1, newest + 1):
            await self._conn.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[version]}; "
                f"INSERT INTO schema_version VALUES ({version}); COMMIT;")

    async def _append(self, run_id: str, type_: str, step_id: str | None = None,
                      attempt: int | None = None, data: dict[str, Any] | None = None) -> int:
        """Append an event; triggers apply it to the tables in the same transaction.

        Returns its seq, the order of changes (used to compensate in reverse order),
        once it is committed; events appended together share a commit (group_commit.py).
        """
        return await self._events.append(
            Row(run_id, time.time(), type_, step_id, attempt, dumps(data or {})))

    # -- runs ---------------------------------------------------------------------------

    async def create_run(self, workflow: str, definition: dict[str, Any], file: str,
                         params: dict[str, Any], steps: list[tuple[str, str, str]]) -> str:
        """Record a new pending run and its steps (id, skill, action); returns its id."""
        run_id = secrets.token_hex(6)

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (id, workflow, status, params, definition, file, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (run_id, workflow, RunStatus.PENDING, dumps(params), dumps(definition), file,
                 time.time()))
            conn.executemany(
                "INSERT INTO steps (run_id, step_id, position, skill, action, status, workflow) "
                "VALUES (?,?,?,?,?, 'pending', ?)",
                [(run_id, sid, i, skill, action, workflow)
                 for i, (sid, skill, action) in enumerate(steps)])
            conn.execute(
                "INSERT INTO events (run_id, ts, type, data) VALUES (?,?,?,?)",
                (run_id, time.time(), EventKind.RUN_CREATED, dumps({"workflow": workflow})))
        await self._conn.transaction(record)
        return run_id

    async def get_run(self, run_id: str) -> RunRow:
        """The run with this id, or the only one whose id starts with it (literally)."""
        rows = await self._conn.execute_fetchall("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            # Not LIKE: a prefix is text, and `%` or `_` in it must not match any run;
            # an empty prefix would start every id, so it names none.
            if run_id:
                rows = await self._conn.execute_fetchall(
                    "SELECT * FROM runs WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2", (run_id,))
            if len(rows) != 1:
                raise RunNotFound(f"no run '{run_id}'" + (" (ambiguous prefix)" if rows else ""))
        return run_row(rows[0])

    async def list_runs(self, *, workflow: str | None = None, status: str | None = None,
                        limit: int = 50) -> list[RunRow]:
        where: list[str] = []
        args: list[Any] = []
        if workflow:
            where.append("workflow = ?")
            args.append(workflow)
        if status:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._conn.execute_fetchall(sql + " ORDER BY created_at DESC LIMIT ?",
                                                 (*args, limit))
        return [run_row(r) for r in rows]

    async def set_run_status(self, run_id: str, status: str, event: str, *,
                             error: str | None = None, outputs: Any = None,
                             data: dict[str, Any] | None = None,
                             release: str | None = None) -> int:
        """Record the run's new status; with release (an owner), also release that
        owner's lease in the same transaction: a run's end and its lease go together,
        one commit instead of two."""
        data = {**(data or {}), "status": status, **({"error": error} if error else {}),
                **({"outputs": outputs} if outputs is not None else {})}
        return await self._events.append(
            Row(run_id, time.time(), event, None, None, dumps(data),
                also=(leases.RELEASE, (run_id, release)) if release else None))

    async def request_cancel(self, run_id: str) -> None:
        """Record that the run is to be cancelled; the request is never lost.

        A live driver sees it within a second and stops the run. A run nobody drives
        (its driver died, or the daemon that would drive it is down) keeps the request
        until whoever takes its lease next (a resume, the daemon at start-up) honours it
        before launching anything. It is cleared when the run ends.
        """
        await self._append(run_id, EventKind.RUN_CANCEL_REQUESTED)

    async def cancel_requested(self, run_id: str) -> bool:
        rows = await self._conn.execute_fetchall(
            "SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        return bool(rows and rows[0]["cancel_requested"])

    # -- leases (leases.py) ------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Take the run for owner (or raise LeaseHeld); whether a cancel is requested."""
        return await leases.acquire(self._conn, run_id, owner, ttl)

    async def driven(self, run_id: str) -> bool:
        """Whether a live process holds the run's lease (drives it now)."""
        return await leases.driven(self._conn, run_id)

    async def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Extend the lease; False if it was lost to another process."""
        return await leases.renew(self._conn, run_id, owner, ttl)

    async def release_lease(self, run_id: str, owner: str) -> None:
        await leases.release(self._conn, run_id, owner)

    # -- steps --------------------------------------------------------------------------

    async def steps(self, run_id: str) -> list[StepRow]:
        rows = await self._conn.execute_fetchall(STEPS, (run_id,))
        return [step_row(r) for r in rows]

    async def run_and_steps(self, run_id: str) -> tuple[RunRow, list[StepRow]]:
        """`get_run` and its `steps`, in one round trip to the database's thread (what
        a driver reads before it starts) when run_id is a whole id."""
        def read(conn: sqlite3.Connection) -> tuple[Any, list[Any]]:
            run = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            return run, conn.execute(STEPS, (run_id,)).fetchall() if run else []
        run, steps = await self._conn.run(read)
        if run is None:  # a prefix, or no such run: get_run says which
            found = await self.get_run(run_id)
            return found, await self.steps(found.id)
        return run_row(run), [step_row(r) for r in steps]

    async def attempts(self, run_id: str) -> list[AttemptRow]:
        rows = await self._conn.execute_fetchall(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ? ORDER BY started_at",
            (run_id,))
        return [AttemptRow(**named(r)) for r in rows]

    async def attempt_started(self, run_id: str, step_id: str, attempt: int, params: Any,
                              kind: str = "action") -> int:
        event = EventKind.STEP_STARTED if kind == "action" else EventKind.COMPENSATION_STARTED
        return await self._append(run_id, event, step_id, attempt, {"params": params})

    async def attempt_process(self, run_id: str, step_id: str, attempt: int, kind: str,
                              process: str) -> int:
        """Record the identity of the leader of an attempt's process group, so that a
        resume can stop it if its driver dies (processes.stop_group)."""
        return await self._append(run_id, EventKind.ATTEMPT_PROCESS, step_id, attempt,
                                  {"kind": kind, "process": process})

    async def orphans(self, run_id: str) -> list[AttemptRow]:
        """Attempts recorded running with a process: what a dead driver may have left."""
        rows = await self._conn.execute_fetchall(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ? AND status = 'running' "
            "AND process IS NOT NULL", (run_id,))
        return [AttemptRow(**named(r)) for r in rows]

    async def retry_scheduled(self, run_id: str, step_id: str, attempt: int, delay: float) -> int:
        """Record a retry back-off: the step's next attempt starts no earlier than now +
        delay, in this process or in one that resumes the run after a crash."""
        return await self._append(run_id, EventKind.STEP_RETRY, step_id, attempt,
                                  {"delay": round(delay, 3), "not_before": time.time() + delay})

    async def attempt_failed(self, run_id: str, step_id: str, attempt: int, *, status: str,
                             error: str, exit_code: int | None, stderr_tail: str,
                             kind: str = "action") -> int:
        """Record a failed attempt; the step fails only through `step_finished`."""
        return await self._append(run_id, EventKind.ATTEMPT_FAILED, step_id, attempt, {
            "status": status, "error": error, "exit_code": exit_code,
            "stderr_tail": stderr_tail, "kind": kind})

    async def step_finished(self, run_id: str, step_id: str, status: str, *, attempt: int | None,
                            result: Any = None, shown: Any = None, error: str | None = None) -> int:
        """Commit a step's outcome (succeeded, failed, skipped, ...) with its event.

        result is kept as it is in steps.result (resume renders later steps from it);
        the event records `shown`, the result with its secrets masked.
        """
        return await self._events.append(
            _step_end(run_id, step_id, status, attempt, result, shown, error))

    def step_finished_later(self, run_id: str, step_id: str, status: str, *,
                            attempt: int | None, result: Any = None, shown: Any = None,
                            error: str | None = None) -> asyncio.Future:
        """`step_finished`, committed with the next batch of events (group_commit.py:
        `defer`); the future gets its seq once committed. Call `flush` soon."""
        return self._events.defer(
            _step_end(run_id, step_id, status, attempt, result, shown, error))

    def flush(self) -> None:
        """Have the events queued by `..._later` written, with whatever else is appended
        before the writer runs."""
        self._events.flush()

    async def compensation_finished(self, run_id: str, step_id: str, attempt: int, ok: bool,
                                    error: str | None = None) -> int:
        event = EventKind.STEP_COMPENSATED if ok else EventKind.STEP_COMPENSATION_FAILED
        data = {"error": error} if error else None
        return await self._append(run_id, event, step_id, attempt, data)

    async def rollback_started(self, run_id: str, steps: list[str], outcome: str,
                               error: str | None) -> int:
        """Record that the run rolls back: the steps to compensate (in order) and the
        outcome that made it roll back. From here on the run only compensates."""
        return await self._append(run_id, EventKind.RUN_ROLLING_BACK,
                                  data={"steps": steps, "outcome": outcome, "error": error})

    async def rollback_plan(self, run_id: str) -> dict[str, Any] | None:
        """What `rollback_started` recorded, or None if the run never began to roll back."""
        rows = await self._conn.execute_fetchall(
            "SELECT data FROM events WHERE run_id = ? AND type = 'run_rolling_back' "
            "ORDER BY seq DESC LIMIT 1", (run_id,))
        return loads(rows[0]["data"]) if rows else None

    async def prepare_resume(self, run_id: str, *, redrive: bool) -> None:
        """Make a run drivable again (see the project_resume trigger).

        Succeeded and skipped steps keep their results and are never run again; steps a
        dead process left running go back to pending; with redrive (a failed, cancelled
        or timed-out run) failed steps do too, with a fresh retry budget.
        """
        await self._append(run_id, EventKind.RUN_REDRIVE if redrive else EventKind.RUN_RECOVERED)

    # -- events -------------------------------------------------------------------------

    async def record_event(self, run_id: str, type_: str, *, step_id: str | None = None,
                           attempt: int | None = None, data: dict[str, Any] | None = None) -> int:
        return await self._append(run_id, type_, step_id, attempt, data)

    async def events(self, run_id: str, *, after: int = 0,
                     limit: int | None = 10000) -> list[Event]:
        """The run's events after seq `after`, oldest first; limit None: all of them."""
        rows = await self._conn.execute_fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (run_id, after, -1 if limit is None else limit))  # SQLite: -1 is no limit
        return [Event(**{**named(r), "data": loads(r["data"]) or {}}) for r in rows]

    # -- alerts -------------------------------------------------------------------------

    async def claim_alert(self, subject: str, kind: str, workflow: str) -> bool:
        """Record that an alert is being sent; False if it was already (dedup, restarts)."""
        async with self._conn.write:
            cursor = await self._conn.execute(
                "INSERT OR IGNORE INTO alerts_sent (subject, kind, workflow, sent_at) "
                "VALUES (?,?,?,?)", (subject, kind, workflow, time.time()))
        return cursor.rowcount == 1

    async def unalerted_runs(self, statuses: Iterable[str], since: float) -> list[RunRow]:
        """Runs that ended with one of statuses at or after since and have no alert on
        record: what a process that died between a run's end and its alert left."""
        statuses = list(statuses)
        rows = await self._conn.execute_fetchall(
            f"SELECT * FROM runs WHERE status IN ({','.join('?' * len(statuses))}) "
            "AND finished_at >= ? AND NOT EXISTS "
            "(SELECT 1 FROM alerts_sent WHERE subject = runs.id) ORDER BY finished_at",
            (*statuses, since))
        return [run_row(r) for r in rows]

    async def last_success(self, workflow: str) -> tuple[str, float] | None:
        """(run id, finished_at) of the workflow's latest succeeded run."""
        rows = await self._conn.execute_fetchall(
            "SELECT id, finished_at FROM runs WHERE workflow = ? AND status = 'succeeded' "
            "ORDER BY finished_at DESC LIMIT 1", (workflow,))
        return (rows[0]["id"], rows[0]["finished_at"]) if rows else None

    async def first_run_at(self, workflow: str) -> float | None:
        rows = await self._conn.execute_fetchall(
            "SELECT min(created_at) AS first FROM runs WHERE workflow = ?", (workflow,))
        first: float | None = rows[0]["first"]
        return first

    async def integrity_check(self) -> str:
        rows = await self._conn.execute_fetchall("PRAGMA integrity_check")
        verdict: str = rows[0]["integrity_check"]
        return verdict


STEPS = f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY position"


def _step_end(run_id: str, step_id: str, status: str, attempt: int | None, result: Any,
              shown: Any, error: str | None) -> Row:
    data = {**({"result": shown} if shown is not None else {}),
            **({"error": error} if error else {})}
    return Row(run_id, time.time(), EventKind.step_ended(status), step_id, attempt, dumps(data),
               also=(KEEP_RESULT, (dumps(result), run_id, step_id)))

