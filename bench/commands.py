"""Command steps: 200 `/bin/true` steps with concurrency 2 against 200 bare spawns.

Ours: one workflow, a parallel group of 200 command steps, `concurrency: 2`, through
the real Engine and a real SQLite file. Each step gets the full command protocol: a new
session, params as JSON on stdin, stdout and stderr drained, a pidfd to see the exit,
the process group killed after it, start and end committed.

Bare: 200 `asyncio.create_subprocess_exec("/bin/true")` + `wait()` under a semaphore
of 2, no pipes. A second bare variant with the three pipes and `communicate()` shows
how much of the difference the protocol's pipes alone explain.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from .results import Row, at_most

STEPS, CONCURRENCY, REPEAT = 200, 2, 5
TRUE = "/bin/true"


def document(n: int = STEPS) -> dict[str, Any]:
    steps = [{"id": f"t{i}", "skill": "bench", "action": "true"} for i in range(n)]
    return {"skills": {"bench": {"actions": {"true": {"command": [TRUE]}}}},
            "workflow": {"name": "commands", "concurrency": CONCURRENCY,
                         "steps": [{"id": "all", "parallel": steps}]}}


async def bare(n: int = STEPS, pipes: bool = False) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    pipe = asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL

    async def spawn() -> None:
        async with limit:
            proc = await asyncio.create_subprocess_exec(TRUE, stdin=pipe, stdout=pipe, stderr=pipe)
            if pipes:
                await proc.communicate(b"{}")
            else:
                await proc.wait()
            if proc.returncode != 0:
                raise RuntimeError(f"{TRUE} exited {proc.returncode}")

    started = time.perf_counter()
    await asyncio.gather(*(spawn() for _ in range(n)))
    return time.perf_counter() - started


async def ours(workdir: Path, n: int = STEPS) -> float:
    from .engine import fresh, load, run_once
    return await run_once(load(document(n), workdir), fresh(workdir, "commands"))


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


async def collect(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        workdir = Path(tmp)
        await bare(10), await ours(workdir, 10)  # warm up imports and the page cache
        mine, plain, piped = [], [], []
        for _ in range(1 if quick else REPEAT):  # interleaved: a burst of load hits all alike
            plain.append(await bare())
            mine.append(await ours(workdir))
            piped.append(await bare(pipes=True))
    m, b, p = _median(mine), _median(plain), _median(piped)
    ratio = m / b
    target, ok = at_most(ratio, 1.3, "x bare")
    return [
        Row("commands", f"{STEPS} x {TRUE}, concurrency {CONCURRENCY}", m * 1000 / STEPS,
            "ms/step", baseline=b * 1000 / STEPS, target=target, ok=ok,
            note=f"{m:.2f} s vs bare {b:.2f} s", extra={"seconds": m, "bare_seconds": b}),
        Row("commands", "bare spawns with 3 pipes", p * 1000 / STEPS, "ms/step",
            baseline=b * 1000 / STEPS, note="communicate(); what pipes alone cost",
            extra={"seconds": p}),
    ]


if __name__ == "__main__":
    for row in asyncio.run(collect()):
        print(row.as_dict())
