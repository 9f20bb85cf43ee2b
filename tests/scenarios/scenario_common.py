"""What every scenario asks the machine: runs and their steps, through orchestratorctl.

Imported by the scenario files as a top-level module: both the container tests
(tests/scenarios/__init__.py `load`) and the NixOS VM tests put this directory on
sys.path before exec'ing a scenario. Standard library only.
"""

from __future__ import annotations

import json
import time


def json_of(text: str):
    """The JSON document in a command's output (which may carry log lines around it)."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    assert starts, f"no JSON in output:\n{text}"
    return json.JSONDecoder().raw_decode(text[min(starts):])[0]


def runs(machine, workflow: str, status: str = "") -> list:
    """The runs of workflow, newest first (optionally only those with status)."""
    flag = f" --status {status}" if status else ""
    return json_of(machine.succeed(f"orchestratorctl runs --workflow {workflow}{flag} --json"))


def show(machine, run_id: str) -> dict:
    """One run with its steps and attempts."""
    return json_of(machine.succeed(f"orchestratorctl show {run_id} --json"))


def last_run(machine, workflow: str) -> dict:
    """The newest run of workflow, with its steps and attempts."""
    found = runs(machine, workflow)
    assert found, f"no run of {workflow}"
    return show(machine, found[0]["id"])


def steps_of(run: dict) -> dict:
    """A run's steps by id."""
    return {s["step_id"]: s for s in run["steps"]}


def finished(machine, run_id: str, timeout: float = 120) -> dict:
    """The run once it has ended; the daemon may be restarting meanwhile (a failing
    orchestratorctl is asked again)."""
    deadline = time.monotonic() + timeout
    while True:
        rc, out = machine.execute(f"orchestratorctl show {run_id} --json")
        run = json_of(out) if rc == 0 else None
        if run is not None and run["status"] not in ("pending", "running", "interrupted"):
            return run
        assert time.monotonic() < deadline, \
            f"run {run_id} has not ended after {timeout:g} s: {run['status'] if run else out}"
        time.sleep(0.5)
