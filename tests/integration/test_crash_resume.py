"""kill -9 torture: the engine process dies at random moments and the run still ends well."""

from __future__ import annotations

import random
import signal
import time

from tests.conftest import py_command, write_skill, write_workflow
from tests.integration.embedded import ctl, db
from tests.waiting import until

STEP = py_command("""
    import json, os, random, sys, time
    p = json.load(sys.stdin)
    key = os.environ["ORCHESTRATOR_IDEMPOTENCY_KEY"]
    with open(p["ledger"], "a") as f:
        f.write(key + "\\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(random.uniform(0.1, 0.3))
    print(json.dumps({"key": key}))
""")


def test_sigkill_at_random_moments_never_reruns_finished_steps(tmp_path, skill_root):
    write_skill(skill_root, "work", {"step": {"command": STEP}})
    ledger, state = tmp_path / "ledger", tmp_path / "state.db"
    items = []
    for i in range(30):
        if i % 10 == 5:  # some parallel groups, so several steps are in flight at once
            items.append(f"  - parallel:\n      - {{id: s{i}a, skill: work, action: step, params: {{ledger: {ledger}}}}}\n"
                         f"      - {{id: s{i}b, skill: work, action: step, params: {{ledger: {ledger}}}}}")
        else:
            items.append(f"  - {{id: s{i}, skill: work, action: step, params: {{ledger: {ledger}}}}}")
    workflow = write_workflow(tmp_path, "workflow:\n name: torture\n steps:\n" + "\n".join(items) + "\n")
    step_ids = [r for line in items for r in __import__("re").findall(r"id: (s\w+)", line)]

    rng = random.Random(1234)
    run_id = None
    checkpoints = []  # (ledger length, steps recorded succeeded) after each kill
    for _ in range(20):
        if run_id is None:
            proc = ctl(state, "run", str(workflow))
            # the run is recorded once its first step has started
            until("the first step to start (or the CLI to exit)",
                  lambda: ledger.exists() or proc.poll() is not None)
        else:
            proc = ctl(state, "resume", run_id)
            # the interpreter and imports take about half a second: aim past them
            time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        runs = db(state, "SELECT id FROM runs") if state.exists() else []
        if runs:
            run_id = runs[0][0]
            done = {r[0] for r in db(state, "SELECT step_id FROM steps WHERE run_id = ? AND "
                                              "status = 'succeeded'", run_id)}
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            checkpoints.append((len(lines), done))
            if len(done) == len(step_ids):
                break

    if len(checkpoints[-1][1]) < len(step_ids):
        final = ctl(state, "resume", run_id)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
    status = db(state, "SELECT status FROM runs WHERE id = ?", run_id)[0][0]
    assert status == "succeeded"

    lines = ledger.read_text().splitlines()
    keys = {f"{run_id}/{sid}" for sid in step_ids}
    assert set(lines) == keys, "every step ran, each with its idempotency key"
    for length, done in checkpoints:
        for line in lines[length:]:
            step = line.split("/", 1)[1]
            assert step not in done, f"{step} ran again after it was recorded succeeded"
    assert db(state, "PRAGMA integrity_check") == [("ok",)]
    mid_run = sum(1 for _, done in checkpoints if len(done) < len(step_ids))
    assert mid_run >= 15, f"only {mid_run} kills landed mid-run; the test proved too little"


def test_a_live_driver_keeps_its_run(tmp_path, skill_root):
    """Two processes must never drive one run: the second is refused while the first lives."""
    write_skill(skill_root, "work", {"step": {"command": STEP}})
    ledger, state = tmp_path / "ledger", tmp_path / "state.db"
    steps = "\n".join(f"  - {{id: s{i}, skill: work, action: step, params: {{ledger: {ledger}}}}}"
                      for i in range(20))
    workflow = write_workflow(tmp_path, f"workflow:\n name: held\n steps:\n{steps}\n")
    first = ctl(state, "run", str(workflow))
    try:
        until("the first driver to start a step", ledger.exists)
        [(run_id,)] = db(state, "SELECT id FROM runs")
        second = ctl(state, "resume", run_id)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 7, err
        assert f"run {run_id} is being driven by" in err
    finally:
        first.kill()
        first.wait(timeout=30)
