"""orchestratorctl as `orchestrator@NAME.service` runs it (`run --daemon --wait -- NAME`),
against a real daemon process: instance names, stop on request, an unreachable daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.waiting import file_words, until

from .daemon_process import workflow


def client(env: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestratord.cli", "--socket", str(env / "run" / "control.sock"),
         "run", "--daemon", "--wait", "--", *args],
        cwd=cwd or env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ORCHESTRATOR_SETTINGS": str(env / "settings.json")})


def run_status(d, run_id: str, *states: str, timeout: float = 30) -> str:
    """The run's status once it is one of states; at the deadline, whatever it is then
    (the caller's assert shows it)."""
    deadline = time.monotonic() + timeout
    while True:
        status = json.loads(d.ctl("show", run_id, "--json").stdout)["status"]
        if status in states or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def following_slow(env: Path, daemon, steps: int = 4, sleep: float = 2):
    """A daemon serving `slow`, and a client following a run of it that has begun."""
    (env / "workflows" / "slow.yaml").write_text(workflow("slow", env / "ledger", steps, sleep))
    d = daemon()
    d.notify.wait_for("READY=1")
    following = client(env, "slow")
    until("the run's first step", file_words(env / "ledger", 1))
    return d, following, only_run(d)


def only_run(d) -> str:
    runs = json.loads(d.ctl("runs", "--json").stdout)
    assert len(runs) == 1, runs
    return runs[0]["id"]


def test_an_instance_name_is_only_ever_a_daemon_workflow(env, daemon):
    """Regression: `orchestrator@--help` succeeded without a run, a file in the working
    directory named like the instance ran instead of the daemon's workflow, and an unknown
    workflow exited 7 (cannot proceed) rather than 2 (invalid input)."""
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger", steps=1))
    (env / "hello").write_text(workflow("hello", env / "file-ledger", steps=1))
    d = daemon()
    d.notify.wait_for("READY=1")
    ran = client(env, "hello")
    out, err = ran.communicate(timeout=60)
    assert ran.returncode == 0, err
    assert not (env / "file-ledger").exists(), "the file beside the client ran"
    assert (env / "ledger").read_text().split() == ["s0"]

    for name in ("--help", "nope"):
        ran = client(env, name)
        out, err = ran.communicate(timeout=60)
        assert ran.returncode == 2, (name, out, err)
        assert f"no workflow '{name}' (known: hello)" in err
    assert len(json.loads(d.ctl("runs", "--json").stdout)) == 1


def test_a_stop_on_request_cancels_and_exits_143(env, daemon):
    """Regression: a deliberate stop exited 3, so `systemctl stop` failed the unit and
    fired OnFailure=. 143 (128 + SIGTERM) is the unit's SuccessExitStatus=."""
    d, following, run_id = following_slow(env, daemon)
    following.send_signal(signal.SIGTERM)
    out, err = following.communicate(timeout=30)
    assert following.returncode == 143, (out, err)
    assert run_status(d, run_id, "cancelled") == "cancelled"


def test_a_cancel_by_someone_else_still_fails_the_client(env, daemon):
    d, following, run_id = following_slow(env, daemon)
    assert d.ctl("cancel", run_id).returncode == 0
    out, err = following.communicate(timeout=30)
    assert following.returncode == 3, (out, err)


def test_a_cancel_waits_for_a_restarting_daemon(env, daemon):
    """Regression: a stop while the daemon restarted was lost; the run went on."""
    ledger = env / "ledger"
    d, following, run_id = following_slow(env, daemon)
    assert d.stop() == 0  # the run is left interrupted
    following.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # the client is retrying now; the daemon comes back within its deadline
    d2 = daemon()
    d2.notify.wait_for("READY=1")
    out, err = following.communicate(timeout=30)
    assert following.returncode == 143, (out, err)
    assert run_status(d2, run_id, "cancelled") == "cancelled"
    assert ledger.read_text().split().count("s1") <= 1
    assert "s2" not in ledger.read_text().split()


def test_a_cancel_the_daemon_cannot_take_is_recorded_and_honoured_at_its_start(env, daemon):
    """Regression: with the daemon stopped, `systemctl stop orchestrator@X` hung until
    TimeoutStopSec and the cancel was lost: the run resumed and ran to its end."""
    ledger = env / "ledger"
    d, following, run_id = following_slow(env, daemon)
    assert d.stop() == 0
    started = time.monotonic()
    following.send_signal(signal.SIGTERM)
    out, err = following.communicate(timeout=40)
    took = time.monotonic() - started
    assert following.returncode == 143, (out, err)
    assert 14 < took < 25, f"the client gave up after {took:.1f}s, not after its 15 s deadline"
    assert f"recorded the cancel of run {run_id} in {env / 'state' / 'state.db'}" in err
    steps_before = ledger.read_text().split()

    d2 = daemon()
    d2.notify.wait_for("READY=1")
    assert run_status(d2, run_id, "cancelled") == "cancelled"
    assert ledger.read_text().split() == steps_before, "a step ran after the recorded cancel"


def test_a_redrive_of_a_cancelled_run_is_not_cancelled_again(env, daemon):
    """The recorded cancel is for the run as it was; `resume` of the cancelled run is a
    new request and runs its remaining steps."""
    d, following, run_id = following_slow(env, daemon, steps=2, sleep=1)
    following.send_signal(signal.SIGTERM)
    following.communicate(timeout=30)
    assert run_status(d, run_id, "cancelled") == "cancelled"
    # (not `resume`'s exit status: its follow may end on the old `cancelled` before the
    # daemon has recorded the redrive, a race of its own)
    d.ctl("resume", run_id)
    assert run_status(d, run_id, "succeeded") == "succeeded"
