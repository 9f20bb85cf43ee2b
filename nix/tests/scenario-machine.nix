# The machine that tests/scenarios/__init__.py describes, as NixOS configuration. Every
# VM test node imports it; the container tests (tests/system/test_scenarios.py) set up
# the same machine from the same files by hand.
#
# - settings.skills is tests/scenarios/machine/skills.json;
# - workflow `deploy` is the example deploy-nixos-system, declared in Nix
#   (./deploy-workflow.nix);
# - each tests/scenarios/machine/workflows/*.json becomes workflows.<its name>
#   (./scenario-workflows.nix);
# - agent-orchestrator-example-model.service ships in the package (systemd.packages),
#   not started at boot: the scenarios' workflows start it.
{ lib, ... }:

let
  machineDir = ../../tests/scenarios/machine;

  scenarioWorkflows = import ./scenario-workflows.nix lib (machineDir + "/workflows");
in
{
  services.agent-orchestrator = {
    enable = true;
    settings = {
      skills = lib.importJSON (machineDir + "/skills.json");
      # Stop steps quickly when the daemon is stopped: keeps the crash test short.
      kill_grace = 2;
    };
    workflows = {
      deploy = import ./deploy-workflow.nix;
    }
    // scenarioWorkflows.workflows;
    inherit (scenarioWorkflows) skills;
  };
}
