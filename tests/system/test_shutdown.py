"""A system shutdown leaves runs started through orchestrator@ interrupted, and they
resume after boot: a real poweroff transaction of the container, then a second boot
with the same state (the state directory and the venv are bind-mounted from the host).
Steps run as the daemon's children (step_units: never) and as their own units (always)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestratord.engine import shutdown

from .conftest import PROJECT_ROOT, VENV, install_project
from .machine import Machine
from .test_daemon import ETC, install, workflow, write

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]
STATE = "/var/lib/agent-orchestrator"


def set_up(machine: Machine, step_units: str = "never", sleep: float = 2) -> None:
    """Redone at each boot: the container's own writes do not survive it."""
    install(machine, VENV, step_units)
    write(machine, f"{ETC}/workflows/slow.json", workflow("slow", 5, sleep=sleep))
    machine.succeed("systemctl daemon-reload && systemctl start orchestratord")


def runs(state: Path) -> list[dict]:
    with sqlite3.connect(state / "state.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT id, status, cancel_requested FROM runs")]


def left_units(state: Path) -> dict[str, dict]:
    """The status each step unit's ExecStopPost= wrote, by unit, not yet collected."""
    return {d.name: json.loads((d / "status").read_text())
            for d in (state / "step-units").glob("*") if (d / "status").exists()}


@pytest.mark.parametrize("step_units,sleep", [("never", 2), ("always", 5)])
def test_a_shutdown_leaves_the_run_to_resume_after_boot(
        boot_machine: Callable[..., Machine], tmp_path: Path, step_units: str,
        sleep: float) -> None:
    """Regression: at poweroff the client unit is stopped before the daemon, and its
    SIGTERM became a cancel of the run; the systemctl it forked to tell a shutdown from
    a stop was killed by the same stop, so even with that check it became a cancel under
    load. With steps in units, the unit of the step in flight was stopped beside the
    daemon and its kill counted as the step's failure."""
    state, venv = tmp_path / "state", tmp_path / "venv"
    state.mkdir()
    venv.mkdir()
    binds = {str(state): STATE, str(venv): VENV}
    machine = boot_machine(binds=binds)
    install_project(machine, PROJECT_ROOT)
    set_up(machine, step_units, sleep)
    machine.succeed("systemctl start --no-block orchestrator@slow")
    machine.wait_until_succeeds(f"test -s {STATE}/ledger")

    machine.shutdown()  # SIGRTMIN+4: systemd starts poweroff.target, a real shutdown
    [run] = runs(state)
    assert (run["status"], run["cancel_requested"]) == ("interrupted", 0), run
    ran = (state / "ledger").read_text().split("\n")
    if step_units == "always":  # the unit in flight was stopped by the shutdown, after the daemon
        [(unit, status)] = left_units(state).items()
        assert shutdown.shutting_down(status["JOBS"]), (unit, status)

    machine = boot_machine(binds=binds)
    set_up(machine, step_units, sleep)
    deadline = time.monotonic() + 120
    while runs(state)[0]["status"] != "succeeded":
        assert time.monotonic() < deadline, f"run not succeeded after boot: {runs(state)}"
        time.sleep(0.5)
    steps = [line.split()[1] for line in (state / "ledger").read_text().split("\n") if line]
    assert sorted(set(steps)) == [f"s{i}" for i in range(5)]
    assert len(steps) - len(set(steps)) <= 1, f"only the step in flight may run twice: {steps}"
    assert len(ran) <= len(steps)
    if step_units == "always":
        assert not left_units(state), "every unit's outcome was collected"

    # A deliberate stop still cancels (the check that tells it from a shutdown says so).
    machine.succeed("systemctl start --no-block orchestrator@slow")
    machine.wait_until_succeeds("orchestratorctl runs --status running --json | grep -q running")
    machine.succeed("systemctl stop orchestrator@slow")
    assert json.loads(machine.succeed("orchestratorctl runs --json"))[0]["status"] == "cancelled"
