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
#
# This file is the map; each concern lives beside it:
#   service-options.nix   the options (package, skills, workflows, secrets, aidb, ...)
#     settings-options.nix  the typed keys of `settings`
#     workflow-options.nix  the types of workflows and skills (the file format's keys),
#       workflow-render.nix   rendered to the JSON the daemon reads,
#       workflow-problems.nix and what a type cannot check (assertions below)
#   mcp.nix               the MCP server's options and units
#   etc-files.nix         /etc/agent-orchestrator and the build-time checks of its files
#   module-paths.nix      state_dir, database and socket under the unit's hardening
#   units.nix             drop-ins of the packaged units, and a timer per startAt
# Below: assertions and warnings, then where each piece goes in the system.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkIf;

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

  files = import ./etc-files.nix {
    inherit
      lib
      pkgs
      cfg
      opt
      jsonFormat
      wf
      skillsDir
      ;
  };
  inherit (files)
    settingsFile
    calendarEvents
    calendarCheck
    skillTree
    workflowFiles
    ;

  units = import ./units.nix {
    inherit
      lib
      cfg
      paths
      settingsFile
      skillTree
      workflowFiles
      ;
  };

  checker = cfg.checkPackage;

  managedEndpoints = lib.filter (e: e != null) (
    lib.mapAttrsToList (_: s: s.endpoint) cfg.managedServices
  );

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

in
{
  imports = [ ./mcp.nix ];

  options.services.agent-orchestrator = import ./service-options.nix {
    inherit
      lib
      pkgs
      cfg
      opt
      wf
      etcDir
      workflowsDir
      skillsDir
      defaultSocket
      defaultStateDir
      ;
    jsonType = jsonFormat.type;
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
    systemd.services = units.services;
    systemd.timers = units.timers;
  };
}
