"""The store reads its rows by column name: a table rebuilt with its columns in another
order (as a migration that cannot ALTER must do in SQLite) reads back the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestratord.store.sqlite import Store


def reorder_columns(path: Path, table: str) -> None:
    """Rebuild `table` with its columns in reverse order, keeping rows, indexes and triggers."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        schema = conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN "
                              "('index', 'trigger') AND sql IS NOT NULL", (table,)).fetchall()
        conn.executescript(
            "PRAGMA foreign_keys = OFF; PRAGMA legacy_alter_table = ON; BEGIN; "
            f"CREATE TABLE reordered AS SELECT {', '.join(reversed(columns))} FROM {table}; "
            f"DROP TABLE {table}; ALTER TABLE reordered RENAME TO {table}; "
            + "".join(f"{sql};" for (sql,) in schema) + " COMMIT;")
        assert [row[1] for row in conn.execute(f"PRAGMA table_info({table})")] == columns[::-1]
    finally:
        conn.close()


async def test_rows_read_back_whatever_the_order_of_their_columns(tmp_path: Path) -> None:
    """Regression: rows were unpacked by position, so a rebuilt table shifted every field."""
    path = tmp_path / "state.db"
    store = await Store.open(path)
    run_id = await store.create_run("w", {"workflow": {"name": "w"}}, "w.yaml", {"n": 1},
                                    [("a", "k", "act")])
    await store.attempt_started(run_id, "a", 1, {"p": 2})
    await store.attempt_failed(run_id, "a", 1, status="failed", error="boom", exit_code=3,
                               stderr_tail="tail")
    await store.close()
    for table in ("runs", "steps", "attempts", "events"):
        reorder_columns(path, table)

    store = await Store.open(path)
    try:
        run = await store.get_run(run_id)
        assert (run.id, run.workflow, run.params, run.definition, run.file) == \
            (run_id, "w", {"n": 1}, {"workflow": {"name": "w"}}, "w.yaml")
        [step] = await store.steps(run_id)
        assert (step.step_id, step.skill, step.action, step.params) == ("a", "k", "act", {"p": 2})
        [attempt] = await store.attempts(run_id)
        assert (attempt.step_id, attempt.attempt, attempt.error, attempt.exit_code,
                attempt.stderr_tail) == ("a", 1, "boom", 3, "tail")
        events = await store.events(run_id)
        assert [e.type for e in events] == ["run_created", "step_started", "attempt_failed"]
        assert events[1].data == {"params": {"p": 2}} and events[1].step_id == "a"
    finally:
        await store.close()
