"""The bare baseline: what N no-op steps cost with no orchestrator at all.

N coroutines awaited by bare asyncio, each followed by one commit of one row through
aiosqlite, on a database configured as the state database is (WAL, synchronous=NORMAL,
autocommit). The chain awaits them one after another; the fan-out gathers them. The
ratio of the engine's time to this is the orchestration overhead: scheduling, the
run/step/attempt records, the event log and its projection, the lease.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiosqlite

from orchestratord.engine.engine import settle_heap

from .noop import noop

SCHEMA = ("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
          "ts REAL NOT NULL, type TEXT NOT NULL, step_id TEXT, data TEXT)")
INSERT = "INSERT INTO events (run_id, ts, type, step_id, data) VALUES (?,?,?,?,?)"


async def _open(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=10000"):
            await conn.execute(f"PRAGMA {pragma}")
        await conn.execute(SCHEMA)
    except BaseException:
        await conn.close()  # else its thread keeps the process alive
        raise
    return conn


async def _step(conn: aiosqlite.Connection, i: int) -> None:
    result = await noop({}, None)
    await conn.execute(INSERT, ("bench", time.time(), "step_succeeded", f"s{i}",
                                json.dumps({"result": result})))


async def run_once(shape: str, n: int, db: Path) -> float:
    conn = await _open(db)
    try:
        settle_heap()  # as ours: the loaded definitions out of the collector's way
        started = time.perf_counter()
        if shape == "chain":
            for i in range(n):
                await _step(conn, i)
        else:
            await asyncio.gather(*(_step(conn, i) for i in range(n)))
        elapsed = time.perf_counter() - started
        (count,) = await (await conn.execute("SELECT count(*) FROM events")).fetchone()
    finally:
        await conn.close()
    if count != n:
        raise RuntimeError(f"baseline: {count} of {n} rows committed")
    return elapsed


if __name__ == "__main__":
    import sys
    shape, n = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(run_once(shape, n, Path(tmp) / "base.db")))
