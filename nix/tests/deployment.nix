# NixOS VM test 1, deployment: the example deploy-nixos-system workflow, declared in Nix
# as workflows.deploy, runs through `systemctl start orchestrator@deploy`; the generated
# NixOS module holds the packages; journald holds the run's structured fields.
#
# The checks are tests/scenarios/deploy.py, the very file the container tests
# (tests/system/test_scenarios.py) run; this file only sets up the machine and adds what
# is NixOS's own (the timer from startAt, the validated /etc files).
{
  name = "agent-orchestrator-deployment";

  nodes.machine = {
    imports = [ ./scenario-machine.nix ];
    # A scheduled copy of the workflow, to see the timer that startAt creates. Far in
    # the future (and never run before, so Persistent= does not fire it at boot): it
    # cannot start a run while the scenario runs.
    services.agent-orchestrator.workflows.nightly-deploy = import ./deploy-workflow.nix // {
      startAt = "2099-01-01 03:00:00";
    };
  };

  # The scenario is exec'd into a namespace of its own: the driver type-checks this
  # script, and `run` is only known once the file has been read.
  testScript = ''
    import sys

    start_all()
    machine.wait_for_unit("orchestratord.service")

    sys.path.insert(0, "${../../tests/scenarios}")  # for `import scenario_common`
    scenario: dict = {}
    exec(open("${../../tests/scenarios/deploy.py}").read(), scenario)
    scenario["run"](machine)

    with subtest("startAt: a timer activating orchestrator@nightly-deploy"):
        machine.succeed("systemctl is-active orchestrator@nightly-deploy.timer")
        unit = machine.succeed("systemctl show -p Triggers --value orchestrator@nightly-deploy.timer")
        assert unit.strip() == "orchestrator@nightly-deploy.service", unit

    with subtest("workflows in /etc are the validated JSON files"):
        machine.succeed(
            "orchestratorctl --skills /etc/agent-orchestrator/skills"
            " validate /etc/agent-orchestrator/workflows/*.json"
        )
  '';
}
