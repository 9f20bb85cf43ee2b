"""Scenario: the example deploy workflow under real systemd, via `systemctl start orchestrator@deploy`.

The machine must have (see tests/scenarios/__init__.py):
- orchestratord.service running (Type=notify), control socket /run/agent-orchestrator/control.sock,
  state directory /var/lib/agent-orchestrator, `orchestratorctl` and `journalctl` on PATH;
- daemon settings whose `skills` section is machine/skills.json: health-monitoring defaults
  checking orchestratord.service, the control socket's /health and the state disk;
  ai-service-management service `model` = agent-orchestrator-example-model.service;
- workflow `deploy`: the steps of the example workflows/deploy-nixos-system.yaml, unchanged
  (generate_config of vim git podman -> check -> start all);
- workflow `model-health` (machine/workflows/model-health.json);
- agent-orchestrator-example-model.service installed (answers GET 127.0.0.1:8088/health).

It checks: the run succeeds and the unit's result says so; the generated NixOS module
lists the packages; journald holds the run's records with WORKFLOW=, RUN_ID= and STEP_ID=;
health-monitoring checked the orchestrator itself; ai-service-management started the
example model server, and a health check then sees it answer.
"""

from __future__ import annotations

import json
import re
import shlex

from scenario_common import last_run, steps_of

MODEL_UNIT = "agent-orchestrator-example-model.service"
CONTROL_SOCKET = "/run/agent-orchestrator/control.sock"
MODEL_HEALTH = "http://127.0.0.1:8088/health"


def run(machine) -> None:
    machine.wait_for_unit("orchestratord.service")
    # Down before the run, so that the run is what starts it.
    machine.succeed(f"systemctl stop {MODEL_UNIT}")

    # oneshot: returns when the run has ended, and fails if the run failed.
    machine.succeed("systemctl start orchestrator@deploy")
    assert machine.succeed("systemctl show -p Result --value orchestrator@deploy").strip() == "success"
    run = last_run(machine, "deploy")
    assert run["status"] == "succeeded", run
    steps = steps_of(run)
    assert set(steps) == {"nixos-deployment", "health-monitoring", "ai-service-management"}, steps
    assert all(s["status"] == "succeeded" for s in steps.values()), steps

    # nixos-deployment wrote the module; its path comes from the step's result.
    config = steps["nixos-deployment"]["result"]
    text = machine.succeed(f"cat {shlex.quote(config['path'])}")
    assert "environment.systemPackages" in text, text
    for package in ("vim", "git", "podman"):
        assert re.search(rf"(?<![\w.-]){package}(?![\w.-])", text), f"{package} not in:\n{text}"

    # health-monitoring (the settings' defaults) checked the orchestrator itself.
    checks = steps["health-monitoring"]["result"]["checks"]
    own = [c for c in checks if c["kind"] == "endpoint" and CONTROL_SOCKET in c["target"]]
    assert own and own[0]["ok"], checks
    assert any(c["kind"] == "unit" and c["target"] == "orchestratord.service" and c["ok"]
               for c in checks), checks
    assert steps["health-monitoring"]["result"]["healthy"] is True

    # ai-service-management started the example model server.
    services = steps["ai-service-management"]["result"]["services"]
    assert [(s["name"], s["unit"], s["state"]) for s in services] == [
        ("model", MODEL_UNIT, "active")], services
    machine.succeed(f"systemctl is-active {MODEL_UNIT}")

    # journald: the run's records carry its workflow, run id and steps.
    machine.succeed("journalctl --sync")
    out = machine.succeed(f"journalctl --no-pager -o json WORKFLOW=deploy RUN_ID={run['id']}")
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records, "no journal records with WORKFLOW=deploy and the run's RUN_ID"
    assert {r.get("STEP_ID") for r in records} >= set(steps), {r.get("STEP_ID") for r in records}
    assert any(r.get("SKILL") == "ai-service-management" and r.get("ACTION") == "start"
               for r in records)

    # And health-monitoring now sees the model answer.
    machine.succeed("systemctl start orchestrator@model-health")
    check = last_run(machine, "model-health")
    assert check["status"] == "succeeded", check
    (outcome,) = [c for c in check["steps"][0]["result"]["checks"] if c["kind"] == "endpoint"]
    assert outcome["target"] == MODEL_HEALTH and outcome["ok"], outcome
    assert outcome["detail"].startswith("HTTP 200"), outcome
