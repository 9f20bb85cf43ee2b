# The options of services.agent-orchestrator besides those of mcp.nix: the package,
# settings (settings-options.nix), skills and workflows (workflow-options.nix), the
# services the skills manage, alert units, secrets, AIDB, and the daemon's environment.
# nix/module.nix sets `options.services.agent-orchestrator` to this attribute set.
{
  lib,
  pkgs,
  cfg,
  opt,
  wf,
  jsonType,
  etcDir,
  workflowsDir,
  skillsDir,
  defaultSocket,
  defaultStateDir,
}:

let
  inherit (lib)
    mkEnableOption
    mkOption
    types
    ;

  # nixos/lib/systemd-lib.nix's unitNameType, so that a wrong name is reported at this
  # module's option rather than at systemd.services."orchestrator@".onFailure.
  unitName =
    types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)"
    // {
      description = "systemd unit name (with its suffix, e.g. `alert@%i.service`)";
    };

  # The programs that check settings and workflows run on the build platform: where it
  # cannot execute the host's, checkPackage is the build platform's build (or null: the
  # checks are skipped with a warning).
  canExecuteHost = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  settingsOptions = import ./settings-options.nix {
    inherit
      lib
      opt
      jsonType
      workflowsDir
      defaultSocket
      defaultStateDir
      ;
    inherit (wf) duration;
  };
in
{
  enable = mkEnableOption "agent-orchestrator, durable workflows of agent skills under systemd";

  package = mkOption {
    type = types.package;
    default =
      pkgs.agent-orchestrator or (throw "${opt}.package: pkgs has no agent-orchestrator; import the module as the flake's nixosModules.default, add its overlays.default, or set ${opt}.package.");
    defaultText = lib.literalExpression "pkgs.agent-orchestrator";
    description = ''
      The agent-orchestrator package (daemon, CLI and units). `pkgs.agent-orchestrator`
      exists with the flake's overlay; the flake's `nixosModules.default` sets this
      option to a build from the system's own nixpkgs.
    '';
  };

  checkPackage = mkOption {
    type = types.nullOr types.package;
    default = if canExecuteHost then cfg.package else pkgs.buildPackages.agent-orchestrator or null;
    defaultText = lib.literalExpression ''
      if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform
      then config.${opt}.package
      else pkgs.buildPackages.agent-orchestrator or null
    '';
    description = ''
      The package, built for the build platform, whose `orchestratord --check` and
      `orchestratorctl validate` check the settings and workflows while the system is
      built. `null` skips those checks (with a warning), for cross-builds without it.
    '';
  };

  settings = mkOption {
    type = types.submodule settingsOptions;
    default = { };
    description = ''
      Daemon settings, written to ${etcDir}/settings.json. Known keys are typed; others
      are passed through and checked by the daemon when it starts (an unknown key stops
      it with a message in the journal).
    '';
  };

  skills = mkOption {
    type = types.attrsOf wf.skill;
    default = { };
    example = lib.literalExpression ''
      {
        backup.actions.snapshot = {
          command = [ "''${pkgs.restic}/bin/restic" "backup" "/srv" "--json" ];
          timeout = "1h";
          retry = { attempts = 3; backoff = "exponential"; };
        };
      }
    '';
    description = ''
      Skills declared in Nix, besides the bundled ones (nixos-deployment,
      health-monitoring, ai-service-management, internal-comms). Each becomes a skill
      directory under ${skillsDir}.
    '';
  };

  workflows = mkOption {
    type = types.attrsOf wf.workflow;
    default = { };
    example = lib.literalExpression ''
      {
        deploy = {
          startAt = "daily";
          steps = [
            { skill = "nixos-deployment"; action = "generate_config";
              params.packages = [ "vim" "git" ]; }
            { skill = "health-monitoring"; action = "check";
              retry = { attempts = 3; initial = "5s"; }; }
          ];
        };
      }
    '';
    description = ''
      Workflows by name, in the workflow file format (see `orchestratorctl schema`).
      `systemctl start orchestrator@<name>` runs one and fails when the run fails.
    '';
  };

  validateWorkflows = mkOption {
    type = types.bool;
    default = true;
    description = ''
      Check every workflow with `orchestratorctl validate` while the system is built.
      Turn off only when workflows use skills that exist at run time alone (a
      {option}`${opt}.settings.skill_paths` entry outside the Nix store).
    '';
  };

  managedServices = mkOption {
    default = { };
    example = {
      llm = {
        unit = "ollama.service";
        endpoint = "http://127.0.0.1:11434/api/version";
      };
    };
    description = ''
      Services the ai-service-management skill starts and stops (`service: all` means
      every one). A service with an endpoint is also checked by health-monitoring.
    '';
    type = types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options.unit = mkOption {
            type = types.str;
            default = "${name}.service";
            description = "The systemd unit of the service.";
          };
          options.endpoint = mkOption {
            type = types.nullOr (types.strMatching "https?://.+");
            default = null;
            description = "URL that answers 200 when the service is healthy.";
          };
        }
      )
    );
  };

  alertUnits = mkOption {
    type = types.listOf unitName;
    default = [ ];
    example = [ "notify-admin@%n.service" ];
    description = ''
      Units started (OnFailure=) when an `orchestrator@<name>` unit fails, that is when a
      run of a workflow fails. `%i` in a name is the workflow's name.
    '';
  };

  secrets = mkOption {
    type = types.attrsOf types.str;
    default = { };
    example = {
      webhook-token = "/run/keys/webhook-token";
    };
    description = ''
      Files handed to the daemon with systemd's LoadCredential=, never copied to the
      Nix store. Commands of skills and alert commands read them at
      `$CREDENTIALS_DIRECTORY/<name>`.
    '';
  };

  aidb = {
    enable = mkEnableOption "AIDB: its skills in the catalog, execution history recorded in it";
    url = mkOption {
      type = types.str;
      default = "http://127.0.0.1:8002";
      description = "AIDB's base URL (its NixOS module serves on port 8002).";
    };
    apiKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/keys/aidb-api-key";
      description = ''
        File holding AIDB's API key, handed to the daemon with LoadCredential= (as
        `aidb-key`), never copied to the Nix store. Further AIDB settings (publish,
        history, refresh_interval, undelivered_alert_after, api_listen) go under
        {option}`${opt}.settings.aidb`.
      '';
    };
  };

  environment = mkOption {
    type = types.attrsOf types.str;
    default = { };
    example = {
      OLLAMA_HOST = "127.0.0.1:11434";
    };
    description = "Environment variables of the daemon and so of every command it runs.";
  };

  path = mkOption {
    type = types.listOf (types.either types.package types.str);
    default = [ ];
    example = lib.literalExpression "[ pkgs.git pkgs.curl ]";
    description = "Packages whose bin/ is on the PATH of the daemon and its commands.";
  };
}
