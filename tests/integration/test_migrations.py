"""The state database's migrations: a fresh file and one written by an older daemon both
end at the newest schema, keep what they held, and record a step's result in clear once
only (steps.result), the event holding it as shown."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

from orchestratord.store import migrations
from orchestratord.store.migrations import MIGRATIONS
from orchestratord.store.sqlite import Store

CLEAR = {"token": "clear-token-value", "n": 1}
SHOWN = {"token": "***", "n": 1}


def at_version(path: Path, version: int) -> sqlite3.Connection:
    """A database as a daemon whose newest migration was `version` left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for v in range(1, version + 1):
        conn.executescript(f"BEGIN; {MIGRATIONS[v]}; INSERT INTO schema_version VALUES ({v}); "
                           "COMMIT;")
    return conn


def add_run(conn: sqlite3.Connection) -> None:
    """Run r1: step a succeeded (through the triggers of that version), b pending."""
    conn.execute("INSERT INTO runs (id, workflow, status, params, definition, file, created_at) "
                 "VALUES ('r1', 'w', 'running', '{}', '{}', 'f', 1)")
    conn.executemany("INSERT INTO steps (run_id, step_id, position, skill, action, status, "
                     "workflow) VALUES ('r1', ?, ?, 'k', 'x', 'pending', 'w')",
                     [("a", 0), ("b", 1)])
    conn.execute("INSERT INTO events (run_id, ts, type, step_id, attempt, data) "
                 "VALUES ('r1', 2, 'step_started', 'a', 1, '{}')")
    conn.execute("INSERT INTO events (run_id, ts, type, step_id, attempt, data) "
                 "VALUES ('r1', 3, 'step_succeeded', 'a', 1, ?)",
                 (json.dumps({"result": {"x": 42}}),))


async def finish_b_and_check(store: Store) -> None:
    """What the newest schema does: b's result in clear in steps, as shown in its event;
    migration 4's back-off projection still works."""
    await store.retry_scheduled("r1", "b", 1, 30.0)
    await store.step_finished("r1", "b", "succeeded", attempt=1, result=CLEAR, shown=SHOWN)
    steps = {s.step_id: s for s in await store.steps("r1")}
    assert steps["b"].status == "succeeded" and steps["b"].result == CLEAR
    assert steps["b"].not_before is not None
    [end] = [e for e in await store.events("r1") if e.type == "step_succeeded"
             and e.step_id == "b"]
    assert end.data == {"result": SHOWN}
    assert steps["a"].result == {"x": 42}, "a result recorded before stays"


def versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


def test_migrations_are_numbered_one_to_n_without_gaps():
    """Store._migrate applies current+1 .. N in order, never skipping a number: a gap
    would be a migration some databases never get."""
    assert sorted(MIGRATIONS) == list(range(1, len(MIGRATIONS) + 1))


def test_no_two_migrations_share_a_number():
    """Two branches that each add migration N merge without a conflict into one dict
    literal, and Python keeps the last: the other migration would vanish, numbered one to
    N still. Read from the source, where both are still there (ruff's F601 says the same;
    this holds in the package's check phase, which runs no ruff)."""
    source = Path(migrations.__file__)
    [table] = [node.value for node in ast.walk(ast.parse(source.read_text(), str(source)))
               if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MIGRATIONS"]
    assert isinstance(table, ast.Dict)
    numbers = [ast.literal_eval(key) for key in table.keys if key is not None]
    shared = sorted({n for n in numbers if numbers.count(n) > 1})
    assert shared == [], f"migrations numbered {shared} more than once in {source}: renumber one"
    assert len(numbers) == len(MIGRATIONS)


async def test_a_fresh_database_has_every_migration(tmp_path):
    path = tmp_path / "state.db"
    store = await Store.open(path)
    try:
        assert versions(path) == list(range(1, max(MIGRATIONS) + 1))
        await store.create_run("w", {}, "f", {}, [("a", "k", "x"), ("b", "k", "x")])
        [run] = await store.list_runs()
        await store.step_finished(run.id, "b", "succeeded", attempt=1, result=CLEAR, shown=SHOWN)
        [b] = [s for s in await store.steps(run.id) if s.step_id == "b"]
        assert b.result == CLEAR
        assert "clear-token-value" not in json.dumps([e.data for e in await store.events(run.id)])
    finally:
        await store.close()


async def test_a_database_at_migration_4_is_upgraded_keeping_its_runs(tmp_path):
    """Regression: two migrations numbered 4 (one adding the cancel, back-off and process
    columns, one making step results clear only in steps.result): a database at either 4
    would never get the other."""
    path = tmp_path / "state.db"
    conn = at_version(path, 4)
    add_run(conn)
    assert json.loads(conn.execute("SELECT result FROM steps WHERE step_id = 'a'").fetchone()[0]) \
        == {"x": 42}, "the version 4 trigger copied the result"
    conn.close()
    store = await Store.open(path)
    try:
        assert versions(path) == sorted(MIGRATIONS)
        await finish_b_and_check(store)
    finally:
        await store.close()


async def test_a_database_at_migration_5_gets_the_aidb_outbox(tmp_path):
    """Migration 6 on a database main's daemon (at 5) left: the AIDB tables appear, and a
    step ending afterwards is queued in the outbox once history is on."""
    path = tmp_path / "state.db"
    conn = at_version(path, 5)
    add_run(conn)  # at 5 the store writes a's result itself, as it does here:
    conn.execute("UPDATE steps SET result = '{\"x\": 42}' WHERE step_id = 'a'")
    conn.close()
    store = await Store.open(path)
    try:
        assert versions(path) == sorted(MIGRATIONS)
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO aidb_state VALUES ('history', 'on')")
        await finish_b_and_check(store)
        with sqlite3.connect(path) as db:
            queued = db.execute("SELECT interaction_id FROM aidb_outbox").fetchall()
        assert queued == [("orchestrator:r1:b:1",)], "only b ended after history was on"
    finally:
        await store.close()
