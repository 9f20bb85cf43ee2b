"""When the process driving a run dies (kill -9 of an embedded `orchestratorctl run`):
what it left running, what it was asked, and what it was waiting for."""

from __future__ import annotations

import asyncio
import json
import signal

from orchestratord.store.sqlite import Store
from tests.conftest import py_command, write_skill, write_workflow
from tests.integration.embedded import ctl, db, lines
from tests.waiting import died_sync, running, until

# Notes its start, then a beat every 20 ms for a long while on its first attempt.
BEAT = py_command("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    me = os.getpid()
    def note(what):
        with open(p["log"], "a") as f:
            f.write(f"{what} {me}\\n")
    note("start")
    end = time.monotonic() + (60 if os.environ["ORCHESTRATOR_ATTEMPT"] == "1" else 0.3)
    while time.monotonic() < end:
        note("beat")
        time.sleep(0.02)
    note("end")
""")

NOTE = py_command("""
    import json, os, sys
    p = json.load(sys.stdin)
    with open(p["log"], "a") as f:
        f.write(f"after {os.getpid()}\\n")
""")

# Fails with "try again later" on its first attempt, which leaves a mark.
FLAKY = py_command("""
    import json, os, sys
    if os.environ["ORCHESTRATOR_ATTEMPT"] == "1":
        open(json.load(sys.stdin)["mark"], "w").close()
        sys.exit(75)
""")


def killed_mid_step(tmp_path, skill_root):
    """A run of `beat` then `after`, its driver killed while `beat` runs: (state, run, log, pid)."""
    write_skill(skill_root, "w", {"beat": {"command": BEAT}, "note": {"command": NOTE}})
    log, state = tmp_path / "log", tmp_path / "state.db"
    workflow = write_workflow(tmp_path, f"""
        workflow:
          name: long
          steps:
            - {{id: beat, skill: w, action: beat, params: {{log: {log}}}}}
            - {{id: after, skill: w, action: note, params: {{log: {log}}}}}
    """)
    proc = ctl(state, "run", str(workflow))
    first = until("the step's first beat", lambda: [line for line in lines(log) if line.startswith("beat")])
    proc.kill()
    proc.wait(timeout=30)
    old = int(first[0].split()[1])
    assert running(old), "the step outlives its driver: the precondition of these tests"
    [(run_id,)] = db(state, "SELECT id FROM runs")
    return state, run_id, log, old


def test_resume_stops_the_old_copy_before_the_new_one_starts(tmp_path, skill_root):
    """Regression: after kill -9 of the driver, its in-flight command kept running in its
    own session, and after resume the old and the new copy ran side by side."""
    state, run_id, log, old = killed_mid_step(tmp_path, skill_root)
    resumed = ctl(state, "resume", run_id)
    _out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    notes = lines(log)
    starts = [int(line.split()[1]) for line in notes if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == old
    second = notes.index(f"start {starts[1]}")
    assert f"beat {old}" not in notes[second:], "the old copy still ran when the new one started"
    died_sync(old, "the old copy of the step")


def test_cancel_without_a_live_driver_ends_the_run_at_once(tmp_path, skill_root):
    """Regression: `cancel` of a run whose driver died said its driver would stop it, and
    nothing did; the next resume ran the remaining steps to success."""
    state, run_id, log, old = killed_mid_step(tmp_path, skill_root)
    cancel = ctl(state, "cancel", run_id)
    out, err = cancel.communicate(timeout=120)
    assert cancel.returncode == 0, err
    assert f"run {run_id} cancelled" in out
    assert db(state, "SELECT status, cancel_requested FROM runs") == [("cancelled", 0)]
    died_sync(old, "what the dead driver left running")
    assert not [line for line in lines(log) if line.startswith(("after", "start")) and str(old) not in line]


def test_a_recorded_cancel_is_honoured_by_the_next_driver(tmp_path, skill_root):
    """Regression: taking the lease cleared a cancel recorded while no driver lived, so a
    cancel that could not reach a driver was lost (what `systemctl stop` needs)."""
    state, run_id, log, old = killed_mid_step(tmp_path, skill_root)

    async def request() -> None:
        store = await Store.open(state)
        try:
            await store.request_cancel(run_id)
        finally:
            await store.close()
    asyncio.run(request())
    resumed = ctl(state, "resume", run_id)
    _out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 3, err
    assert db(state, "SELECT status FROM runs") == [("cancelled",)]
    assert not [line for line in lines(log) if str(old) not in line], "nothing ran after the cancel"


def test_a_retry_back_off_is_honoured_after_a_crash(tmp_path, skill_root):
    """Regression: a crash during a retry back-off made the resumed attempt start at once."""
    write_skill(skill_root, "w", {"flaky": {"command": FLAKY}})
    state, mark = tmp_path / "state.db", tmp_path / "mark"
    workflow = write_workflow(tmp_path, f"""
        workflow:
          name: patient
          steps:
            - {{id: flaky, skill: w, action: flaky, params: {{mark: {mark}}},
               retry: {{attempts: 2, backoff: fixed, initial: 4s, retry_on: [failed]}}}}
    """)
    proc = ctl(state, "run", str(workflow))
    until("the first attempt", mark.exists)
    retry = until("the back-off to be recorded", lambda: db(
        state, "SELECT ts, data FROM events WHERE type = 'step_retry'"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ts, data = retry[0]
    not_before = ts + json.loads(data)["delay"]
    [(run_id,)] = db(state, "SELECT id FROM runs")
    resumed = ctl(state, "resume", run_id)
    _out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    [(started,)] = db(state, "SELECT started_at FROM attempts WHERE attempt = 2")
    assert started >= not_before, f"attempt 2 started {not_before - started:.2f} s too early"

