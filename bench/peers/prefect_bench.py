"""Prefect 3 in local ephemeral mode: the same chain and fan-out.

No server is configured, so Prefect starts its API server itself, as a separate
process (`python -m uvicorn` under the flow's process, prefect/server/api/server.py:
SubprocessASGIServer), on a SQLite database (WAL, synchronous=NORMAL, as ours) under
PREFECT_HOME; starting it is timed apart. That server competes with the flow's process
for the same CPUs while a flow runs: the row `server_cpu_seconds` is the CPU time it
(and any process under it) used during the timed run, `client_cpu_seconds` the flow
process's own.

What Prefect persists: a flow run, and per task a task run with its state history
(Pending, Running, Completed). Task runs are orchestrated client-side: the client emits
their state changes as events and a server service (the task run recorder) writes them
to the database in batches, after the fact — a task's completion is not committed
before the next task starts. Results are not persisted (Prefect's default). The row
`persisted_task_runs` counts the task runs in the database when the flow returned, and
`persisted_task_runs_later` once the recorder caught up (bounded wait, untimed).

Chain: a flow calling N tasks one after another. Fan-out: `noop.map(range(N))` and
wait for all, on Prefect's default task runner (a thread pool).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.peers import serve

_app: dict[str, Any] = {}


def _task_runs(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM task_run").fetchone()[0]
    except sqlite3.Error:
        return -1


def _launch(workdir: Path) -> None:
    from prefect import flow, task

    @task
    def noop(i: int) -> None:
        return None

    @flow
    def chain(n: int) -> None:
        for i in range(n):
            noop(i)

    @flow
    def fanout(n: int) -> None:
        noop.map(range(n)).wait()

    _app.update(chain=chain, fanout=fanout, db=Path(os.environ["PREFECT_HOME"]) / "prefect.db")
    chain(5)  # starts the ephemeral API and creates its database


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(shape: str, n: int, workdir: Path) -> dict[str, Any]:
    db = _app["db"]
    before = _task_runs(db)
    server = _descendants(os.getpid())
    server_cpu, client_cpu = _cpu_seconds(server), time.process_time()
    started = time.perf_counter()
    _app[shape](n)
    seconds = time.perf_counter() - started
    server_cpu, client_cpu = _cpu_seconds(server) - server_cpu, time.process_time() - client_cpu
    at_return = _task_runs(db) - before
    deadline = time.monotonic() + 30
    later = at_return
    while later < n and time.monotonic() < deadline:
        time.sleep(0.2)
        later = _task_runs(db) - before
    return {"seconds": seconds, "persisted_task_runs": at_return,
            "persisted_task_runs_later": later, "server_processes": len(server),
            "server_cpu_seconds": round(server_cpu, 2), "client_cpu_seconds": round(client_cpu, 2)}


if __name__ == "__main__":
    import atexit
    import shutil
    import tempfile
    from importlib.metadata import version
    home = tempfile.mkdtemp(prefix="prefect-home-")
    atexit.register(shutil.rmtree, home, True)
    os.environ.update(PREFECT_HOME=home, PREFECT_LOGGING_LEVEL="WARNING",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db")
    os.environ.pop("PREFECT_API_URL", None)
    serve(measure, warm=_launch, version=f"prefect {version('prefect')}")
