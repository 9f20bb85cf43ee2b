"""Group commit: events appended together share one transaction, and each caller
still returns only once its own event is committed (orchestratord/store/group_commit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestratord.core.errors import StoreError
from orchestratord.store.sqlite import Store


@contextlib.contextmanager
def round_trips() -> Iterator[list]:
    """The calls run on aiosqlite's thread meanwhile: one round trip each."""
    import aiosqlite.core
    calls: list = []
    original = aiosqlite.core.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        calls.append(fn)
        return await original(self, fn, *args, **kwargs)
    aiosqlite.core.Connection._execute = counted
    try:
        yield calls
    finally:
        aiosqlite.core.Connection._execute = original


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


async def test_a_step_end_in_a_batch_keeps_its_result_in_clear_and_shows_it_masked(tmp_path):
    """Migration 5: the clear result lives in steps.result only, written in the step
    end's own transaction; the event holds it as shown. Batched ends do the same."""
    store = await Store.open(tmp_path / "state.db")
    try:
        run_id = await store.create_run("w", {}, "w.yaml", {}, [("a", "s", "x"), ("b", "s", "x")])
        statements = await _traced(store)
        later = store.step_finished_later(run_id, "a", "succeeded", attempt=None,
                                          result={"token": "clear-a"}, shown={"token": "***"})
        await asyncio.gather(later, store.step_finished(
            run_id, "b", "succeeded", attempt=None, result={"token": "clear-b"},
            shown={"token": "***"}))
        assert statements.count("BEGIN IMMEDIATE") == 1  # both in one transaction
        steps = {s.step_id: s for s in await store.steps(run_id)}
        assert steps["a"].result == {"token": "clear-a"} and steps["b"].result == {
            "token": "clear-b"}
        assert {s.status for s in steps.values()} == {"succeeded"}
        ends = [e for e in await store.events(run_id) if e.type == "step_succeeded"]
        assert [e.data for e in ends] == [{"result": {"token": "***"}}] * 2
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


def _chain(n: int, db: Path, tmp_path: Path):
    from orchestratord.language.loader import load_data
    from orchestratord.skills import Registry
    steps = [{"id": f"s{i}", "skill": "t", "action": "check",
              "params": {"db": str(db), "steps": [f"s{i - 1}"]}} for i in range(n)]
    return load_data({"skills": {"t": {"actions": {"check": {
                          "python": "tests.integration.actions:committed_before_me"}}}},
                      "workflow": {"name": "chain", "steps": steps}},
                     str(tmp_path / "chain.json"), Registry(), tmp_path)


async def test_a_chain_commits_once_per_step_and_each_outcome_before_the_next_runs(tmp_path):
    from orchestratord.engine.engine import Engine
    db = tmp_path / "state.db"
    store = await Store.open(db)
    n = 30
    try:
        with round_trips() as calls:
            result = await Engine(store).run(_chain(n, db, tmp_path))
    finally:
        await store.close()
    assert result.status == "succeeded"
    with sqlite3.connect(db) as conn:
        seen = dict(conn.execute("SELECT step_id, result FROM steps WHERE run_id = ?",
                                 (result.run_id,)).fetchall())
    # Each step read, from another connection, the step before it already succeeded.
    for i in range(1, n):
        assert seen[f"s{i}"] == f'{{"s{i - 1}":"succeeded"}}', i
    # A step's end and the next step's start share a transaction: about one round trip
    # to the database thread a step (it was two), plus the run's own few.
    assert len(calls) <= n + 20, len(calls)  # two a step would be 2n + 16



async def test_a_run_reads_its_rows_once_and_releases_its_lease_with_its_end(tmp_path):
    """Regression: a driver read its run and its steps in two round trips, the cancel
    flag in a third, and released its lease in a transaction after the run's end; now
    the run and its steps are one read, the flag comes with the lease, and the lease
    goes in the end's own transaction (a chain of 3: 12 round trips, now 9)."""
    from orchestratord.engine.engine import Engine
    db = tmp_path / "state.db"
    store = await Store.open(db)
    try:
        statements = await _traced(store)
        with round_trips() as calls:
            result = await Engine(store).run(_chain(3, db, tmp_path))
    finally:
        await store.close()
    assert result.status == "succeeded"
    assert len(calls) <= 9, len(calls)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT lease_owner, lease_expires FROM runs").fetchall() == [
            (None, None)]
    # released with the end event, between the same BEGIN and COMMIT, the last one
    last = statements[len(statements) - 1 - statements[::-1].index("BEGIN IMMEDIATE"):]
    assert last[-1] == "COMMIT", last
    assert any("'run_succeeded'" in s for s in last), last
    assert any(s.startswith("UPDATE runs SET lease_owner = NULL") for s in last), last

async def test_recording_a_run_and_taking_its_lease_are_one_round_trip_each(tmp_path):
    from orchestratord.core.errors import LeaseHeld
    store = await Store.open(tmp_path / "state.db")
    try:
        with round_trips() as calls:
            run_id = await store.create_run("w", {}, "w.yaml", {},
                                            [("a", "s", "x"), ("b", "s", "x")])
            await store.acquire_lease(run_id, "me", 60)
        assert len(calls) == 2
        # a held lease is refused, and the refusal leaves nothing half done
        with pytest.raises(LeaseHeld, match="being driven by me"):
            await store.acquire_lease(run_id, "someone-else", 60)
        assert (await store.get_run(run_id)).lease_owner == "me"
        assert [s.step_id for s in await store.steps(run_id)] == ["a", "b"]
        await store.record_event(run_id, "note")  # the connection is usable: no open transaction
    finally:
        await store.close()


async def test_a_chain_batch_writes_its_two_events_without_savepoints(tmp_path):
    """A step's end (required: its failure fails the batch) and the next step's start
    (one statement, which SQLite undoes alone if it fails) need no savepoint: one
    transaction holds the two events' statements and nothing else."""
    store = await Store.open(tmp_path / "state.db")
    try:
        run_id = await store.create_run("w", {}, "w.yaml", {}, [("a", "s", "x"), ("b", "s", "x")])
        await store.attempt_started(run_id, "a", 1, {})
        statements = await _traced(store)
        end = store.step_finished_later(run_id, "a", "succeeded", attempt=1, result=None)
        await asyncio.gather(end, store.attempt_started(run_id, "b", 1, {}))
        verbs = {s.split()[0] for s in statements}  # (a trigger traces as its statement)
        assert verbs == {"BEGIN", "INSERT", "UPDATE", "COMMIT"}, statements
        assert statements.count("BEGIN IMMEDIATE") == 1
        # A start that fails beside a required end fails alone; the end is committed.
        end = store.step_finished_later(run_id, "b", "succeeded", attempt=1, result=None)
        again = store.attempt_started(run_id, "a", 1, {})  # the same attempt twice
        results = await asyncio.gather(end, again, return_exceptions=True)
        assert isinstance(results[1], StoreError) and "UNIQUE" in str(results[1])
        assert {s.step_id: s.status for s in await store.steps(run_id)} == {
            "a": "succeeded", "b": "succeeded"}
        assert [e.type for e in await store.events(run_id)].count("step_started") == 2
    finally:
        await store.close()
