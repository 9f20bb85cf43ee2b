"""The state database's one connection: SQLite's errors become StoreErrors where they
enter, and write transactions run whole on aiosqlite's thread, one round trip each."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.errors import StoreError


def database_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The StoreError a person sees for an SQLite error: which database, and what to do."""
    # SQLITE_CORRUPT (and its extended codes), SQLITE_NOTADB: the file cannot be read as
    # a database, now or ever; anything else (locked, full, read-only) may pass.
    if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return StoreError(
            f"state database {path} is damaged ({exc}): stop what uses it, move it aside "
            f"with its -wal and -shm files (mv {path} {path}.damaged) or restore it from a "
            "backup; a new, empty one is created at the next start")
    return StoreError(f"state database {path}: {exc}")


def in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
    """On the database's thread: work(conn) in one IMMEDIATE transaction, committed
    whole or rolled back whole (whatever it raised is raised)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


class Connection:
    """The aiosqlite connection with SQLite's errors translated where they enter, so a
    damaged or unusable file is a StoreError (exit 7) everywhere, never a traceback."""

    def __init__(self, conn: aiosqlite.Connection, path: Path):
        self._conn, self._path = conn, path
        # One connection serves every coroutine of the process: transactions must not
        # interleave, or a second BEGIN would land inside the first.
        self.write = asyncio.Lock()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise database_error(self._path, exc) from exc

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> aiosqlite.Cursor:
        with self._translated():
            return await self._conn.execute(sql, args)

    async def execute_fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._translated():
            return list(await self._conn.execute_fetchall(sql, args))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        with self._translated():
            await self._conn.executemany(sql, rows)

    async def executescript(self, script: str) -> None:
        with self._translated():
            await self._conn.executescript(script)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(the sqlite3 connection, *args) on the connection's own thread: several
        statements for one round trip. (aiosqlite's `_execute` is what its own methods
        use to do this; it has no public name for it.)"""
        with self._translated():
            return await self._conn._execute(lambda: fn(self._conn._conn, *args))

    async def transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """work(conn) in one IMMEDIATE write transaction, run whole on the database's
        thread, rolled back whole on any error (a database error raised as a StoreError).

        One round trip instead of one a statement (counted: a 3-step run took 19 round
        trips, create_run's five and acquire_lease's four among them, each holding the
        write lock that every other write waits for; now 12). A caller cancelled
        meanwhile no longer rolls it back half way: once handed to the thread it is
        committed whole, as if the caller had been cancelled just after (a pending run
        is picked up at the daemon's next start)."""
        async with self.write:
            return await self.run(in_transaction, work)

    async def close(self) -> None:
        await self._conn.close()
