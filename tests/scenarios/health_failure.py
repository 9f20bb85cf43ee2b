"""Scenario: broken variants of the deploy workflow fail clearly, with their retries on record.

The machine must have (see tests/scenarios/__init__.py):
- orchestratord.service running, `orchestratorctl` and `journalctl` on PATH;
- daemon settings whose `skills` section is machine/skills.json;
- workflow `deploy-missing-unit` (machine/workflows/deploy-missing-unit.json): the deploy
  steps with a health check of a unit that does not exist and an endpoint nobody serves
  (127.0.0.1:8099), retried 3 times 1 s apart;
- workflow `deploy-bad-package` (machine/workflows/deploy-bad-package.json): the deploy
  steps with a package name that would inject Nix code;
- no unit agent-orchestrator-missing-model.service and nothing on 127.0.0.1:8099.

It checks: `systemctl start orchestrator@...` fails and the unit ends failed; the run is
failed; the health step failed after 3 attempts whose errors name every failing check,
visible in `orchestratorctl show`; later steps did not run; a bad package name fails at
once (a definition error is not retried) naming the bad entry; each failed run has the
daemon's alert record (priority crit, its MESSAGE_ID) in the journal.
"""

from __future__ import annotations

from scenario_common import last_run, steps_of

MISSING_UNIT = "agent-orchestrator-missing-model.service"
DEAD_ENDPOINT = "http://127.0.0.1:8099/health"
ALERT_MESSAGE_ID = "5727368a5d3a4fbf89115e249386565f"  # orchestratord.observability.alerts, stable


def run(machine) -> None:
    machine.wait_for_unit("orchestratord.service")

    # A missing unit and a dead endpoint: unhealthy, retried, then failed.
    machine.fail("systemctl start orchestrator@deploy-missing-unit")
    machine.succeed("systemctl is-failed orchestrator@deploy-missing-unit")
    run = last_run(machine, "deploy-missing-unit")
    assert run["status"] == "failed", run
    steps = steps_of(run)
    assert steps["nixos-deployment"]["status"] == "succeeded", steps
    health = steps["health-monitoring"]
    assert health["status"] == "failed" and health["attempts"] == 3, health
    assert health["error"].startswith("unhealthy: 2 of 3 checks failed"), health["error"]
    assert f"unit {MISSING_UNIT}: not found" in health["error"], health["error"]
    assert f"endpoint {DEAD_ENDPOINT}: cannot connect" in health["error"], health["error"]
    assert "orchestratord.service" not in health["error"], "a healthy check is not blamed"
    # The failed step keeps its result: every check, with what each found.
    verdicts = {c["target"]: c["ok"] for c in health["result"]["checks"]}
    assert health["result"]["healthy"] is False, health["result"]
    assert verdicts[MISSING_UNIT] is False and verdicts[DEAD_ENDPOINT] is False, verdicts
    assert verdicts["orchestratord.service"] is True, verdicts
    assert steps["ai-service-management"]["status"] == "upstream_failed", steps
    tries = [a for a in run["attempts"] if a["step_id"] == "health-monitoring"]
    assert [(a["attempt"], a["status"]) for a in tries] == [(1, "failed"), (2, "failed"),
                                                          (3, "failed")], tries

    shown = machine.succeed(f"orchestratorctl show {run['id']}")
    assert "failed attempts:" in shown, shown
    for attempt in (1, 2, 3):
        assert f"health-monitoring action attempt {attempt}: failed: unhealthy" in shown, shown

    # The journal of the client unit says which step failed.
    client = machine.succeed("journalctl --no-pager -o cat -u orchestrator@deploy-missing-unit")
    assert "health-monitoring" in client and MISSING_UNIT in client, client

    # A package name that would inject Nix code: refused at once, never retried.
    machine.fail("systemctl start orchestrator@deploy-bad-package")
    machine.succeed("systemctl is-failed orchestrator@deploy-bad-package")
    run = last_run(machine, "deploy-bad-package")
    assert run["status"] == "failed", run
    steps = steps_of(run)
    generate = steps["nixos-deployment"]
    assert generate["status"] == "failed" and generate["attempts"] == 1, generate
    assert "params.packages[1]" in generate["error"], generate["error"]
    assert "not a Nix identifier" in generate["error"], generate["error"]
    assert steps["health-monitoring"]["status"] == "upstream_failed", steps

    # The daemon's own alert: a journald record at priority crit per failed run.
    for name in ("deploy-missing-unit", "deploy-bad-package"):
        machine.wait_until_succeeds(
            f"journalctl --sync && journalctl --no-pager -o json MESSAGE_ID={ALERT_MESSAGE_ID} "
            f"WORKFLOW={name} PRIORITY=2 | grep -q '\"ALERT_KIND\":\"run_failed\"'")
