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
  defaultStateDir = "/var/lib/agent-orchestrator";

  paths = import ./module-paths.nix {
    inherit lib opt defaultStateDir;
    runtimeDir = dirOf defaultSocket;
  };

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
  checker = cfg.checkPackage;
  checkerBin = program: "${lib.getBin checker}/bin/${program}";

  # Keys whose null means something to the daemon (not "use the default").
  meaningfulNulls = [ "workspace_retention" ];

  # Unset optional keys (null) are left out: the daemon's defaults apply. The file is
  # checked by the daemon itself while the system is built, so a wrong value fails
  # `nixos-rebuild build` with the daemon's message (file:line:column: field: why).
  settingsJSON = jsonFormat.generate "agent-orchestrator-settings.json" (
    lib.filterAttrs (n: v: v != null || lib.elem n meaningfulNulls) cfg.settings
  );
  settingsFile =
    if checker == null then
      settingsJSON
    else
      pkgs.runCommand "agent-orchestrator-settings.json"
        {
          settings = settingsJSON;
          preferLocalBuild = true;
        }
        ''
          cp "$settings" settings.json
          # The build sandbox has none of the system's groups; socket_group is one
          # this module creates (users.groups below).
          if ! ${checkerBin "orchestratord"} --check --skip-host-checks --settings settings.json; then
            echo "${opt}.settings is not valid (see above)." >&2
            exit 1
          fi
          cp "$settings" "$out"
        '';

  # `startAt = "dialy"` would build and fail only when the timer is loaded at activation:
  # systemd-analyze (the build platform's) checks every calendar event while building.
  calendarEvents = lib.unique (lib.concatMap (w: lib.toList w.startAt) (lib.attrValues cfg.workflows));
  calendarCheck =
    pkgs.runCommand "agent-orchestrator-calendar-check"
      {
        nativeBuildInputs = [ pkgs.buildPackages.systemd ];
        preferLocalBuild = true;
      }
      (
        lib.concatMapStrings (
          event:
          let
            owners = lib.attrNames (lib.filterAttrs (_: w: lib.elem event (lib.toList w.startAt)) cfg.workflows);
          in
          ''
            if ! systemd-analyze calendar -- ${lib.escapeShellArg event} >/dev/null; then
              echo ${
                lib.escapeShellArg "${opt}.workflows.${lib.head owners}.startAt: `${event}` is not a calendar event (systemd.time(7)); `systemd-analyze calendar '${event}'` says why."
              } >&2
              exit 1
            fi
          ''
        ) calendarEvents
        + "touch $out\n"
      );

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
    if !cfg.validateWorkflows || checker == null then
      rendered
    else
      pkgs.runCommand "agent-orchestrator-workflow-${name}.json"
        {
          workflow = rendered;
          preferLocalBuild = true;
        }
        ''
          mkdir workflows
          cp "$workflow" workflows/${lib.escapeShellArg "${name}.json"}
          if ! ${checkerBin "orchestratorctl"} ${
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

  # Headers of webhooks and of skills' http actions: all are written to the Nix store.
  authorizationHeaders =
    map (hook: "${opt}.settings.alerts.webhooks (${hook.url})") (
      lib.filter hasAuthorization cfg.settings.alerts.webhooks
    )
    ++ lib.concatLists (
      lib.mapAttrsToList (
        skill: s:
        lib.mapAttrsToList (action: _: "${opt}.skills.${skill}.actions.${action}.http") (
          lib.filterAttrs (_: a: a.http != null && hasAuthorization a.http) s.actions
        )
      ) cfg.skills
    );
  hasAuthorization = x: lib.any (h: lib.toLower h == "authorization") (lib.attrNames x.headers);

  settingsOptions = import ./settings-options.nix {
    inherit lib opt workflowsDir defaultSocket defaultStateDir;
    jsonType = jsonFormat.type;
    inherit (wf) duration;
  };

in
{
  imports = [ ./mcp.nix ];

  options.services.agent-orchestrator = {
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
      ++ lib.mapAttrsToList (name: w: {
        assertion = lib.all (s: s != "") (lib.toList w.startAt);
        message = "${opt}.workflows.${name}.startAt: an empty calendar event; use [ ] for no timer.";
      }) cfg.workflows
      ++ paths.assertions cfg.settings;

    warnings =
      map (
        where:
        "${where}: the Authorization header ends up world-readable in the Nix store; send it from a command that reads a token from ${opt}.secrets instead."
      ) authorizationHeaders
      ++ lib.optional (checker == null)
        "${opt}: settings and workflows are not checked while the system is built: the build platform cannot run ${opt}.package; set ${opt}.checkPackage to a build of it for the build platform.";

    # Checked while the system is built; nothing of it is installed.
    system.checks = lib.optional (calendarEvents != [ ]) calendarCheck;

    # The daemon gives the control socket to this group; the group must exist.
    users.groups = lib.mkIf (cfg.settings.socket_group != null) {
      ${cfg.settings.socket_group} = { };
    };

    # Paths outside the unit's StateDirectory= and RuntimeDirectory=: created before
    # the daemon starts and writable under ProtectSystem=strict.
    systemd.tmpfiles.settings.agent-orchestrator = paths.tmpfiles cfg.settings;

    # The key is a credential: the settings name where systemd puts it, not the key.
    services.agent-orchestrator.secrets = mkIf (cfg.aidb.enable && cfg.aidb.apiKeyFile != null) {
      aidb-key = cfg.aidb.apiKeyFile;
    };

    services.agent-orchestrator.settings = {
      aidb = mkIf cfg.aidb.enable (
        {
          url = lib.mkDefault cfg.aidb.url;
        }
        // lib.optionalAttrs (cfg.aidb.apiKeyFile != null) {
          api_key_file = "/run/credentials/orchestratord.service/aidb-key";
        }
      );
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
      # The daemon rereads workflows and skills on reload (ExecReload= asks it over the
      # control socket and waits until it has), so a rebuild that changes only them
      # reloads it without interrupting runs, and the switch returns once they are in use. Settings are read
      # at start: a change restarts it (running runs resume afterwards).
      reloadTriggers = lib.attrValues workflowFiles ++ lib.optional (cfg.skills != { }) skillTree;
      restartTriggers = [ settingsFile ];
      serviceConfig = lib.mkMerge [
        {
          LoadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") cfg.secrets;
        }
        (lib.mkIf (paths.extraDirs cfg.settings != [ ]) {
          ReadWritePaths = paths.extraDirs cfg.settings;
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
      # A switch must not cancel a running workflow: an active orchestrator@<name> is
      # its run's client, and its unit changes with every nixpkgs update (its PATH).
      # The new definition applies from the next start, as for restic's oneshot units.
      restartIfChanged = false;
      onFailure = cfg.alertUnits;
      environment.ORCHESTRATOR_SOCKET = cfg.settings.socket;
      # A cancel the daemon cannot take while it restarts is written to the state
      # database (the packaged unit allows /var/lib/agent-orchestrator).
      serviceConfig = lib.mkIf (cfg.settings.state_dir != "/var/lib/agent-orchestrator") {
        ReadWritePaths = [ cfg.settings.state_dir ];
      };
    };

    # A timer per workflow with startAt, activating orchestrator@<name>.service.
    systemd.timers = lib.mapAttrs' (
      name: w:
      lib.nameValuePair "orchestrator@${name}" {
        description = "Scheduled runs of workflow ${name}";
        wantedBy = [ "timers.target" ];
        timerConfig = lib.mkMerge [
          {
            OnCalendar = w.startAt;
            Unit = "orchestrator@${name}.service";
            Persistent = lib.mkDefault true;
          }
          w.timerConfig
        ];
      }
    ) (lib.filterAttrs (_: w: w.startAt != [ ]) cfg.workflows);
  };
}
