"""Group commit: events appended together share one transaction, and each caller
still returns only once its own event is committed (orchestratord/group_commit.py)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from orchestratord.errors import StoreError
from orchestratord.store import Store


async def _traced(store: Store) -> list[str]:
    statements: list[str] = []
    await store._conn.run(lambda conn: conn.set_trace_callback(statements.append))
    return statements


async def test_events_appended_together_share_one_commit_and_are_durable_on_return(tmp_path):
    store = await Store.open(tmp_path / "state.db")
    try:
        run_id = await store.create_run("w", {}, "w.yaml", {}, [])
        statements = await _traced(store)
        other = sqlite3.connect(tmp_path / "state.db")

        async def append(i: int) -> None:
            seq = await store.record_event(run_id, "note", data={"i": i})
            # committed when append returns: another connection reads it
            assert other.execute("SELECT data ->> '$.i' FROM events WHERE seq = ?",
                                 (seq,)).fetchone() == (i,)

        await asyncio.gather(*(append(i) for i in range(50)))
        # The first is written alone, as one autocommit statement (nothing else was
        # pending); the other 49, appended meanwhile, in one transaction.
        transactions = [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")]
        assert transactions == ["BEGIN IMMEDIATE", "COMMIT"]
        seqs = [r[0] for r in other.execute(
            "SELECT data ->> '$.i' FROM events WHERE type = 'note' ORDER BY seq")]
        assert seqs == list(range(50))  # in the order appended
        other.close()
    finally:
        await store.close()


async def test_an_event_that_fails_in_a_batch_fails_only_its_own_caller(tmp_path):
    store = await Store.open(tmp_path / "state.db")
    try:
        run_id = await store.create_run("w", {}, "w.yaml", {}, [("a", "s", "x"), ("b", "s", "x")])
        results = await asyncio.gather(
            store.attempt_started(run_id, "a", 1, {}),
            store.attempt_started(run_id, "a", 1, {}),  # the same attempt twice: a PK conflict
            store.attempt_started(run_id, "b", 1, {}),
            return_exceptions=True)
        assert isinstance(results[1], StoreError) and "UNIQUE" in str(results[1])
        assert all(isinstance(r, int) for r in (results[0], results[2]))
        attempts = await store.attempts(run_id)
        assert sorted((a.step_id, a.attempt, a.status) for a in attempts) == [
            ("a", 1, "running"), ("b", 1, "running")]
        assert [e.type for e in await store.events(run_id)].count("step_started") == 2
    finally:
        await store.close()


async def test_close_waits_for_a_batch_being_written(tmp_path):
    store = await Store.open(tmp_path / "state.db")
    run_id = await store.create_run("w", {}, "w.yaml", {}, [])
    appends = [asyncio.create_task(store.record_event(run_id, "note")) for _ in range(20)]
    await asyncio.sleep(0)  # all twenty queued
    await store.close()
    assert all(isinstance(t.result(), int) for t in appends)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE type = 'note'").fetchone() == (20,)
