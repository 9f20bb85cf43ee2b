# The example deploy-nixos-system workflow (workflows/deploy-nixos-system.yaml) declared
# in Nix, step for step. The deployment VM test runs it as `orchestrator@deploy`, and
# tests/unit/test_nix_module.py checks that the module renders it into a file that
# `orchestratorctl validate` accepts.
{
  description = "deploy-nixos-system: write the packages module, check health, start the AI services";
  steps = [
    {
      skill = "nixos-deployment";
      action = "generate_config";
      params.packages = [
        "vim"
        "git"
        "podman"
      ];
    }
    {
      skill = "health-monitoring";
      action = "check";
      depends_on = [ "nixos-deployment" ];
    }
    {
      skill = "ai-service-management";
      action = "start";
      params.service = "all";
      depends_on = [ "health-monitoring" ];
    }
  ];
}
