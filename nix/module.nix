# NixOS module: services.agent-orchestrator.
#
#   services.agent-orchestrator = {
#     enable = true;
#     workflows.deploy = { steps = [ ... ]; startAt = "daily"; };
#   };
#   systemctl start orchestrator@deploy
#
# The units come from the package (systemd.packages); this module adds drop-ins for
# what it configures. Workflows and skills are rendered to JSON under
# /etc/agent-orchestrator, and every workflow is checked by the package's own validator
# while the system is built, so `nixos-rebuild build` fails with the validator's
# message (file:line:column) on a bad workflow.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    types
    ;

  cfg = config.services.agent-orchestrator;
  opt = "services.agent-orchestrator";

  jsonFormat = pkgs.formats.json { };
  wf = import ./workflow-options.nix {
    inherit lib;
    jsonType = jsonFormat.type;
  };

  etcDir = "/etc/agent-orchestrator";
  workflowsDir = "${etcDir}/workflows";
  skillsDir = "${etcDir}/skills";
  defaultSocket = "/run/agent-orchestrator/control.sock";

  # Unset optional keys (null) are left out: the daemon's defaults apply. The file is
  # checked by the daemon itself while the system is built, so a wrong value fails
  # `nixos-rebuild build` with the daemon's message (file:line:column: field: why).
  settingsFile =
    pkgs.runCommand "agent-orchestrator-settings.json"
      {
        settings = jsonFormat.generate "agent-orchestrator-settings.json" (
          lib.filterAttrs (_: v: v != null) cfg.settings
        );
        nativeBuildInputs = [ cfg.package ];
        preferLocalBuild = true;
      }
      ''
        cp "$settings" settings.json
        # The build sandbox has none of the system's groups: socket_group is asserted
        # against users.groups below instead.
        if ! orchestratord --check --skip-host-checks --settings settings.json; then
          echo "${opt}.settings is not valid (see above)." >&2
          exit 1
        fi
        cp "$settings" "$out"
      '';

  # One directory per skill declared in Nix: SKILL.md (what an agent reads) and
  # actions.yaml (what the daemon runs), as the daemon finds them on its skill path.
  skillTree = pkgs.linkFarm "agent-orchestrator-skills" (
    lib.concatLists (
      lib.mapAttrsToList (name: s: [
        {
          name = "${name}/SKILL.md";
          path = pkgs.writeText "${name}-SKILL.md" (wf.renderSkillMarkdown name s);
        }
        {
          name = "${name}/actions.yaml";
          path = jsonFormat.generate "${name}-actions.yaml" (wf.renderSkillActions s);
        }
      ]) cfg.skills
    )
  );

  # Skill directories the validator needs besides the bundled ones. Paths that exist only
  # at run time are not visible in the build sandbox; see validateWorkflows.
  validatorSkillPaths = [ skillTree ] ++ lib.remove skillsDir cfg.settings.skill_paths;

  # The rendered workflow, checked by `orchestratorctl validate` as a build step (the
  # pattern of nixpkgs' opentelemetry-collector module). It is copied to
  # workflows/<name>.json first so that messages name the workflow, not a store hash.
  workflowFile =
    name: w:
    let
      rendered = jsonFormat.generate "${name}.json" (wf.renderWorkflow name w);
    in
    if !cfg.validateWorkflows then
      rendered
    else
      pkgs.runCommand "agent-orchestrator-workflow-${name}.json"
        {
          workflow = rendered;
          nativeBuildInputs = [ cfg.package ];
          preferLocalBuild = true;
        }
        ''
          mkdir workflows
          cp "$workflow" workflows/${lib.escapeShellArg "${name}.json"}
          if ! orchestratorctl ${
            lib.concatMapStringsSep " " (p: "--skills ${lib.escapeShellArg "${p}"}") validatorSkillPaths
          } validate workflows/${lib.escapeShellArg "${name}.json"}; then
            echo "${opt}.workflows.${name} is not a valid workflow (see above)." >&2
            exit 1
          fi
          cp "$workflow" "$out"
        '';

  workflowFiles = lib.mapAttrs workflowFile cfg.workflows;

  managedEndpoints = lib.filter (e: e != null) (
    lib.mapAttrsToList (_: s: s.endpoint) cfg.managedServices
  );

  allowSwitch = cfg.settings.skills."nixos-deployment".allow_switch or false == true;

  settingsOptions = import ./settings-options.nix {
    inherit lib opt workflowsDir defaultSocket;
    jsonType = jsonFormat.type;
    inherit (wf) duration;
  };

