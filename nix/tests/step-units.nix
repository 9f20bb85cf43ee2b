# NixOS VM test 4, step units: each command step runs as its own transient systemd unit.
# A step writing outside its workspace fails with the reason, a step over MemoryMax= fails
# as out of memory, a cancelled double-forking step leaves no process, a step whose daemon
# is killed with SIGKILL runs once and is collected after the restart, and the step's
# stderr is in the journal with its fields.
#
# The machine is what tests/scenarios/step_units.py asks for (machine/step-units/); the
# checks are that file, shared with the container tests (tests/system/test_step_units.py).
{
  name = "agent-orchestrator-step-units";

  nodes.machine =
    { lib, pkgs, ... }:
    let
      machineDir = ../../tests/scenarios/machine/step-units;
      scenarioWorkflows = import ./scenario-workflows.nix lib (machineDir + "/workflows");
    in
    {
      # The OOM step allocates 512 MB against its MemoryMax=64M; the VM has room to spare.
      virtualisation.memorySize = 1536;
      services.agent-orchestrator = {
        enable = true;
        # box's actions run `python3 box.py` from its skill directory.
        path = [ pkgs.python3 ];
        settings = {
          step_units = "always";
          kill_grace = 2;
          skill_paths = [ "${machineDir + "/skills"}" ];
        };
        inherit (scenarioWorkflows) workflows;
      };
    };

  testScript = ''
    import sys

    start_all()
    machine.wait_for_unit("orchestratord.service")

    sys.path.insert(0, "${../../tests/scenarios}")  # for `import scenario_common`
    scenario: dict = {}
    exec(open("${../../tests/scenarios/step_units.py}").read(), scenario)
    for part in scenario["PARTS"]:
        with subtest(part.__name__.replace("_", " ")):
            part(machine)
  '';
}
