"""The engine's overhead: N no-op python steps as a chain and as a fan-out.

Each run goes through the real Engine on a real SQLite file opened exactly as the daemon
opens it (WAL, synchronous=NORMAL): every step's start and end are committed before a
dependent starts. The time covers the whole run — recording it and its N steps, the
lease, scheduling, every commit — divided by N. Loading the definition (parsing and
checking N steps) is timed apart: a daemon does it once per reload, not per run.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from .results import Row, at_most, fmt_n

SIZES = (100, 1_000, 10_000)
NOOP = "bench.noop:noop"
NOOP_SYNC = "bench.noop:noop_sync"


def document(shape: str, n: int, target: str = NOOP) -> dict[str, Any]:
    """A workflow of n no-op steps: `chain` (each after the one before) or `fanout`
    (one parallel group, all at once)."""
    steps = [{"id": f"s{i}", "skill": "bench", "action": "noop"} for i in range(n)]
    items: list[Any] = steps if shape == "chain" else [{"id": "fan", "parallel": steps}]
    return {"skills": {"bench": {"actions": {"noop": {"python": target}}}},
            "workflow": {"name": f"{shape}-{n}", "concurrency": min(max(n, 1), 10_000),
                         "steps": items}}


def load(data: dict[str, Any], directory: Path) -> Any:
    from orchestratord.language.loader import load_data
    from orchestratord.skills import Registry
    return load_data(data, str(directory / "bench.json"), Registry(), directory)


async def run_once(definition: Any, db: Path) -> float:
    """Seconds to run definition to success on a fresh database at db."""
    from orchestratord.engine.engine import Engine, settle_heap
    from orchestratord.store.sqlite import Store
    store = await Store.open(db)
    engine = Engine(store)
    try:
        settle_heap()  # as the daemon does once its definitions are loaded
        started = time.perf_counter()
        result = await engine.run(definition)
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
        await store.close()
    if result.status != "succeeded":
        raise RuntimeError(f"{definition.name}: run {result.status}: {result.error}")
    _check_durable(db, result.run_id, len(definition.graph.nodes))
    return elapsed


def _check_durable(db: Path, run_id: str, n: int) -> None:
    """Every step's end is in the file, read by another connection."""
    with sqlite3.connect(db) as conn:
        (done,) = conn.execute("SELECT count(*) FROM steps WHERE run_id = ? AND "
                               "status = 'succeeded'", (run_id,)).fetchone()
    if done != n:
        raise RuntimeError(f"{db}: {done} of {n} steps committed as succeeded")


_databases = itertools.count()


def fresh(workdir: Path, stem: str) -> Path:
    """A database path not used before in this process."""
    return workdir / f"{stem}-{next(_databases)}.db"


def repeats(n: int) -> int:
    return 5 if n <= 100 else 3 if n <= 1_000 else 1


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


async def measure(shape: str, n: int, workdir: Path, target: str = NOOP) -> dict[str, float]:
    """Median seconds of runs of n steps, ours and the bare baseline's, interleaved so
    that a burst of load from elsewhere hits both alike; and the definition's load time."""
    from . import baseline
    t0 = time.perf_counter()
    definition = load(document(shape, n, target), workdir)
    load_s = time.perf_counter() - t0
    ours, bare = [], []
    for _ in range(repeats(n)):
        bare.append(await baseline.run_once(shape, n, fresh(workdir, f"base-{shape}-{n}")))
        ours.append(await run_once(definition, fresh(workdir, f"{shape}-{n}")))
    return {"seconds": _median(ours), "baseline_seconds": _median(bare),
            "load_seconds": load_s, "runs": len(ours)}


async def collect(sizes: tuple[int, ...]) -> list[Row]:
    """A row per shape and size, and the linearity of each shape."""
    from . import baseline
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        workdir = Path(tmp)
        # Warm up: imports, caches, the page cache of the interpreter and of SQLite.
        await run_once(load(document("chain", 50), workdir), fresh(workdir, "warm"))
        await baseline.run_once("chain", 50, fresh(workdir, "warm-base"))
        per_step: dict[tuple[str, int], float] = {}
        for shape in ("chain", "fanout"):
            for n in sizes:
                m = await measure(shape, n, workdir)
                ms = m["seconds"] * 1000 / n
                per_step[shape, n] = ms
                row = Row("engine", f"{shape} N={fmt_n(n)}", ms, "ms/step",
                          baseline=m["baseline_seconds"] * 1000 / n,
                          note=f"{m['seconds']:.2f} s total, bare {m['baseline_seconds']:.2f} s",
                          extra={**m, "n": n, "shape": shape})
                if shape == "chain" and n == 1_000:
                    row.target, row.ok = at_most(ms, 0.5, "ms/step")
                if shape == "fanout" and n == 1_000:
                    row.target, row.ok = at_most(m["seconds"], 1.0, "s total")
                rows.append(row)
        # A plain (non-async) function runs in a worker thread (asyncio.to_thread).
        n = min(1_000, max(sizes))
        m = await measure("chain", n, workdir, target=NOOP_SYNC)
        rows.append(Row("engine", f"chain N={fmt_n(n)}, plain-function step",
                        m["seconds"] * 1000 / n, "ms/step",
                        baseline=m["baseline_seconds"] * 1000 / n,
                        note="a def, not async def: run in a thread (asyncio.to_thread)",
                        extra={"seconds": m["seconds"], "n": n}))
        for shape in ("chain", "fanout"):
            if (shape, 1_000) in per_step and (shape, 10_000) in per_step:
                ratio = per_step[shape, 10_000] / per_step[shape, 1_000]
                target, ok = at_most(ratio, 1.5, "x")
                rows.append(Row("engine", f"{shape} linearity", ratio, "x",
                                target=target, ok=ok,
                                note="ms/step at 10,000 / at 1,000; 1 = linear"))
    return rows


if __name__ == "__main__":
    import sys
    shape, n = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(measure(shape, n, Path(tmp))))
