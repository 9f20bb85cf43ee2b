"""The engine against real SQLite files and real child processes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest

from orchestratord.engine.context import MESSAGE_IDS
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover
from orchestratord.store.sqlite import Store
from tests.conftest import py_command, write_skill, write_workflow
from tests.integration import actions
from tests.waiting import died, file_words, process_state, until_async

WAIT_FOR_PEER = py_command("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    open(p["me"], "w").close()
    deadline = time.monotonic() + 10
    while not os.path.exists(p["peer"]):
        if time.monotonic() > deadline:
            sys.exit("peer never started: steps did not run in parallel")
        time.sleep(0.005)
    print(json.dumps({"started": True}))
""")

COUNT_AND_FAIL = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write(p.get("tag", "x") + "\\n")
    n = sum(1 for _ in open(p["ledger"]))
    if n <= p.get("fail_times", 0):
        sys.exit(p.get("code", 75))
    print(json.dumps({"attempts_seen": n}))
""")

IGNORE_TERM = py_command("""
    import json, os, signal, subprocess, sys, time
    p = json.load(sys.stdin)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(p["pids"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
""")

LEDGER = py_command("""
    import json, os, sys
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write(p["tag"] + "\\n")
    if p.get("fail_if_exists") and os.path.exists(p["fail_if_exists"]):
        sys.exit("told to fail")
    print(json.dumps({"tag": p["tag"]}))
""")


@pytest.fixture
def skills(skill_root):
    write_skill(skill_root, "t", {
        "peer": {"command": WAIT_FOR_PEER},
        "count": {"command": COUNT_AND_FAIL},
        "stubborn": {"command": IGNORE_TERM},
        "ledger": {"command": LEDGER, "rollback": {"action": "undo"}},
        "undo": {"command": LEDGER},
        "track": {"python": "tests.integration.actions:track"},
        "echo": {"python": "tests.integration.actions:echo"},
        "noop": {"python": "tests.integration.actions:noop"},
        "fail": {"python": "tests.integration.actions:fail"},
    })
    return discover([skill_root])


def load(tmp_path: Path, registry, text: str):
    return load_workflow(write_workflow(tmp_path, text), registry=registry)


async def assert_no_survivors(pids_file: Path) -> None:
    """The step's own child is reaped (no zombie); its grandchild dies."""
    child, grandchild = map(int, pids_file.read_text().split())
    assert process_state(child) is None, f"step process {child} left behind"
    await died(grandchild, "the step's grandchild, which ignores SIGTERM")


async def test_diamond_runs_branches_truly_in_parallel(tmp_path, store, skills):
    d = load(tmp_path, skills, f"""
        workflow:
          name: diamond
          steps:
            - {{id: top, skill: t, action: noop}}
            - parallel:
                - {{id: left, skill: t, action: peer, params: {{me: {tmp_path}/l, peer: {tmp_path}/r}}}}
                - {{id: right, skill: t, action: peer, params: {{me: {tmp_path}/r, peer: {tmp_path}/l}}}}
            - {{id: bottom, skill: t, action: echo, params: {{both: "{{{{ steps['parallel-1'].result }}}}"}}}}
    """)
    result = await Engine(store).run(d)
    assert result.status == "succeeded", result
    steps = {s.step_id: s for s in await store.steps(result.run_id)}
    assert steps["bottom"].result["params"]["both"] == {"left": {"started": True},
                                                        "right": {"started": True}}
    # the bottom step started only after both branches had committed their end
    assert steps["bottom"].started_at >= max(steps["left"].finished_at, steps["right"].finished_at)
    assert steps["left"].started_at >= steps["top"].finished_at


async def test_concurrency_limit_bounds_a_wide_fan_out(tmp_path, store, skills):
    members = "\n".join(f"        - {{id: m{i}, skill: t, action: track}}" for i in range(20))
    d = load(tmp_path, skills, "workflow:\n  name: wide\n  concurrency: 5\n  steps:\n"
             "    - parallel:\n" + members.replace("        -", "        -"))
    actions.LIVE.update(running=0, max=0)
    result = await Engine(store).run(d)
    assert result.status == "succeeded"
    assert actions.LIVE["max"] == 5



async def test_active_lists_the_first_runs_started_and_counts_them_all(tmp_path, store, skills):
    """Regression: the daemon's status line, updated on every event, listed every active
    run to show five: with a thousand runs at once, each event walked them all."""
    d = load(tmp_path, skills, "workflow:\n  name: held\n  steps:\n"
             "    - {id: a, skill: t, action: track, params: {hold: 30}}\n")
    engine = Engine(store)
    runs = []
    for _ in range(3):
        run_id = await engine.start(d)
        runs.append(asyncio.create_task(engine.drive(run_id, d)))
        await until_async(f"run {run_id} driven", lambda r=run_id: r in engine.active())
    try:
        assert engine.active_count() == 3
        assert list(engine.active(limit=2)) == list(engine.active())[:2]
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


def test_settle_heap_keeps_loaded_definitions_out_of_full_collections(tmp_path, skills):
    """Regression: every full collection walked each loaded definition, object by
    object (a fan-out of 10,000: five of them, 0.75 s of a 2.8 s run). Once settled,
    what was loaded is frozen, and what is allocated after is collected as before."""
    import gc

    from orchestratord.engine.engine import settle_heap
    members = "\n".join(f"        - {{id: m{i}, skill: t, action: track}}" for i in range(200))
    d = load(tmp_path, skills, "workflow:\n  name: wide\n  steps:\n    - parallel:\n" + members)
    try:
        settle_heap()
        tracked = {id(o) for o in gc.get_objects()}  # what a full collection walks
        assert id(d.graph.nodes["m7"].step) not in tracked
        assert gc.get_freeze_count() > 0
        garbage = [[]]
        garbage[0].append(garbage)  # a cycle made after: still collected
        del garbage
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()

async def test_retry_with_backoff_follows_the_policy(tmp_path, store, skills):
    ledger = tmp_path / "ledger"
    d = load(tmp_path, skills, f"""
        workflow:
          name: retry
          steps:
            - skill: t
              action: count
              params: {{ledger: {ledger}, fail_times: 3}}
              retry: {{attempts: 5, backoff: exponential, initial: 2s, factor: 3, max_delay: 10s}}
    """)
    delays = []

    async def fake_sleep(seconds):
        delays.append(seconds)

    result = await Engine(store, sleep=fake_sleep).run(d)
    assert result.status == "succeeded"
    assert delays == [2, 6, 10]  # 2 * 3**n, capped at max_delay
    attempts = await store.attempts(result.run_id)
    assert [a.status for a in attempts] == ["failed", "failed", "failed", "succeeded"]
    assert [a.exit_code for a in attempts][:3] == [75, 75, 75]
    events = [e.type for e in await store.events(result.run_id)]
    assert events.count("step_retry") == 3


async def test_non_retryable_failure_is_not_retried(tmp_path, store, skills):
    ledger = tmp_path / "ledger"
    d = load(tmp_path, skills, f"""
        workflow:
          name: retry
          steps:
            - skill: t
              action: count
              params: {{ledger: {ledger}, fail_times: 3, code: 3}}
              retry: {{attempts: 5, initial: 0}}
    """)
    result = await Engine(store).run(d)
    assert result.status == "failed"
    assert ledger.read_text().count("x") == 1
    [step] = await store.steps(result.run_id)
    assert "exited with status 3" in step.error


async def test_timeout_kills_a_step_that_ignores_sigterm(tmp_path, store, skills):
    pids = tmp_path / "pids"
    d = load(tmp_path, skills, f"""
        workflow:
          name: stubborn
          steps:
            - {{skill: t, action: stubborn, timeout: 1s, params: {{pids: {pids}}}}}
    """)
    result = await Engine(store, kill_grace=0.3).run(d)
    assert result.status == "failed"
    [attempt] = await store.attempts(result.run_id)
    assert attempt.status == "timeout"
    await assert_no_survivors(pids)


async def test_when_false_skips_and_propagates(tmp_path, store, skills):
    d = load(tmp_path, skills, """
        workflow:
          name: cond
          params: {deploy: false}
          steps:
            - {id: gate, skill: t, action: echo, params: {x: 1}}
            - {id: maybe, skill: t, action: noop, when: "params.deploy"}
            - {id: after, skill: t, action: noop}
            - {id: anyway, skill: t, action: noop, depends_on: [maybe], trigger_rule: none_failed}
            - {id: checked, skill: t, action: noop, depends_on: [gate], when: "steps.gate.result.params.x == 1"}
    """)
    result = await Engine(store).run(d)
    status = {s.step_id: s.status for s in await store.steps(result.run_id)}
    assert result.status == "succeeded"
    assert status == {"gate": "succeeded", "maybe": "skipped", "after": "skipped",
                      "anyway": "succeeded", "checked": "succeeded"}
    result = await Engine(store).run(d, {"deploy": True})
    assert {s.status for s in await store.steps(result.run_id)} == {"succeeded"}


async def test_failure_stops_only_its_dependents(tmp_path, store, skills):
    d = load(tmp_path, skills, """
        workflow:
          name: partial
          steps:
            - {id: broken, skill: t, action: fail, depends_on: []}
            - {id: blocked, skill: t, action: noop, depends_on: [broken]}
            - {id: cleanup, skill: t, action: noop, depends_on: [blocked], trigger_rule: all_done}
            - {id: on-fail, skill: t, action: noop, depends_on: [broken], trigger_rule: one_failed}
            - {id: independent, skill: t, action: noop, depends_on: []}
            - {id: tolerated, skill: t, action: fail, depends_on: [], continue_on_error: true}
            - {id: after-tolerated, skill: t, action: noop, depends_on: [tolerated]}
    """)
    result = await Engine(store).run(d)
    status = {s.step_id: s.status for s in await store.steps(result.run_id)}
    assert status == {"broken": "failed", "blocked": "upstream_failed", "cleanup": "succeeded",
                      "on-fail": "succeeded", "independent": "succeeded", "tolerated": "failed",
                      "after-tolerated": "succeeded"}
    assert result.status == "failed" and result.error == "failed steps: broken"


async def test_a_failed_step_keeps_its_result_for_later_steps_and_the_record(
        tmp_path, store, skills):
    # A health check fails with the list of what it checked: that list is the diagnosis.
    d = load(tmp_path, skills, """
        workflow:
          name: diagnosis
          steps:
            - id: check
              skill: t
              action: fail
              params: {message: unhealthy, result: {healthy: false, failing: [disk]}}
              continue_on_error: true
            - {id: report, skill: t, action: echo, params: {failing: "{{ steps.check.result.failing }}"}}
    """)
    result = await Engine(store).run(d)
    steps = {s.step_id: s for s in await store.steps(result.run_id)}
    assert steps["check"].status == "failed" and steps["check"].error == "unhealthy"
    assert steps["check"].result == {"healthy": False, "failing": ["disk"]}
    assert steps["report"].result["params"] == {"failing": ["disk"]}


async def test_rollback_compensates_in_reverse_completion_order(tmp_path, store, skills):
    ledger = tmp_path / "ledger"
    steps = "\n".join(
        f"    - {{id: s{i}, skill: t, action: ledger, params: {{ledger: {ledger}, tag: do{i}}},"
        f" rollback: {{action: undo, params: {{ledger: {ledger}, tag: undo{i}}}}}}}"
        for i in range(3))
    d = load(tmp_path, skills, f"workflow:\n  name: saga\n  on_failure: rollback\n  steps:\n{steps}\n"
             "    - {id: boom, skill: t, action: fail}\n")
    result = await Engine(store).run(d)
    assert result.status == "rolled_back"
    assert ledger.read_text().split() == ["do0", "do1", "do2", "undo2", "undo1", "undo0"]
    status = {s.step_id: s.status for s in await store.steps(result.run_id)}
    assert status == {"s0": "compensated", "s1": "compensated", "s2": "compensated",
                      "boom": "failed"}


async def test_failed_compensation_is_reported(tmp_path, store, skills):
    ledger = tmp_path / "ledger"
    d = load(tmp_path, skills, f"""
        workflow:
          name: saga
          on_failure: rollback
          steps:
            - {{id: a, skill: t, action: ledger, params: {{ledger: {ledger}, tag: a}},
                rollback: {{action: fail}}}}
            - {{id: b, skill: t, action: fail}}
    """)
    result = await Engine(store).run(d)
    assert result.status == "rollback_failed"
    assert {s.step_id: s.status for s in await store.steps(result.run_id)}["a"] == "compensation_failed"


async def test_resume_redrives_failed_steps_only(tmp_path, store, skills):
    ledger, flag = tmp_path / "ledger", tmp_path / "broken"
    flag.touch()
    d = load(tmp_path, skills, f"""
        workflow:
          name: redrive
          steps:
            - {{id: first, skill: t, action: ledger, params: {{ledger: {ledger}, tag: first}}}}
            - {{id: second, skill: t, action: ledger,
                params: {{ledger: {ledger}, tag: second, fail_if_exists: {flag}}}}}
            - {{id: third, skill: t, action: ledger, params: {{ledger: {ledger}, tag: third}}}}
    """)
    engine = Engine(store)
    failed = await engine.run(d)
    assert failed.status == "failed"
    flag.unlink()
    resumed = await engine.resume(failed.run_id, d)
    assert resumed.status == "succeeded"
    assert ledger.read_text().split() == ["first", "second", "second", "third"]


async def test_cancel_terminates_running_steps(tmp_path, store, skills):
    pids = tmp_path / "pids"
    d = load(tmp_path, skills, f"""
        workflow:
          name: cancel-me
          steps:
            - {{skill: t, action: stubborn, params: {{pids: {pids}}}}}
    """)
    engine = Engine(store, kill_grace=0.2)
    task = asyncio.create_task(engine.run(d))
    await until_async("the step to write its pids", file_words(pids, 2))
    [run] = await store.list_runs()
    await store.request_cancel(run.id)  # as `orchestratorctl cancel` does from elsewhere
    result = await asyncio.wait_for(task, 10)
    assert result.status == "cancelled"
    await assert_no_survivors(pids)


async def test_workflow_timeout(tmp_path, store, skills):
    pids = tmp_path / "pids"
    d = load(tmp_path, skills, f"""
        workflow:
          name: slow
          timeout: 0.5s
          steps:
            - {{skill: t, action: stubborn, params: {{pids: {pids}}}}}
    """)
    result = await Engine(store, kill_grace=0.2).run(d)
    assert result.status == "timed_out"
    [step] = await store.steps(result.run_id)
    assert step.status == "cancelled" and step.error == "workflow timeout expired"


async def test_params_keep_native_types_and_outputs(tmp_path, store, skills):
    d = load(tmp_path, skills, """
        workflow:
          name: data
          params:
            packages: {default: [vim, git], type: array}
            count: 3
          outputs:
            got: "{{ steps.use.result.params.list }}"
            summary: "{{ params.count }} packages"
          steps:
            - {id: use, skill: t, action: echo, params: {list: "{{ params.packages }}", n: "{{ params.count }}"}}
    """)
    result = await Engine(store).run(d, {"count": 2})
    assert result.outputs == {"got": ["vim", "git"], "summary": "2 packages"}
    [step] = await store.steps(result.run_id)
    assert step.result["params"] == {"list": ["vim", "git"], "n": 2}
    assert step.result["key"] == f"{result.run_id}/use"


async def test_event_log_is_append_only(tmp_path, store, skills):
    import sqlite3
    d = load(tmp_path, skills, "workflow:\n  name: e\n  steps:\n    - {skill: t, action: noop}\n")
    result = await Engine(store).run(d)
    before = await store.events(result.run_id)
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE run_id = ?", (result.run_id,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET type = 'run_failed' WHERE run_id = ? AND "
                         "type = 'run_succeeded'", (result.run_id,))
        conn.commit()
    finally:
        conn.close()
    assert [e.type for e in before] == ["run_created", "run_started", "step_started",
                                        "step_succeeded", "run_succeeded"]
    assert await store.events(result.run_id) == before, "the history changed"


async def test_skill_concurrency_limit_holds_across_runs(tmp_path, store, skill_root):
    write_skill(skill_root, "serial", {"track": {"python": "tests.integration.actions:track"}},
                concurrency=1)
    d = load(tmp_path, discover([skill_root]), """
        workflow:
          name: serial
          steps:
            - parallel:
                - {id: a, skill: serial, action: track}
                - {id: b, skill: serial, action: track}
                - {id: c, skill: serial, action: track}
    """)
    actions.LIVE.update(running=0, max=0)
    engine = Engine(store)
    results = await asyncio.gather(engine.run(d), engine.run(d))
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert actions.LIVE["max"] == 1


async def test_a_newer_schema_is_refused(tmp_path):
    """Regression: a refused database must close its connection, or its thread hangs the process."""
    import sqlite3

    from orchestratord.core.errors import StoreError
    path = tmp_path / "state.db"
    await (await Store.open(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="has schema version 999, newer than this orchestratord"):
        await Store.open(path)


async def test_run_records_carry_random_message_ids_and_attempts(tmp_path, store, skills, caplog):
    """Regression: the run MESSAGE_IDs were hand-patterned (e1f2a3b4c5d6...), not the random
    128-bit ids journald catalogs expect, and "step succeeded" records had no ATTEMPT."""
    caplog.set_level(logging.INFO, logger="orchestratord.engine")
    d = load(tmp_path, skills, "workflow:\n  name: ids\n  steps:\n    - {id: a, skill: t, action: noop}\n")
    await Engine(store).run(d)
    [fields] = [r.fields for r in caplog.records if r.getMessage() == "step a succeeded"]
    assert fields["ATTEMPT"] == 1
    ids = {r.fields.get("MESSAGE_ID") for r in caplog.records} - {None}
    assert ids == {MESSAGE_IDS["run_started"], MESSAGE_IDS["run_succeeded"]}
    for mid in MESSAGE_IDS.values():
        u = uuid.UUID(hex=mid)
        assert (u.version, u.variant, u.hex) == (4, uuid.RFC_4122, mid)
        # Counting patterns (digits two apart differing by one) are rare in random hex:
        # at most 13 in 100000 uuid4s; a hand-made id like the old ones has 16 to 21.
        steps = sum(abs(int(mid[i + 2], 16) - int(mid[i], 16)) == 1 for i in range(30))
        assert steps < 12, f"MESSAGE_ID {mid} looks hand-made"
    assert len(set(MESSAGE_IDS.values())) == len(MESSAGE_IDS)
