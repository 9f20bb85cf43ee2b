"""A run killed while it rolls back: resumed, it finishes the rollback and only that."""

from __future__ import annotations

import collections
import random
import signal
import time

from tests.conftest import py_command, write_skill, write_workflow
from tests.integration.embedded import ctl, db, lines
from tests.waiting import until

STEPS = 6

FORWARD = py_command("""
    import json, os, sys
    p = json.load(sys.stdin)
    with open(p["forward"], "a") as f:
        f.write(os.environ["ORCHESTRATOR_IDEMPOTENCY_KEY"] + "\\n")
""")

# A compensation as the contract asks: idempotent by its key. It notes each start, works
# a while, and records its completion unless its key completed already.
UNDO = py_command("""
    import json, os, random, sys, time
    p = json.load(sys.stdin)
    key = os.environ["ORCHESTRATOR_IDEMPOTENCY_KEY"]
    with open(p["starts"], "a") as f:
        f.write(key + "\\n")
    time.sleep(random.uniform(0.2, 0.6))
    done = open(p["done"]).read().split() if os.path.exists(p["done"]) else []
    if key not in done:
        with open(p["done"], "a") as f:
            f.write(key + "\\n")
""")

FAIL = py_command("import sys; sys.exit('boom')")


def saga(tmp_path, skill_root):
    write_skill(skill_root, "saga", {"do": {"command": FORWARD}, "undo": {"command": UNDO},
                                     "fail": {"command": FAIL}})
    files = {name: tmp_path / name for name in ("forward", "starts", "done")}
    steps = "\n".join(
        f"    - {{id: s{i}, skill: saga, action: do, params: {{forward: {files['forward']}}},"
        f" rollback: {{action: undo, params: {{starts: {files['starts']}, done: {files['done']}}}}}}}"
        for i in range(STEPS))
    workflow = write_workflow(tmp_path, "workflow:\n  name: saga\n  on_failure: rollback\n"
                                        f"  steps:\n{steps}\n    - {{id: boom, skill: saga, action: fail}}\n")
    return workflow, files


def status_of(state, run_id) -> str:
    return db(state, "SELECT status FROM runs WHERE id = ?", run_id)[0][0]


def compensated(state, run_id) -> set[str]:
    return {r[0] for r in db(state, "SELECT step_id FROM steps WHERE run_id = ? AND "
                                    "status = 'compensated'", run_id)}


def assert_rolled_back_once(state, run_id, files, forward_before) -> None:
    assert status_of(state, run_id) == "rolled_back"
    keys = [f"{run_id}/s{i}/rollback" for i in range(STEPS)]
    assert collections.Counter(lines(files["done"])) == collections.Counter(keys), \
        "every compensation completed exactly once"
    assert set(lines(files["starts"])) == set(keys), "each ran with its step's idempotency key"
    assert lines(files["forward"]) == forward_before, "no forward action ran again"
    assert sorted(lines(files["forward"])) == sorted(f"{run_id}/s{i}" for i in range(STEPS))
    assert compensated(state, run_id) == {f"s{i}" for i in range(STEPS)}
    assert db(state, "PRAGMA integrity_check") == [("ok",)]


def test_sigkill_during_rollback_at_random_moments(tmp_path, skill_root):
    """Regression: a run killed mid-rollback ran a compensated step's forward action again
    on resume, then failed on a UNIQUE constraint of attempts and stayed running for good."""
    workflow, files = saga(tmp_path, skill_root)
    state, rng = tmp_path / "state.db", random.Random(4321)
    proc = ctl(state, "run", str(workflow))
    until("the rollback's first compensation", lambda: lines(files["starts"]))
    time.sleep(rng.uniform(0, 0.4))
    proc.kill()
    proc.wait(timeout=30)
    [(run_id,)] = db(state, "SELECT id FROM runs")
    forward_before = lines(files["forward"])
    kills_mid_rollback = 1
    checkpoints = []  # (compensations started so far, steps recorded compensated)
    for _ in range(40):
        if status_of(state, run_id) == "rolled_back":
            break
        checkpoints.append((len(lines(files["starts"])), compensated(state, run_id)))
        started = len(lines(files["starts"]))
        proc = ctl(state, "resume", run_id)
        if rng.random() < 0.5:  # anywhere: start-up, between compensations, recording
            time.sleep(rng.uniform(0.3, 1.2))
        else:  # while a compensation is in flight
            until("a compensation to start or the run to end",
                  lambda: len(lines(files["starts"])) > started or proc.poll() is not None)
            time.sleep(rng.uniform(0, 0.5))
        proc.kill()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode in (-signal.SIGKILL, 5), err
        kills_mid_rollback += proc.returncode == -signal.SIGKILL and \
            status_of(state, run_id) != "rolled_back"
    else:
        final = ctl(state, "resume", run_id)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 5, err

    assert_rolled_back_once(state, run_id, files, forward_before)
    starts = lines(files["starts"])
    for length, done in checkpoints:
        again = {key.split("/")[1] for key in starts[length:]} & done
        assert not again, f"compensated steps {sorted(again)} were compensated again"
    assert kills_mid_rollback >= 10, f"only {kills_mid_rollback} kills landed mid-rollback"
    [(interrupted,)] = db(state, "SELECT count(*) FROM attempts WHERE run_id = ? AND "
                                 "kind = 'rollback' AND status = 'interrupted'", run_id)
    assert interrupted >= 1, "no kill caught a compensation in flight: the test proved too little"


def test_sigterm_during_rollback_then_resume(tmp_path, skill_root):
    """SIGTERM leaves a rolling-back run interrupted (exit 130); resume finishes it (exit 5)."""
    workflow, files = saga(tmp_path, skill_root)
    state = tmp_path / "state.db"
    proc = ctl(state, "run", str(workflow))
    until("the rollback's second compensation", lambda: len(lines(files["starts"])) >= 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    [(run_id,)] = db(state, "SELECT id FROM runs")
    assert status_of(state, run_id) == "interrupted"
    forward_before = lines(files["forward"])

    resumed = ctl(state, "resume", run_id)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 5, err
    assert_rolled_back_once(state, run_id, files, forward_before)
