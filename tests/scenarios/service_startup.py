"""Scenario: a workflow starts an AI service and sees it answer; a crashed daemon's run completes.

The machine must have (see tests/scenarios/__init__.py):
- orchestratord.service (Restart=on-failure) running, `orchestratorctl` on PATH;
- daemon settings whose `skills` section is machine/skills.json (service `model` =
  agent-orchestrator-example-model.service);
- workflows `model-startup` and `slow-rollout` (machine/workflows/); slow-rollout declares
  a `pause` skill running `sleep 2`, so `sleep` must be on the daemon's PATH;
- agent-orchestrator-example-model.service installed (answers GET 127.0.0.1:8088/health).

It checks: with the model down, `model-startup` starts it and its health check sees HTTP
200. Then, while `slow-rollout` runs, orchestratord is killed with SIGKILL; systemd
restarts it, the daemon resumes the run, the orchestrator@ client follows it to the end,
and no step that had finished before the kill runs again.
"""

from __future__ import annotations

import time

from scenario_common import runs, show, steps_of

MODEL_UNIT = "agent-orchestrator-example-model.service"
MODEL_HEALTH = "http://127.0.0.1:8088/health"


def _main_pid(machine) -> str:
    return machine.succeed("systemctl show -p MainPID --value orchestratord.service").strip()


def _poll(what: str, probe, timeout: float = 60.0):
    """probe() until it returns something true; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def run(machine) -> None:
    machine.wait_for_unit("orchestratord.service")

    # 1. Start the model through a workflow; health then sees it answer.
    machine.succeed(f"systemctl stop {MODEL_UNIT}")
    machine.fail(f"systemctl is-active {MODEL_UNIT}")
    machine.succeed("systemctl start orchestrator@model-startup")
    run = show(machine, runs(machine, "model-startup")[0]["id"])
    assert run["status"] == "succeeded", run
    steps = steps_of(run)
    started = steps["ai-service-management"]["result"]["services"]
    assert [(s["name"], s["state"]) for s in started] == [("model", "active")], started
    (check,) = steps["health-monitoring"]["result"]["checks"]
    assert check["target"] == MODEL_HEALTH and check["ok"], check
    machine.succeed(f"systemctl is-active {MODEL_UNIT}")

    # 2. Kill the daemon mid-run; systemd restarts it and the run completes.
    before = {r["id"] for r in runs(machine, "slow-rollout")}
    machine.succeed("systemctl start --no-block orchestrator@slow-rollout")

    def run_between_steps():
        fresh = [r for r in runs(machine, "slow-rollout", "running") if r["id"] not in before]
        if not fresh:
            return None
        shown = show(machine, fresh[0]["id"])
        return shown if steps_of(shown)["wait-1"]["status"] == "succeeded" else None

    mid = _poll("slow-rollout to be running with wait-1 done", run_between_steps)
    done_before = {sid for sid, s in steps_of(mid).items() if s["status"] == "succeeded"}
    pid = _main_pid(machine)
    machine.succeed(f"kill -9 {pid}")
    _poll("systemd to restart orchestratord",
          lambda: _main_pid(machine) not in ("0", pid) and
          machine.execute("systemctl is-active orchestratord.service")[0] == 0)

    # The client unit rides out the restart and ends with the run's outcome.
    _poll("orchestrator@slow-rollout to finish",
          lambda: machine.succeed("systemctl show -p ActiveState --value "
                                  "orchestrator@slow-rollout").strip() in ("inactive", "failed"),
          timeout=120)
    result = machine.succeed("systemctl show -p Result --value orchestrator@slow-rollout").strip()
    final = show(machine, mid["id"])
    assert result == "success", (result, final)
    assert final["status"] == "succeeded", final
    steps = steps_of(final)
    assert all(s["status"] == "succeeded" for s in steps.values()), steps
    for sid in done_before:
        assert steps[sid]["attempts"] == 1, f"{sid} finished before the kill and ran again: {steps[sid]}"
    (check,) = steps["health-monitoring"]["result"]["checks"]
    assert check["target"] == MODEL_HEALTH and check["ok"], check
