# The machine that tests/scenarios/__init__.py describes, as NixOS configuration. Every
# VM test node imports it; the container tests (tests/system/test_scenarios.py) set up
# the same machine from the same files by hand.
#
# - settings.skills is tests/scenarios/machine/skills.json;
# - workflow `deploy` is the example deploy-nixos-system, declared in Nix
#   (./deploy-workflow.nix);
# - each tests/scenarios/machine/workflows/*.json becomes workflows.<its name>: the
#   file format and the module's options have the same keys, so a file's `workflow`
#   section is a value of workflows.<name> as it is, and its inline `skills` section a
#   value of skills;
# - agent-orchestrator-example-model.service ships in the package (systemd.packages),
#   not started at boot: the scenarios' workflows start it.
{ lib, ... }:

let
  machineDir = ../../tests/scenarios/machine;

  workflowDocs = map (file: lib.importJSON (machineDir + "/workflows/${file}")) (
    lib.filter (lib.hasSuffix ".json") (lib.attrNames (builtins.readDir (machineDir + "/workflows")))
  );
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
    // lib.listToAttrs (
      map (doc: lib.nameValuePair doc.workflow.name (removeAttrs doc.workflow [ "name" ])) workflowDocs
    );
    skills = lib.foldl' (acc: doc: acc // doc.skills or { }) { } workflowDocs;
  };
}
