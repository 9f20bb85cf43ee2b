# NixOS VM test 2, health monitoring: a failing health check fails the run, its retries
# are on record, the orchestrator@ unit fails, and both alert paths fire: systemd's
# OnFailure= (services.agent-orchestrator.alertUnits) and the daemon's own alert
# command (settings.alerts.commands). The journal's alert records are checked by the
# shared scenario.
#
# The run checks are tests/scenarios/health_failure.py, shared with the container tests.
{
  name = "agent-orchestrator-health-monitoring";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ ./scenario-machine.nix ];

      services.agent-orchestrator = {
        alertUnits = [ "orchestrator-alert@%i.service" ];
        # Each alert, as the daemon sends it (JSON on stdin), to a file of its own. It
        # runs in the daemon's sandbox, where the state directory is writable.
        settings.alerts.commands = [
          [
            "${pkgs.writeShellScript "record-alert" ''
              mkdir -p /var/lib/agent-orchestrator/test-alerts
              cat > "$(mktemp /var/lib/agent-orchestrator/test-alerts/XXXXXX.json)"
            ''}"
          ]
        ];
      };

      # What OnFailure= starts: records the failed workflow's name (%i).
      systemd.services."orchestrator-alert@" = {
        description = "Record that workflow %i failed";
        serviceConfig = {
          Type = "oneshot";
          StateDirectory = "orchestrator-alerts";
        };
        scriptArgs = "%i";
        script = ''echo "$1" >> /var/lib/orchestrator-alerts/failed'';
      };
    };

  testScript = ''
    import json
    import sys

    start_all()
    machine.wait_for_unit("orchestratord.service")

    sys.path.insert(0, "${../../tests/scenarios}")  # for `import scenario_common`
    scenario: dict = {}
    exec(open("${../../tests/scenarios/health_failure.py}").read(), scenario)
    scenario["run"](machine)

    failed = ["deploy-missing-unit", "deploy-bad-package"]

    with subtest("OnFailure= started the alert unit for each failed workflow"):
        for name in failed:
            machine.wait_until_succeeds(f"grep -qx {name} /var/lib/orchestrator-alerts/failed")
            machine.succeed(f"systemctl show -p Result --value orchestrator-alert@{name}.service | grep -qx success")

    with subtest("the daemon's alert command got each failed run as JSON"):
        def alerts() -> list:
            files = machine.succeed("ls /var/lib/agent-orchestrator/test-alerts/ 2>/dev/null || true").split()
            return [json.loads(machine.succeed(f"cat /var/lib/agent-orchestrator/test-alerts/{f}")) for f in files]

        machine.wait_until_succeeds(
            "test $(ls /var/lib/agent-orchestrator/test-alerts | wc -l) -ge 2"
        )
        got = {(a["workflow"], a["kind"]) for a in alerts()}
        for name in failed:
            assert (name, "run_failed") in got, got
  '';
}
