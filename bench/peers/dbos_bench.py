"""DBOS Transact (durable workflows on SQLite): the same chain and fan-out.

What DBOS persists: per workflow, a `workflow_status` row (and its inputs and output)
written when it starts and ends; per step, one row in `operation_outputs` (workflow id,
step number, name, pickled output or error, start and end times), committed when the
step completes — nothing is written before a step starts. Ours commits twice per step
(started, then ended, each an event plus its projection onto steps and attempts).

The system database is SQLite opened as ours is (WAL, synchronous=NORMAL) through a
custom engine carrying DBOS's own connect settings (IMMEDIATE transactions, busy
timeout, foreign keys). DBOS's default SQLite file uses a rollback journal with
synchronous=FULL (an fsync per commit), about twice as slow on this machine; that would
measure the disk, not the orchestrator.

Chain: a synchronous workflow calling N synchronous steps (DBOS's fastest form).
Fan-out: an async workflow awaiting asyncio.gather over N async steps, the one way a
DBOS workflow runs steps concurrently in-process (a Queue would make each a child
workflow with its own status row).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.peers import serve

_app: dict[str, Any] = {}


def _engine(path: Path) -> Any:
    import sqlalchemy as sa
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def configure(conn: Any, _: Any) -> None:
        conn.isolation_level = "IMMEDIATE"
        for pragma in ("busy_timeout=30000", "foreign_keys=ON", "journal_mode=WAL",
                       "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
    return engine


def _launch(workdir: Path) -> None:
    from dbos import DBOS
    db = workdir / "dbos.sqlite"
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}",
                 "system_database_engine": _engine(db), "log_level": "WARNING"})

    @DBOS.step()
    def noop(i: int) -> None:
        return None

    @DBOS.step()
    async def anoop(i: int) -> None:
        return None

    @DBOS.workflow()
    def chain(n: int) -> None:
        for i in range(n):
            noop(i)

    @DBOS.workflow()
    async def fanout(n: int) -> None:
        await asyncio.gather(*(anoop(i) for i in range(n)))

    DBOS.launch()
    _app.update(db=db, chain=chain, fanout=fanout)
    chain(10)
    asyncio.run(fanout(10))


def _steps(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM operation_outputs").fetchone()[0]


def measure(shape: str, n: int, workdir: Path) -> dict[str, Any]:
    before = _steps(_app["db"])
    started = time.perf_counter()
    if shape == "chain":
        _app["chain"](n)
    else:
        asyncio.run(_app["fanout"](n))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "persisted_step_rows": _steps(_app["db"]) - before}


if __name__ == "__main__":
    from importlib.metadata import version
    serve(measure, warm=_launch, version=f"dbos {version('dbos')}")