in
{
  options.services.agent-orchestrator = {
    enable = mkEnableOption "agent-orchestrator, durable workflows of agent skills under systemd";

    package = mkPackageOption pkgs "agent-orchestrator" { };

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
      type = types.listOf types.str;
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
  };

  config = mkIf cfg.enable {
    assertions =
      map (message: {
        assertion = false;
        inherit message;
      }) (wf.problems opt cfg)
      ++ lib.mapAttrsToList (name: file: {
        assertion = lib.hasPrefix "/" file && !lib.hasPrefix builtins.storeDir file;
        message = "${opt}.secrets.${name}: `${file}` must be an absolute path outside the Nix store (it is read when the daemon starts).";
      }) cfg.secrets
      ++ lib.mapAttrsToList (name: _: {
        assertion = builtins.match "[A-Za-z0-9_.-]+" name != null;
        message = "${opt}.secrets.${name}: a credential name is letters, digits, `_`, `.` and `-`.";
      }) cfg.secrets
      ++ [
        {
          assertion = cfg.settings.socket_group == null || config.users.groups ? ${cfg.settings.socket_group};
          message = "${opt}.settings.socket_group: no group `${toString cfg.settings.socket_group}` in users.groups; declare it (users.groups.<name> = { };) or leave socket_group unset.";
        }
      ]
      ++ lib.mapAttrsToList (name: w: {
        assertion = lib.all (s: s != "") (lib.toList w.startAt);
        message = "${opt}.workflows.${name}.startAt: an empty calendar event; use [ ] for no timer.";
      }) cfg.workflows;

    warnings = lib.concatMap (
      hook:
      lib.optional (lib.any (h: lib.toLower h == "authorization") (lib.attrNames hook.headers))
        "${opt}.settings.alerts.webhooks: the Authorization header of ${hook.url} ends up world-readable in the Nix store; send alerts through an alert command that reads a token from ${opt}.secrets instead."
    ) cfg.settings.alerts.webhooks;

    services.agent-orchestrator.settings = {
      skill_paths = lib.mkIf (cfg.skills != { }) (lib.mkBefore [ skillsDir ]);
      # Sections are only created when there is something to put in them.
      skills = lib.mkMerge [
        (lib.mkIf (cfg.managedServices != { }) {
          "ai-service-management".services = lib.mapAttrs (_: s: s.unit) cfg.managedServices;
        })
        (lib.mkIf (managedEndpoints != [ ]) {
          "health-monitoring".endpoints = map (url: { inherit url; }) managedEndpoints;
        })
        # The unit's PATH has no nixos-rebuild (for the build, switch and rollback
        # actions); the system's has.
        {
          "nixos-deployment".nixos_rebuild = lib.mkDefault "/run/current-system/sw/bin/nixos-rebuild";
        }
      ];
    };

    environment.etc =
      {
        "agent-orchestrator/settings.json".source = settingsFile;
      }
      // lib.optionalAttrs (cfg.skills != { }) {
        "agent-orchestrator/skills".source = skillTree;
      }
      // lib.mapAttrs' (
        name: file: lib.nameValuePair "agent-orchestrator/workflows/${name}.json" { source = file; }
      ) workflowFiles;

    environment.systemPackages = [ cfg.package ];
    # orchestratorctl finds the daemon by this variable, whatever XDG_RUNTIME_DIR says.
    environment.variables.ORCHESTRATOR_SOCKET = cfg.settings.socket;

    # orchestratord.service and orchestrator@.service ship with the package; the
    # definitions below become drop-ins (overrides.conf) for them.
    systemd.packages = [ cfg.package ];

    systemd.services.orchestratord = {
      # [Install] sections of packaged units are not read on NixOS.
      wantedBy = [ "multi-user.target" ];
      inherit (cfg) path environment;
      # The daemon rereads workflows and skills on SIGHUP (ExecReload=), so a rebuild
      # that changes only them reloads it without interrupting runs. Settings are read
      # at start: a change restarts it (running runs resume afterwards).
      reloadTriggers = lib.attrValues workflowFiles ++ lib.optional (cfg.skills != { }) skillTree;
      restartTriggers = [ settingsFile ];
      serviceConfig = lib.mkMerge [
        {
          LoadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") cfg.secrets;
        }
        (lib.mkIf (cfg.settings.state_dir != "/var/lib/agent-orchestrator") {
          ReadWritePaths = [ cfg.settings.state_dir ];
        })
        # nixos-rebuild switch writes the system profile, /boot and /etc, and restarts
        # anything: the unit's sandbox is lifted when the deployment skill may switch.
        (lib.mkIf allowSwitch {
          ProtectSystem = false;
          ProtectHome = false;
          PrivateDevices = false;
          PrivateTmp = false;
          ProtectKernelModules = false;
          ProtectKernelTunables = false;
          ProtectControlGroups = false;
          RestrictNamespaces = false;
          NoNewPrivileges = false;
          MemoryDenyWriteExecute = false;
          # "~" (an inverted empty set) restores every capability; "" empties the filter.
          CapabilityBoundingSet = [ "~" ];
          SystemCallFilter = [ "" ];
        })
      ];
    };

    # Drop-in for the template: every orchestrator@<name> unit.
    systemd.services."orchestrator@" = {
      overrideStrategy = "asDropin";
      onFailure = cfg.alertUnits;
      environment.ORCHESTRATOR_SOCKET = cfg.settings.socket;
    };

    # A timer per workflow with startAt, activating orchestrator@<name>.service.
    systemd.timers = lib.mapAttrs' (
      name: w:
      lib.nameValuePair "orchestrator@${name}" {
        description = "Scheduled runs of workflow ${name}";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = w.startAt;
          Unit = "orchestrator@${name}.service";
          Persistent = true;
        };
      }
    ) (lib.filterAttrs (_: w: w.startAt != [ ]) cfg.workflows);
  };
}
