"""A run history in a real state database, and how fast `orchestratorctl stats` reads it.

`write_history` records given runs and steps (exact values, for tests); `generate` makes
a plausible history of any size (several workflows, retries, failures, rollbacks, 90
days) for the benchmark. Both write a database that Store.open created and migrated: the `runs`,
`steps` and `attempts` rows the engine's triggers would leave, and the `events` they
are the projection of (stats does not read events, but a real database holds them and
they are its largest table).

`python -m bench.history [--runs 100000]` generates a history and times the stats
queries on it (median of several calls, warm cache, as the daemon would serve them).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .results import Row, at_most, fmt_n, median_time

TARGET_MS = 100.0
STATS_ALL_MS = 50.0  # stats over all history
SUCCESS = ("succeeded", "compensated", "compensation_failed")


@dataclass
class StepSpec:
    skill: str
    action: str
    status: str = "succeeded"   # succeeded, failed, skipped, upstream_failed, compensated...
    attempts: int = 1
    duration: float = 1.0       # seconds from its first attempt to its end
    step_id: str | None = None  # default: skill.action#position


@dataclass
class RunSpec:
    workflow: str
    created_at: float
    status: str = "succeeded"
    steps: list[StepSpec] = field(default_factory=list)


def create_database(path: Path) -> None:
    """An empty state database at path, created and migrated by the store itself."""
    import asyncio

    from orchestratord.store.sqlite import Store

    async def go() -> None:
        await (await Store.open(path)).close()
    asyncio.run(go())


def write_history(path: Path, runs: Iterable[RunSpec]) -> int:
    """Record runs (creating the database if need be); returns how many were written.

    Besides `runs` and `steps`, each run gets its `events` (created, started, each
    attempt's start and failure, each step's end, compensations, the run's end) and its
    `attempts` rows, as the engine leaves them: the events table is the largest of a
    real database, and queries are measured with it there.
    """
    path = Path(path)
    create_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    count = 0
    try:
        # A generated file needs no crash safety, and a cache as large as the batch keeps
        # SQLite from spilling pages to the WAL mid-transaction (a gain of several times).
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN")
        rows: dict[str, list[tuple]] = {"runs": [], "steps": [], "attempts": [], "events": []}
        for n, run in enumerate(runs):
            _record(rows, f"{n:012x}", run)
            count += 1
            if len(rows["events"]) >= 100_000:
                _flush(conn, rows)
        _flush(conn, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return count


def _record(rows: dict[str, list[tuple]], run_id: str, run: RunSpec) -> None:
    started = run.created_at + 0.5
    events = rows["events"]
    events.append((run_id, run.created_at, "run_created", None, None,
                   json.dumps({"workflow": run.workflow})))
    events.append((run_id, started, "run_started", None, None,
                   json.dumps({"workflow": run.workflow, "status": "running"})))
    t = started
    for position, step in enumerate(run.steps):
        step_id = step.step_id or f"{step.skill}.{step.action}#{position}"
        ran = step.attempts > 0
        begin = t
        end = begin + (step.duration if ran else 0.0)
        t = end
        rows["steps"].append((run_id, step_id, position, step.skill, step.action, step.status,
                              step.attempts,
                              max(step.attempts - 1, 0) if step.status == "failed" else 0,
                              begin, end, position + 1, run.workflow,
                              step.duration if ran else 0.0))
        each = (end - begin) / max(step.attempts, 1)
        for a in range(1, step.attempts + 1):
            a_start, a_end = begin + (a - 1) * each, begin + a * each
            failed = a < step.attempts or step.status == "failed"
            events.append((run_id, a_start, "step_started", step_id, a,
                           json.dumps({"params": {"host": "localhost", "attempt": a}})))
            if failed:
                events.append((run_id, a_end, "attempt_failed", step_id, a, json.dumps(
                    {"kind": "action", "status": "failed", "error": "exit status 1",
                     "exit_code": 1, "stderr_tail": "error: temporary failure"})))
            rows["attempts"].append((run_id, step_id, "action", a,
                                     "failed" if failed else "succeeded", a_start, a_end,
                                     "exit status 1" if failed else None,
                                     1 if failed else None, None, None))
        ended = "succeeded" if step.status in ("compensated", "compensation_failed") \
            else step.status
        events.append((run_id, end, f"step_{ended}", step_id, step.attempts or None,
                       json.dumps({"result": {"ok": True}} if ended == "succeeded"
                                  else {"error": "dependency failed"})))
    for position, step in enumerate(run.steps):
        if step.status in ("compensated", "compensation_failed"):
            step_id = step.step_id or f"{step.skill}.{step.action}#{position}"
            events.append((run_id, t, "compensation_started", step_id, 1,
                           json.dumps({"params": {}})))
            events.append((run_id, t, f"step_{step.status}", step_id, 1, "{}"))
            rows["attempts"].append((run_id, step_id, "rollback", 1, "succeeded"
                                     if step.status == "compensated" else "failed",
                                     t, t, None, None, None, None))
    finished = t + 0.1 if run.status not in ("running", "pending") else None
    if finished is not None:
        events.append((run_id, finished, f"run_{run.status}", None, None,
                       json.dumps({"workflow": run.workflow, "status": run.status})))
    rows["runs"].append((run_id, run.workflow, run.status, "{}", "{}", "bench",
                         run.created_at, started, finished))


def _flush(conn: sqlite3.Connection, rows: dict[str, list[tuple]]) -> None:
    # Events first: their triggers project onto rows not written yet (no-ops) or write
    # attempts rows that the exact ones below replace; runs and steps are then written
    # as they are meant to end up.
    conn.executemany(
        "INSERT INTO events (run_id, ts, type, step_id, attempt, data) VALUES (?,?,?,?,?,?)",
        rows["events"])
    conn.executemany(
        "INSERT OR REPLACE INTO attempts (run_id, step_id, kind, attempt, status, started_at, "
        "finished_at, error, exit_code, stderr_tail, process) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows["attempts"])
    conn.executemany(
        "INSERT INTO runs (id, workflow, status, params, definition, file, created_at, "
        "started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?)", rows["runs"])
    conn.executemany(
        "INSERT INTO steps (run_id, step_id, position, skill, action, status, attempts, "
        "failed_attempts, started_at, finished_at, finished_seq, workflow, duration) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows["steps"])
    for batch in rows.values():
        batch.clear()


# Five workflows over eight skills, as an administrator's host might run them.
WORKFLOWS: dict[str, list[tuple[str, str, float]]] = {   # (skill, action, median seconds)
    "deploy": [("nixos-deployment", "generate_config", 0.4), ("nixos-deployment", "build", 90.0),
               ("nixos-deployment", "switch", 20.0), ("health-monitoring", "check", 2.0),
               ("internal-comms", "status_report", 0.3)],
    "ai-restart": [("ai-service-management", "stop", 3.0), ("ai-service-management", "start", 8.0),
                   ("health-monitoring", "check", 2.0)],
    "import": [("project-import", "import_github", 25.0), ("code-review", "review_changes", 40.0),
               ("webapp-testing", "run_tests", 120.0), ("internal-comms", "status_report", 0.3)],
    "health": [("health-monitoring", "check", 2.0)],
    "backup": [("backup", "snapshot", 30.0), ("backup", "prune", 5.0),
               ("internal-comms", "status_report", 0.3)],
}


def plausible_runs(runs: int, *, seed: int = 1, now: float | None = None,
                   days: float = 90.0) -> Iterable[RunSpec]:
    """runs random runs spread over the last `days`: about 8% of steps retry, 4% fail,
    and a failed deploy is rolled back."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    names = list(WORKFLOWS)
    weights = [3, 1, 1, 6, 1]
    for i in range(runs):
        workflow = rng.choices(names, weights)[0]
        created = now - days * 86400 * (1 - i / runs)
        steps, failed = [], False
        for skill, action, median in WORKFLOWS[workflow]:
            if failed:
                steps.append(StepSpec(skill, action, "upstream_failed", 0, 0.0))
                continue
            retries = 1 if rng.random() < 0.08 else 0
            retries += 1 if retries and rng.random() < 0.3 else 0
            status = "failed" if rng.random() < 0.04 else "succeeded"
            duration = rng.lognormvariate(0, 0.5) * median * (1 + retries)
            steps.append(StepSpec(skill, action, status, 1 + retries, round(duration, 3)))
            failed = status == "failed"
        status = "succeeded"
        if failed:
            status = "rolled_back" if workflow == "deploy" else "failed"
            if workflow == "deploy":
                for step in steps:
                    if step.status == "succeeded":
                        step.status = "compensated"
        yield RunSpec(workflow, created, status, steps)


def generate(path: Path, runs: int = 100_000, *, seed: int = 1, now: float | None = None) -> Path:
    """A state database at path holding `runs` plausible runs; returns path."""
    write_history(path, plausible_runs(runs, seed=seed, now=now))
    return Path(path)


def measure(runs: int = 100_000, repeat: int = 5, directory: Path | None = None) -> list[Row]:
    """Time the stats queries on a generated history of `runs` runs."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        return measure_on(generate(Path(tmp) / "state.db", runs), runs, repeat)


def measure_on(db: Path, runs: int, repeat: int = 5) -> list[Row]:
    """Time the stats queries on db, a generated history of `runs` runs."""
    from orchestratord.store import stats
    with sqlite3.connect(db) as conn:
        steps, events = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                         for t in ("steps", "events"))
    week = time.time() - 7 * 86400
    cases = [("all history", {}), ("--since 7d", {"since": week}),
             ("--workflow deploy", {"workflow": "deploy"}),
             ("--workflow deploy --since 7d", {"workflow": "deploy", "since": week})]
    rows = []
    for name, kw in cases:
        stats.compute(db, **kw)  # warm the page cache, as a serving daemon has it
        ms = median_time(lambda kw=kw: stats.compute(db, **kw), repeat) * 1000
        target, ok = at_most(ms, STATS_ALL_MS if not kw else TARGET_MS, "ms")
        rows.append(Row("history", f"stats {name}, {fmt_n(runs)} runs", round(ms, 1), "ms",
                        target=target, ok=ok,
                        note=f"{fmt_n(steps)} step rows, {fmt_n(events)} events"))
    last = median_time(lambda: stats.last_successes(db), repeat) * 1000
    target, ok = at_most(last, TARGET_MS, "ms")
    rows.append(Row("history", f"last success per workflow, {fmt_n(runs)} runs",
                    round(last, 1), "ms", target=target, ok=ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(args.runs, args.repeat)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        for r in rows:
            print(f"{r.name:<50} {r.value:>8.1f} {r.unit}  {r.target}  {r.note}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
