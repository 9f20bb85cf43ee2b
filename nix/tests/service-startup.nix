# NixOS VM test 3, service startup: ai-service-management starts a real HTTP service
# (the example model server shipped in the package, mapped in settings as `model`) and
# health-monitoring sees it answer; then orchestratord is killed with SIGKILL in the
# middle of a run, systemd restarts it, and the run completes without re-running a
# finished step.
#
# The checks are tests/scenarios/service_startup.py, shared with the container tests.
{
  name = "agent-orchestrator-service-startup";

  nodes.machine = {
    imports = [ ./scenario-machine.nix ];
  };

  testScript = ''
    import sys

    start_all()
    machine.wait_for_unit("orchestratord.service")

    sys.path.insert(0, "${../../tests/scenarios}")  # for `import scenario_common`
    scenario: dict = {}
    exec(open("${../../tests/scenarios/service_startup.py}").read(), scenario)
    scenario["run"](machine)
  '';
}
